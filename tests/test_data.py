"""Loaders: the subset, the formats users bring, and every bad file's error."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from kdgan import data as data_mod
from kdgan.config import Config, ConfigError
from kdgan.data import DataError

from conftest import blobs, write_blobs_npz


def _load(path, **kw):
    return data_mod.load(Config(dataset=str(path), **{"n": 50, **kw}))


def test_subset_is_drawn_with_the_seed_and_recorded(blobs_npz):
    a, b, c = _load(blobs_npz, seed=0), _load(blobs_npz, seed=0), _load(blobs_npz, seed=1)
    assert np.array_equal(a.train_indices, b.train_indices)
    assert not np.array_equal(a.train_indices, c.train_indices)
    assert len(set(a.train_indices.tolist())) == 50 and a.pool_size == 300
    raw = np.load(blobs_npz)
    assert np.array_equal(a.train.y.numpy(), raw["y_train"][a.train_indices])
    assert (len(a.val), len(a.test), a.num_classes, a.in_shape) == (200, 200, 3, (1, 8, 8))


def test_n_larger_than_the_pool_is_an_error(blobs_npz):
    with pytest.raises(ConfigError, match=r"n=301: larger than the training pool of 300"):
        _load(blobs_npz, n=301)


def test_unlabelled_examples_come_from_the_pool_outside_the_subset(blobs_npz):
    plain, d = _load(blobs_npz, seed=2), _load(blobs_npz, seed=2, unlabeled=120)
    # the labelled subset does not change with the unlabelled examples, and never meets them
    assert np.array_equal(plain.train_indices, d.train_indices) and plain.unlabeled is None
    torch.testing.assert_close(plain.train.x, d.train.x)
    raw = np.load(blobs_npz)
    rows = [np.flatnonzero((raw["x_train"] == u.numpy()).all(axis=(1, 2)))[0] for u in d.unlabeled.x[:, 0]]
    assert len(set(rows)) == 120 and not set(rows) & set(d.train_indices.tolist())
    assert (d.unlabeled.y == data_mod.UNLABELED).all()  # their labels are hidden
    with pytest.raises(ConfigError, match=r"unlabeled=251: n \+ unlabeled = 301 is larger than the "
                                          r"training pool of 300"):
        _load(blobs_npz, unlabeled=251)


def test_validation_is_held_out_when_the_file_has_none(tmp_path):
    x, y = blobs(100)
    xt, yt = blobs(20, seed=9)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    d = _load(tmp_path / "d.npz", n=10, val_size=30)
    assert (d.pool_size, len(d.val)) == (70, 30)
    assert np.array_equal(d.val.y.numpy(), y[-30:])


@pytest.mark.parametrize("arrays,message", [
    ({"y_train": np.zeros(99, np.int64)}, "x_train has 100 rows but y_train has 99"),
    ({"xp_train": np.zeros((101, 5), np.float32), "xp_test": np.zeros((20, 5), np.float32)},
     "xp_train has 101 rows but y_train has 100"),
])
@pytest.mark.parametrize("val_size", [30, 10_000])
def test_train_arrays_that_disagree_on_rows_are_named_before_the_validation_split(
        tmp_path, arrays, message, val_size):
    # the split used to hide the mismatch: a val_size error, or the row counts after the cut
    x, y = blobs(100)
    xt, yt = blobs(20, seed=9)
    np.savez(tmp_path / "d.npz", **{"x_train": x, "y_train": y, "x_test": xt, "y_test": yt,
                                    **arrays})
    with pytest.raises(DataError, match=rf"d\.npz: {message}$"):
        _load(tmp_path / "d.npz", n=10, val_size=val_size)


def test_privileged_arrays_reach_teacher_inputs(tmp_path):
    path = write_blobs_npz(tmp_path / "p.npz", xp_train=np.ones((300, 5), np.float32),
                           xp_val=np.ones((200, 5), np.float32),
                           xp_test=np.ones((200, 5), np.float32))
    d = _load(path)
    assert d.priv_shape == (5,) and d.in_shape == (1, 8, 8)


@pytest.mark.parametrize("change,pattern", [
    (lambda a: a.pop("y_test"), r"missing array 'y_test'"),
    (lambda a: a.update(y_train=a["y_train"][:-1]), r"x_train has 300 rows but y_train has 299"),
    (lambda a: a["x_val"].__setitem__((0, 0, 0), np.nan), r"x_val contains NaN"),
    (lambda a: a["y_test"].__setitem__(0, 7), r"y_test has label 7, out of the range \[0, 2\]"),
    (lambda a: a["y_train"].__setitem__(0, -1), r"y_train has negative labels"),
    (lambda a: a.update(x_test=a["x_test"][:, :4]), r"disagree on the example shape"),
    (lambda a: a.update(x_train=a["x_train"][:, :, :, None, None]), r"x_train.*expected \(N, D\)"),
    (lambda a: a.update(y_val=a["y_val"][:, None]), r"y_val has shape"),
    (lambda a: a.update(extra=np.zeros(3)), r"unexpected arrays \['extra'\]"),
    (lambda a: a.update(xp_train=np.zeros((300, 4), np.float32)), r"privileged arrays must cover"),
])
def test_bad_npz_files_get_clear_errors(tmp_path, change, pattern):
    write_blobs_npz(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=pattern):
        _load(tmp_path / "bad.npz")


def test_npz_with_object_arrays_is_refused(tmp_path):
    x, y = blobs(20)
    np.savez(tmp_path / "obj.npz", x_train=x, y_train=np.array(list(y), dtype=object),
             x_test=x, y_test=y)
    with pytest.raises(DataError, match="without pickle"):
        _load(tmp_path / "obj.npz", n=5, val_size=5)


def test_missing_and_unknown_datasets(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        _load(tmp_path / "nope.npz")
    with pytest.raises(ConfigError, match="dataset="):
        _load(tmp_path / "file.csv")


def _write_idx(path: Path, array: np.ndarray) -> None:
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def test_idx_directory_gzipped_or_not(tmp_path):
    rng = np.random.default_rng(0)
    xtr = rng.integers(0, 256, (120, 8, 8), dtype=np.uint8)
    ytr = rng.integers(0, 10, 120).astype(np.uint8)
    xte = rng.integers(0, 256, (30, 8, 8), dtype=np.uint8)
    yte = rng.integers(0, 10, 30).astype(np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", xtr)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", ytr)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", xte)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", yte)
    d = _load(tmp_path, n=20, val_size=40)
    assert (d.pool_size, len(d.val), len(d.test), d.in_shape) == (80, 40, 30, (1, 8, 8))
    np.testing.assert_allclose(d.test.x.numpy()[:, 0], xte / 255.0, rtol=1e-6)
    assert np.array_equal(d.val.y.numpy(), ytr[-40:])


def test_idx_images_and_labels_that_disagree_on_rows_are_named(tmp_path):
    rng = np.random.default_rng(0)
    for stem, rows in (("train-images-idx3-ubyte", 120), ("train-labels-idx1-ubyte", 119),
                       ("t10k-images-idx3-ubyte", 30), ("t10k-labels-idx1-ubyte", 30)):
        shape = (rows, 8, 8) if "images" in stem else (rows,)
        _write_idx(tmp_path / stem, rng.integers(0, 3, shape, dtype=np.uint8))
    with pytest.raises(DataError, match=r"x_train has 120 rows but y_train has 119$"):
        _load(tmp_path, n=20, val_size=40)


def test_bad_idx_files(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 10, 8, 8) + b"\x00" * 7)
    with pytest.raises(DataError, match=r"promises shape \(10, 8, 8\)"):
        data_mod.read_idx(tmp_path / "train-images-idx3-ubyte")
    (tmp_path / "junk").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="bad magic number"):
        data_mod.read_idx(tmp_path / "junk")
    with pytest.raises(DataError, match=r"promises shape"):  # found while loading, too
        _load(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="missing train-images-idx3-ubyte"):
        _load(tmp_path)


def _mnist_like_pickle(path: Path) -> tuple:
    """The layout of mnist.pkl.gz, on a few rows: ((x, y), (x, y), (x, y)), x (N, 784)."""
    rng = np.random.default_rng(0)
    splits = tuple((rng.random((m, 784), dtype=np.float32), rng.integers(0, 10, m))
                   for m in (40, 10, 10))
    with gzip.open(path, "wb") as f:
        pickle.dump(splits, f, protocol=2)
    return splits


def test_mnist_pickle_loads_through_the_restricted_unpickler(tmp_path, monkeypatch):
    splits = _mnist_like_pickle(tmp_path / "mnist.pkl.gz")
    monkeypatch.setenv(data_mod.MNIST_ENV, str(tmp_path / "mnist.pkl.gz"))
    d = data_mod.load(Config(dataset="mnist", n=20, seed=3))
    assert d.in_shape == (1, 28, 28) and (d.pool_size, len(d.val), len(d.test)) == (40, 10, 10)
    np.testing.assert_array_equal(d.test.x.numpy().reshape(10, 784), splits[2][0])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_the_unpickler_refuses_anything_but_arrays(tmp_path, monkeypatch):
    with gzip.open(tmp_path / "evil.pkl.gz", "wb") as f:
        pickle.dump(((_Evil(), 1), (2, 3), (4, 5)), f, protocol=2)
    monkeypatch.setenv(data_mod.MNIST_ENV, str(tmp_path / "evil.pkl.gz"))
    with pytest.raises(DataError, match="refusing to load posix.system"):
        data_mod.load(Config(dataset="mnist", n=1))


def test_missing_mnist_points_to_the_setup(monkeypatch, tmp_path):
    monkeypatch.setenv(data_mod.MNIST_ENV, str(tmp_path / "absent.pkl.gz"))
    with pytest.raises(DataError, match="no such file"):
        data_mod.load(Config(dataset="mnist"))
