"""kdgan.data.cifar: the batch format, the restricted unpickler on it, preprocessing, every bad
file's error."""

from __future__ import annotations

import io
import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest

from kdgan.config import ConfigError
from kdgan.data import cifar
from kdgan.data.types import DataError


def _undo(a: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """float32 (N, 3, 32, 32) minus-mean -> uint8 (N, 32, 32, 3) as it was written."""
    return np.rint((a + mean) * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)


# ----------------------------------------------------------------------------------------
# Format and preprocessing


def test_files_are_in_the_python_version_format(cifar_tiny):
    root, x, y, _, _ = cifar_tiny
    names = sorted(p.name for p in root.iterdir())
    assert names == ["batches.meta", *cifar.TRAIN_BATCHES, "test_batch"]
    assert cifar.is_cifar10_dir(root) and not cifar.is_cifar10_dir(root.parent)
    raw = (root / "data_batch_2").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2
    with open(root / "data_batch_2", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    assert set(d) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert d[b"data"].dtype == np.uint8 and d[b"data"].shape == (20, 3072)
    assert d[b"labels"] == [int(v) for v in y[20:40]] and type(d[b"labels"][0]) is int
    # channel planes: bytes 0..1023 red, 1024..2047 green, 2048..3071 blue, each row-major
    img = x[20]
    assert np.array_equal(d[b"data"][0, :1024], img[:, :, 0].reshape(-1))
    assert np.array_equal(d[b"data"][0, 1024:2048], img[:, :, 1].reshape(-1))
    assert np.array_equal(d[b"data"][0, 2048:], img[:, :, 2].reshape(-1))
    with open(root / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    assert meta[b"label_names"][0] == b"airplane" and len(meta[b"label_names"]) == 10


def test_arrays_shapes_labels_and_exact_round_trip(cifar_tiny):
    root, x, y, xt, yt = cifar_tiny
    a = cifar.load_cifar10_arrays(root, val_size=30)
    assert set(a) == {"x_pool", "y_pool", "x_val", "y_val", "x_test", "y_test"}
    assert a["x_pool"].shape == (70, 3, 32, 32) and a["x_val"].shape == (30, 3, 32, 32)
    assert a["x_test"].shape == (20, 3, 32, 32)
    assert all(a[k].dtype == np.float32 for k in ("x_pool", "x_val", "x_test"))
    assert all(a[k].dtype == np.int64 for k in ("y_pool", "y_val", "y_test"))
    # validation = the last val_size training images, the pool the rest, in file order
    assert np.array_equal(a["y_pool"], y[:70]) and np.array_equal(a["y_val"], y[70:])
    assert np.array_equal(a["y_test"], yt)
    mean = x[:70].astype(np.float64).mean(axis=0).transpose(2, 0, 1) / 255.0  # (3, 32, 32)
    assert np.array_equal(_undo(a["x_pool"], mean), x[:70])
    assert np.array_equal(_undo(a["x_val"], mean), x[70:])
    assert np.array_equal(_undo(a["x_test"], mean), xt)
    # R, G, B order: the first pixel of image 0 was written as (0, 255, 7)
    assert np.allclose(a["x_pool"][0, :, 0, 0] + mean[:, 0, 0], [0, 1, 7 / 255], atol=1e-6)


def test_mean_image_comes_from_the_pool_only(cifar_tiny):
    root, x, y, xt, yt = cifar_tiny
    # make the validation images much brighter: including them would shift the mean
    x = x.copy()
    x[80:] = 250
    cifar.write_cifar10_batches(root, x, y, xt, yt)
    a = cifar.load_cifar10_arrays(root, val_size=20)
    assert np.abs(a["x_pool"].mean(axis=0)).max() < 1e-5
    assert a["x_val"].mean() > 0.2  # bright val images stay bright relative to the pool
    b = cifar.load_cifar10_arrays(root, val_size=21)  # one more held out: a different mean
    assert not np.allclose(a["x_test"], b["x_test"])


def test_python2_style_pickles_load(cifar_tiny, tmp_path):
    """The real files are cPickle output: strings as BINSTRING, numpy.core module names."""
    root, x, y, xt, yt = cifar_tiny

    class Py2Pickler(pickle._Pickler):  # writes str and bytes as Python 2 str (BINSTRING)
        dispatch = dict(pickle._Pickler.dispatch)

        def save_py2str(self, obj):
            b = obj if isinstance(obj, bytes) else obj.encode("latin1")
            if len(b) < 256:
                self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
            else:
                self.write(pickle.BINSTRING + len(b).to_bytes(4, "little") + b)
            self.memoize(obj)

        dispatch[str] = save_py2str
        dispatch[bytes] = save_py2str

    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        with open(root / name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        buf = io.BytesIO()
        Py2Pickler(buf, protocol=2).dump(d)
        raw = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"_codecs" not in raw and b"numpy.core.multiarray" in raw
        (root / name).write_bytes(raw)
    a = cifar.load_cifar10_arrays(root, val_size=10)
    mean = x[:90].astype(np.float64).mean(axis=0).transpose(2, 0, 1) / 255.0
    assert np.array_equal(_undo(a["x_val"], mean), x[90:])
    assert np.array_equal(a["y_test"], yt)


# ----------------------------------------------------------------------------------------
# Bad files and settings


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_pickle_with_a_forbidden_global_is_refused_and_does_not_run(cifar_tiny, tmp_path):
    root = cifar_tiny[0]
    marker = tmp_path / "pwned"
    payload = {b"data": _Evil(f"touch {shlex.quote(str(marker))}"), b"labels": [0]}
    (root / "data_batch_3").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3.*refusing to load (posix|nt)\.system") as e:
        cifar.load_cifar10_arrays(root, val_size=10)
    assert isinstance(e.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()


def _rewrite(root: Path, name: str, **change) -> None:
    with open(root / name, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    for key, value in change.items():
        if value is None:
            del d[key.encode()]
        else:
            d[key.encode()] = value
    with open(root / name, "wb") as f:
        pickle.dump(d, f, protocol=2)


@pytest.mark.parametrize("name, change, message", [
    ("data_batch_4", {"data": np.zeros((20, 3071), np.uint8)},
     r"data_batch_4: b'data' is a uint8 array of shape \(20, 3071\); expected .*\(N, 3072\)"),
    ("data_batch_4", {"data": np.zeros((20, 3072), np.float32)},
     r"data_batch_4: b'data' is a float32 array.*expected a uint8 array"),
    ("data_batch_1", {"labels": None}, r"data_batch_1: missing key b'labels'"),
    ("test_batch", {"labels": [10] + [0] * 19}, r"test_batch: label 10 out of range; .*0\.\.9"),
    ("data_batch_5", {"labels": [0] * 19}, r"data_batch_5: 19 labels for 20 images"),
    ("data_batch_2", {"labels": ["cat"] * 20}, r"data_batch_2: b'labels' has dtype"),
])
def test_malformed_batches_name_the_file(cifar_tiny, name, change, message):
    root = cifar_tiny[0]
    _rewrite(root, name, **change)
    with pytest.raises(DataError, match=message):
        cifar.load_cifar10_arrays(root, val_size=10)


def test_truncated_and_missing_files(cifar_tiny):
    root = cifar_tiny[0]
    (root / "data_batch_2").write_bytes((root / "data_batch_2").read_bytes()[:100])
    with pytest.raises(DataError, match=r"data_batch_2: cannot read"):
        cifar.load_cifar10_arrays(root, val_size=10)
    (root / "data_batch_2").unlink()
    with pytest.raises(DataError, match=r"data_batch_2: missing CIFAR-10 batch file"):
        cifar.load_cifar10_arrays(root, val_size=10)


@pytest.mark.parametrize("val_size", [0, -1, 100, 1000])
def test_bad_val_size_is_a_config_error(cifar_tiny, val_size):
    with pytest.raises(ConfigError, match=rf"val_size={val_size}: expected between 1 and 99"):
        cifar.load_cifar10_arrays(cifar_tiny[0], val_size=val_size)


def test_root_env_var_default_and_missing(cifar_tiny, tmp_path, monkeypatch):
    root = cifar_tiny[0]
    monkeypatch.setenv(cifar.CIFAR10_ENV, str(root))
    assert cifar.cifar10_root("cifar10") == root
    assert cifar.cifar10_root(str(root)) == root
    monkeypatch.setenv(cifar.CIFAR10_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"KDGAN_CIFAR10=.*nowhere.*python -m kdgan.cifar download"):
        cifar.cifar10_root("cifar10")
    monkeypatch.delenv(cifar.CIFAR10_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match=r"\.kdgan/data/cifar-10-batches-py.*KDGAN_CIFAR10"):
        cifar.cifar10_root("cifar10")
    with pytest.raises(DataError, match=r"not a CIFAR-10 batches directory"):
        cifar.cifar10_root(str(tmp_path))
