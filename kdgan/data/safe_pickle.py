"""The one way kdgan reads a pickle: an unpickler that admits numpy arrays and nothing else.

Dataset pickles (mnist.pkl.gz, the CIFAR-10 python batches) hold numpy arrays, lists, dicts
and strings. `ArrayUnpickler` admits numpy's `_reconstruct`, `numpy.ndarray`, `numpy.dtype`
and `_codecs.encode` (how protocol-2 pickles written by Python 3 store bytes) and refuses
every other global with a pickle.UnpicklingError before anything runs.
"""

from __future__ import annotations

import codecs
import gzip
import io
import pickle
from pathlib import Path

import numpy as np


class ArrayUnpickler(pickle.Unpickler):
    """Admits numpy arrays and dtypes, refuses every other global (no code can run)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's signature)
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays "
                                         "are allowed in a dataset pickle")
        if name == "_reconstruct":
            return _reconstruct()
        if module == "_codecs":
            return codecs.encode
        return getattr(np, name)


def _reconstruct():  # numpy moved its private module in 2.0; find it wherever it is
    try:
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as fn
    return fn


def load_array_pickle(path: Path, encoding: str = "latin1") -> object:
    """Unpickle a (gzipped) file of numpy arrays with the restricted unpickler. `encoding`
    is how Python 2 strings decode: "latin1" for arrays, "bytes" to keep them bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return ArrayUnpickler(io.BufferedReader(f), encoding=encoding).load()
