"""CIFAR-10: the batch format, the restricted unpickler, preprocessing, download, the models."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shlex
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from kdgan import cifar
from kdgan.augment import random_flip
from kdgan.config import ConfigError
from kdgan.data import DataError
from kdgan.models import ResNet, build, num_parameters

N_TRAIN, N_TEST = 100, 20  # 5 batches of 20 training images, a test batch of 20


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 32, 32, 3) uint8 with every pixel value present, labels cycling over 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    x[0, 0, 0] = (0, 255, 7)
    y = (np.arange(n) + seed) % 10
    return x, y


@pytest.fixture
def tiny(tmp_path: Path):
    x, y = _images(N_TRAIN, seed=1)
    xt, yt = _images(N_TEST, seed=2)
    root = cifar.write_cifar10_batches(tmp_path / cifar.CIFAR10_DIRNAME, x, y, xt, yt)
    return root, x, y, xt, yt


def _undo(a: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """float32 (N, 3, 32, 32) minus-mean -> uint8 (N, 32, 32, 3) as it was written."""
    return np.rint((a + mean) * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)


# ----------------------------------------------------------------------------------------
# Format and preprocessing


def test_files_are_in_the_python_version_format(tiny):
    root, x, y, _, _ = tiny
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


def test_arrays_shapes_labels_and_exact_round_trip(tiny):
    root, x, y, xt, yt = tiny
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


def test_mean_image_comes_from_the_pool_only(tiny):
    root, x, y, xt, yt = tiny
    # make the validation images much brighter: including them would shift the mean
    x = x.copy()
    x[80:] = 250
    cifar.write_cifar10_batches(root, x, y, xt, yt)
    a = cifar.load_cifar10_arrays(root, val_size=20)
    assert np.abs(a["x_pool"].mean(axis=0)).max() < 1e-5
    assert a["x_val"].mean() > 0.2  # bright val images stay bright relative to the pool
    b = cifar.load_cifar10_arrays(root, val_size=21)  # one more held out: a different mean
    assert not np.allclose(a["x_test"], b["x_test"])


def test_python2_style_pickles_load(tiny, tmp_path):
    """The real files are cPickle output: strings as BINSTRING, numpy.core module names."""
    root, x, y, xt, yt = tiny

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


def test_a_pickle_with_a_forbidden_global_is_refused_and_does_not_run(tiny, tmp_path):
    root = tiny[0]
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
def test_malformed_batches_name_the_file(tiny, name, change, message):
    root = tiny[0]
    _rewrite(root, name, **change)
    with pytest.raises(DataError, match=message):
        cifar.load_cifar10_arrays(root, val_size=10)


def test_truncated_and_missing_files(tiny):
    root = tiny[0]
    (root / "data_batch_2").write_bytes((root / "data_batch_2").read_bytes()[:100])
    with pytest.raises(DataError, match=r"data_batch_2: cannot read"):
        cifar.load_cifar10_arrays(root, val_size=10)
    (root / "data_batch_2").unlink()
    with pytest.raises(DataError, match=r"data_batch_2: missing CIFAR-10 batch file"):
        cifar.load_cifar10_arrays(root, val_size=10)


@pytest.mark.parametrize("val_size", [0, -1, 100, 1000])
def test_bad_val_size_is_a_config_error(tiny, val_size):
    with pytest.raises(ConfigError, match=rf"val_size={val_size}: expected between 1 and 99"):
        cifar.load_cifar10_arrays(tiny[0], val_size=val_size)


def test_root_env_var_default_and_missing(tiny, tmp_path, monkeypatch):
    root = tiny[0]
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


# ----------------------------------------------------------------------------------------
# Download (a local file:// tarball; no network)


def _tarball(tiny, tmp_path: Path) -> Path:
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tiny[0], arcname=cifar.CIFAR10_DIRNAME)
    return path


def test_download_checks_the_md5_and_extracts(tiny, tmp_path, monkeypatch, capsys):
    tarball = _tarball(tiny, tmp_path)
    monkeypatch.setattr(cifar, "CIFAR10_URL", tarball.as_uri())
    monkeypatch.setattr(cifar, "CIFAR10_MD5", hashlib.md5(tarball.read_bytes()).hexdigest())
    dest = tmp_path / "data"
    assert cifar.main(["download", "--root", str(dest)]) == 0
    root = dest / cifar.CIFAR10_DIRNAME
    out = capsys.readouterr()
    assert f"CIFAR-10 batches in {root}" in out.out and "KDGAN_CIFAR10=" in out.out
    assert "100%" in out.err
    assert sorted(p.name for p in dest.iterdir()) == [cifar.CIFAR10_DIRNAME]  # archive removed
    a = cifar.load_cifar10_arrays(root, val_size=10)
    assert np.array_equal(a["y_pool"], tiny[2][:90])


def test_download_with_a_wrong_md5_fails_and_leaves_nothing(tiny, tmp_path, monkeypatch):
    tarball = _tarball(tiny, tmp_path)
    monkeypatch.setattr(cifar, "CIFAR10_URL", tarball.as_uri())
    monkeypatch.setattr(cifar, "CIFAR10_MD5", "0" * 32)
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=r"md5 [0-9a-f]{32} does not match the expected 0{32}"):
        cifar.download(dest)
    assert list(dest.iterdir()) == []


def test_download_refuses_unsafe_archive_members(tmp_path, monkeypatch):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    monkeypatch.setattr(cifar, "CIFAR10_URL", evil.as_uri())
    monkeypatch.setattr(cifar, "CIFAR10_MD5", hashlib.md5(evil.read_bytes()).hexdigest())
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=r"cannot unpack"):
        cifar.download(dest)
    assert not (tmp_path / "escaped").exists() and list(dest.iterdir()) == []


# ----------------------------------------------------------------------------------------
# Models and augmentation


def test_cifar_models_parameter_counts_and_shapes():
    x = torch.randn(2, 3, 32, 32)
    cnn = build("cifar-cnn", (3, 32, 32), 10, dropout=0.5)
    r110 = build("resnet110", (3, 32, 32), 10, dropout=0.0)
    assert num_parameters(cnn) == 504_786
    assert num_parameters(r110) == 1_727_962 and 1_600_000 < num_parameters(r110) < 1_800_000
    assert num_parameters(build("resnet20", (3, 32, 32), 10, dropout=0.0)) == 269_722
    assert len([m for m in r110.modules() if isinstance(m, torch.nn.Conv2d)]) == 109  # + fc = 110
    cnn.eval()
    r110.eval()
    with torch.no_grad():
        assert cnn(x).shape == (2, 10) and r110(x).shape == (2, 10)
    with pytest.raises(ValueError, match="image inputs"):
        build("cifar-cnn", (3072,), 10, dropout=0.5)
    with pytest.raises(ValueError, match="image inputs"):
        ResNet((3072,), 10)


def test_resnet20_forward_and_backward():
    torch.manual_seed(0)
    model = build("resnet20", (3, 32, 32), 10, dropout=0.2)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.features[0].weight.grad.abs().sum() > 0


def test_random_flip():
    torch.manual_seed(0)
    x = torch.randn(400, 3, 4, 5)
    assert torch.equal(random_flip(x, p=1.0), torch.flip(x, dims=[3]))
    assert torch.equal(random_flip(x, p=0.0), x)
    out = random_flip(x, p=0.5)
    flipped = (out == torch.flip(x, dims=[3])).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert torch.all(flipped ^ kept)  # each image whole, either mirrored or not
    assert 150 < int(flipped.sum()) < 250  # Binomial(400, 0.5): mean 200, sd 10
    with pytest.raises(ValueError):
        random_flip(x[0], p=0.5)


def test_a_cifar10_directory_trains_end_to_end_with_its_dataset_defaults(tiny, tmp_path, monkeypatch):
    """--dataset DIR (or 'cifar10' with KDGAN_CIFAR10) picks the CIFAR networks, mirroring and a
    held-out validation split; a short kdgan run goes through and resumes to the same end."""
    from kdgan import train as train_mod
    from kdgan.config import Config

    root = tiny[0]
    values = {"dataset": str(root), "n": 40, "val_size": 20, "tch_arch": "resnet20",
              "pretrain_epochs": 1, "dis_pretrain_epochs": 1, "epochs": 2, "batch_size": 10,
              "device": "cpu"}
    cfg = Config.from_dict(values)
    assert (cfg.cls_arch, cfg.dis_arch, cfg.aug_flip, cfg.aug_rotation) == ("cifar-cnn", "cifar-cnn", True, 0.0)
    summary = train_mod.train(cfg, tmp_path / "run", quiet=True)
    assert summary["val_size"] == 20 and summary["test_size"] == N_TEST and summary["num_classes"] == 10
    assert summary["params"]["cls"] == 504_786
    monkeypatch.setenv(cifar.CIFAR10_ENV, str(root))
    named = train_mod.train(Config.from_dict({**values, "dataset": "cifar10"}), tmp_path / "named", quiet=True)
    assert named["test_acc"] == summary["test_acc"]
    with pytest.raises(ConfigError, match="n=90"):
        train_mod.train(Config.from_dict({**values, "n": 90}), tmp_path / "big", quiet=True)
