"""CIFAR-10 from the standard "python version" batches, read without unrestricted pickle.

Format. The archive cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html)
unpacks to a directory `cifar-10-batches-py` holding `data_batch_1` ... `data_batch_5`
(10,000 training images each), `test_batch` (10,000 test images) and `batches.meta`. Each
batch is a dict pickled by Python 2's cPickle (protocol 2) with the keys b'batch_label',
b'labels' (a list of N ints in 0..9), b'data' (a uint8 array of shape (N, 3072)) and
b'filenames'. Row i of b'data' is one 32x32 image stored as three row-major channel planes,
R (bytes 0..1023), G (1024..2047), B (2048..3071), so `data.reshape(N, 3, 32, 32)` is the
image in (C, H, W) order. batches.meta holds b'label_names' (airplane ... truck).

Reading. The batches go through kdgan.data.safe_pickle, which admits numpy arrays and
refuses every other global before anything runs; they load with encoding="bytes", as the
dataset's page prescribes. Every batch is checked (keys, shape (N, 3072) uint8, N labels in
0..9) and a bad one is a DataError naming the file.

Preprocessing. Pixels are scaled to [0, 1] and the per-pixel mean image,
    mu[c, h, w] = (1 / |pool|) sum_{i in pool} x_i[c, h, w],
is subtracted from every split. The mean is computed over the training pool only, after the
validation split (the last `val_size` of the 50,000 training images) has been held out, so
neither validation nor test images leak into it. The paper's mirrored (left-right flip)
augmentation is the caller's business: kdgan.augment.random_flip on each training batch.

Subsets. The paper reports CIFAR-10 with n = 500, 5,000 and 50,000 labelled training
images. With a validation split held out of the 50,000 training images, the training pool
has 50,000 - val_size images, which is the largest honest n (n = 50,000 would train on the
validation images).

Getting the data: `python -m kdgan.cifar download [--root DIR]` (kdgan.cifar; default root
~/.kdgan/data) fetches and checks the archive and unpacks it to ROOT/cifar-10-batches-py;
dataset="cifar10" finds it there, or wherever $KDGAN_CIFAR10 points. `write_cifar10_batches`
writes small files in the same format (for tests, or to package your own 32x32 images).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from kdgan.config import ConfigError
from kdgan.data.safe_pickle import load_array_pickle
from kdgan.data.types import DataError

CIFAR10_ENV = "KDGAN_CIFAR10"
CIFAR10_DIRNAME = "cifar-10-batches-py"
DEFAULT_ROOT = "~/.kdgan/data"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck")
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)  # (C, H, W); a row of b'data' is its 3072 bytes in this order
ROW_SIZE = 3 * 32 * 32
DOWNLOAD_HINT = (f"run `python -m kdgan.cifar download` (puts it in {DEFAULT_ROOT}/"
                 f"{CIFAR10_DIRNAME}) or set {CIFAR10_ENV} to a {CIFAR10_DIRNAME} directory")


# ----------------------------------------------------------------------------------------
# Where the data is


def cifar10_root(dataset: str) -> Path:
    """The batches directory for `dataset`: for "cifar10" $KDGAN_CIFAR10 if set, else
    ~/.kdgan/data/cifar-10-batches-py; otherwise `dataset` itself taken as a path."""
    if dataset == "cifar10":
        env = os.environ.get(CIFAR10_ENV)
        path = Path(env if env else f"{DEFAULT_ROOT}/{CIFAR10_DIRNAME}").expanduser()
        where = f"{CIFAR10_ENV}={env}" if env else str(path)
    else:
        path = Path(dataset).expanduser()
        where = str(path)
    if not is_cifar10_dir(path):
        what = "no such directory" if not path.exists() else (
            f"not a CIFAR-10 batches directory (needs {', '.join(TRAIN_BATCHES)}, {TEST_BATCH})")
        raise DataError(f"CIFAR-10 not found at {where}: {what}. To get it, {DOWNLOAD_HINT}")
    return path


def is_cifar10_dir(path: Path | str) -> bool:
    """True if `path` is a directory holding data_batch_1 and test_batch."""
    path = Path(path).expanduser()
    return path.is_dir() and (path / TRAIN_BATCHES[0]).is_file() and (path / TEST_BATCH).is_file()


# ----------------------------------------------------------------------------------------
# Reading


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (data (N, 3072) uint8 in R, G, B plane order, labels (N,) int64)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing CIFAR-10 batch file. {DOWNLOAD_HINT}")
    try:
        obj = load_array_pickle(path, encoding="bytes")
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: cannot read as a CIFAR-10 batch pickle: {e}") from e
    except (EOFError, OSError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError) as e:
        raise DataError(f"{path}: cannot read as a CIFAR-10 batch pickle ({type(e).__name__}: "
                        f"{e})") from None
    expected = ("expected a dict with b'data' (N, 3072) uint8 and b'labels' (N ints in 0..9), "
                "as in the python version of CIFAR-10")
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}; {expected}")
    entries = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    for key in ("data", "labels"):
        if key not in entries:
            raise DataError(f"{path}: missing key b'{key}' (has {sorted(map(str, entries))}); "
                            f"{expected}")
    data = entries["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != ROW_SIZE:
        got = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise DataError(f"{path}: b'data' is a {got}; expected a uint8 array of shape "
                        f"(N, {ROW_SIZE})")
    try:
        labels = np.asarray(entries["labels"])
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: b'labels' is not a list of ints ({e})") from None
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DataError(f"{path}: b'labels' has dtype {labels.dtype} and shape {labels.shape}; "
                        "expected a list of ints")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images; expected one "
                        "label per row of b'data'")
    if len(labels) == 0:
        raise DataError(f"{path}: empty batch; expected at least one image")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        bad = labels[(labels < 0) | (labels >= NUM_CLASSES)][0]
        raise DataError(f"{path}: label {bad} out of range; expected labels in "
                        f"0..{NUM_CLASSES - 1}")
    return data, labels.astype(np.int64)


def load_cifar10_arrays(root: Path, val_size: int) -> dict[str, np.ndarray]:
    """Read the five training batches and the test batch under `root` into kdgan's layout:
    x_pool, y_pool, x_val, y_val, x_test, y_test. The validation split is the last val_size
    training images, the pool the rest. x = u8 / 255 - mu, float32 (N, 3, 32, 32), with the
    per-pixel mean mu (3, 32, 32) of the pool's u8 / 255; y int64 (N,) in 0..9."""
    root = Path(root)
    parts = [read_batch(root / name) for name in TRAIN_BATCHES]
    test_u8, y_test = read_batch(root / TEST_BATCH)
    train_u8 = np.concatenate([d for d, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    del parts  # keep one uint8 copy of the training images
    n_train = len(y_train)
    if not isinstance(val_size, (int, np.integer)) or val_size < 1 or val_size >= n_train:
        raise ConfigError(f"val_size={val_size}: expected between 1 and {n_train - 1} for "
                          f"{root} ({n_train} training images; the rest form the pool)")
    pool_u8, val_u8 = train_u8[:-val_size], train_u8[-val_size:]
    # float64 accumulation on the uint8 array, no float copy of the pool
    mean = (pool_u8.mean(axis=0, dtype=np.float64) / 255.0).astype(np.float32)  # (3072,)

    def prepare(u8: np.ndarray) -> np.ndarray:  # (N, 3072) uint8 -> (N, 3, 32, 32) float32
        x = u8.astype(np.float32)
        x /= 255.0
        x -= mean
        return x.reshape(-1, *IMAGE_SHAPE)

    return {"x_pool": prepare(pool_u8), "y_pool": y_train[:-val_size],
            "x_val": prepare(val_u8), "y_val": y_train[-val_size:],
            "x_test": prepare(test_u8), "y_test": y_test}


# ----------------------------------------------------------------------------------------
# Writing small files in the real format


def write_cifar10_batches(directory: Path, images: np.ndarray, labels: np.ndarray | list[int],
                          test_images: np.ndarray, test_labels: np.ndarray | list[int],
                          batches: int = 5) -> Path:
    """Write `images` (N, 32, 32, 3) or (N, 3, 32, 32) uint8 and their labels as
    data_batch_1 .. data_batch_{batches} (near-equal consecutive chunks), the test images as
    test_batch, and batches.meta, in the python-version format: dicts with byte keys,
    pickle protocol 2, b'data' (n, 3072) uint8 in R, G, B plane order, b'labels' a list of
    ints. Returns `directory`. Note that the loader expects data_batch_1 .. data_batch_5."""
    if batches < 1:
        raise ValueError(f"batches={batches}: expected >= 1")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train = _rows(images, "images")
    test = _rows(test_images, "test_images")
    train_y, test_y = _label_list(labels, len(train), "labels"), _label_list(
        test_labels, len(test), "test_labels")
    if len(train) < batches:
        raise ValueError(f"{len(train)} images cannot fill {batches} batches")
    bounds = np.linspace(0, len(train), batches + 1).astype(int)
    for i in range(batches):
        lo, hi = bounds[i], bounds[i + 1]
        _dump(directory / f"data_batch_{i + 1}", _batch(
            f"training batch {i + 1} of {batches}", train[lo:hi], train_y[lo:hi], lo))
    _dump(directory / TEST_BATCH, _batch("testing batch 1 of 1", test, test_y, 0))
    _dump(directory / META_FILE, {b"num_cases_per_batch": int(bounds[1] - bounds[0]),
                                  b"label_names": [n.encode() for n in LABEL_NAMES],
                                  b"num_vis": ROW_SIZE})
    return directory


def _rows(images: np.ndarray, name: str) -> np.ndarray:
    """(N, 32, 32, 3) or (N, 3, 32, 32) uint8 -> (N, 3072) in R, G, B plane order."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{name}: dtype {images.dtype}; expected uint8 pixels")
    if images.ndim == 4 and images.shape[1:] == (32, 32, 3):
        images = images.transpose(0, 3, 1, 2)
    elif images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{name}: shape {images.shape}; expected (N, 32, 32, 3) or (N, 3, 32, 32)")
    return np.ascontiguousarray(images).reshape(len(images), ROW_SIZE)


def _label_list(labels: np.ndarray | list[int], n: int, name: str) -> list[int]:
    out = [int(v) for v in np.asarray(labels).reshape(-1)]
    if len(out) != n:
        raise ValueError(f"{name}: {len(out)} labels for {n} images")
    return out


def _batch(label: str, rows: np.ndarray, labels: list[int], offset: int) -> dict:
    return {b"batch_label": label.encode(), b"labels": labels, b"data": rows,
            b"filenames": [f"image_{offset + j:05d}.png".encode() for j in range(len(rows))]}


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
