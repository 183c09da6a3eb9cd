"""CIFAR-10 beyond the loader (kdgan.data.cifar, tests/test_data_cifar.py): the download CLI
(python -m kdgan.cifar), the CIFAR models, mirroring, a run end to end."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
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

from conftest import CIFAR_TEST


# ----------------------------------------------------------------------------------------
# Download (a local file:// tarball; no network)


def _tarball(cifar_tiny, tmp_path: Path) -> Path:
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(cifar_tiny[0], arcname=cifar.CIFAR10_DIRNAME)
    return path


def test_download_checks_the_md5_and_extracts(cifar_tiny, tmp_path, monkeypatch, capsys):
    tarball = _tarball(cifar_tiny, tmp_path)
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
    assert np.array_equal(a["y_pool"], cifar_tiny[2][:90])


def test_download_with_a_wrong_md5_fails_and_leaves_nothing(cifar_tiny, tmp_path, monkeypatch):
    tarball = _tarball(cifar_tiny, tmp_path)
    monkeypatch.setattr(cifar, "CIFAR10_URL", tarball.as_uri())
    monkeypatch.setattr(cifar, "CIFAR10_MD5", "0" * 32)
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=r"md5 [0-9a-f]{32} does not match the expected 0{32}"):
        cifar.download(dest)
    assert list(dest.iterdir()) == []


@pytest.mark.slow
def test_python_dash_m_kdgan_cifar_keeps_a_directory_already_there(cifar_tiny):
    root = cifar_tiny[0]
    done = subprocess.run([sys.executable, "-m", "kdgan.cifar", "download", "--root",
                           str(root.parent)], capture_output=True, text=True, check=True)
    assert f"CIFAR-10 already in {root}" in done.stderr
    assert f"CIFAR-10 batches in {root}" in done.stdout


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


@pytest.mark.slow
def test_a_cifar10_directory_trains_end_to_end_with_its_dataset_defaults(cifar_tiny, tmp_path, monkeypatch):
    """--dataset DIR (or 'cifar10' with KDGAN_CIFAR10) picks the CIFAR networks, mirroring and a
    held-out validation split; a short kdgan run goes through and resumes to the same end."""
    from kdgan import train as train_mod
    from kdgan.config import Config

    root = cifar_tiny[0]
    values = {"dataset": str(root), "n": 40, "val_size": 20, "tch_arch": "resnet20",
              "pretrain_epochs": 1, "dis_pretrain_epochs": 1, "epochs": 2, "batch_size": 10,
              "device": "cpu"}
    cfg = Config.from_dict(values)
    assert (cfg.cls_arch, cfg.dis_arch, cfg.aug_flip, cfg.aug_rotation) == ("cifar-cnn", "cifar-cnn", True, 0.0)
    summary = train_mod.train(cfg, tmp_path / "run", quiet=True)
    assert summary["val_size"] == 20 and summary["test_size"] == CIFAR_TEST and summary["num_classes"] == 10
    assert summary["params"]["cls"] == 504_786
    monkeypatch.setenv(cifar.CIFAR10_ENV, str(root))
    named = train_mod.train(Config.from_dict({**values, "dataset": "cifar10"}), tmp_path / "named", quiet=True)
    assert named["test_acc"] == summary["test_acc"]
    with pytest.raises(ConfigError, match="n=90"):
        train_mod.train(Config.from_dict({**values, "n": 90}), tmp_path / "big", quiet=True)
