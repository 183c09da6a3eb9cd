"""Shared fixtures: small synthetic datasets in the formats users bring, written per test."""

from __future__ import annotations

import contextlib
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from kdgan.data.cifar import CIFAR10_DIRNAME, write_cifar10_batches


def blobs(n: int, k: int = 3, side: int = 8, seed: int = 0, noise: float = 0.35):
    """Images (n, side, side) in [0, 1]: class c lights a fixed random pattern, plus noise."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(1234).random((k, side, side)) > 0.6
    y = rng.integers(0, k, size=n)
    x = patterns[y].astype(np.float32) + noise * rng.standard_normal((n, side, side))
    return np.clip(x, 0, 1).astype(np.float32), y.astype(np.int64)


def write_blobs_npz(path: Path, n_train: int = 300, n_val: int = 200, n_test: int = 200,
                    **extra: np.ndarray) -> Path:
    xtr, ytr = blobs(n_train, seed=1)
    xva, yva = blobs(n_val, seed=2)
    xte, yte = blobs(n_test, seed=3)
    arrays = dict(x_train=xtr, y_train=ytr, x_val=xva, y_val=yva, x_test=xte, y_test=yte)
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


@pytest.fixture
def blobs_npz(tmp_path: Path) -> Path:
    return write_blobs_npz(tmp_path / "blobs.npz")


CIFAR_TRAIN, CIFAR_TEST = 100, 20  # cifar_tiny: 5 batches of 20 training images, a test batch of 20


def cifar_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 32, 32, 3) uint8 with every pixel value present, labels cycling over 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    x[0, 0, 0] = (0, 255, 7)
    y = (np.arange(n) + seed) % 10
    return x, y


@pytest.fixture
def cifar_tiny(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CIFAR-10 python batches in tmp_path: (root, x, y, test x, test y) as written."""
    x, y = cifar_images(CIFAR_TRAIN, seed=1)
    xt, yt = cifar_images(CIFAR_TEST, seed=2)
    root = write_cifar10_batches(tmp_path / CIFAR10_DIRNAME, x, y, xt, yt)
    return root, x, y, xt, yt


def _hold_folder(folder: str, owner: str, conn) -> None:
    from kdgan.io import FolderLock

    with FolderLock(Path(folder), owner):
        conn.send("held")
        try:
            conn.recv()  # until the test closes its end
        except EOFError:
            pass


@contextlib.contextmanager
def held(folder: Path, owner: str = "the run"):
    """Another live process holding `folder` (kdgan.io.FolderLock, as a run or a search does)
    for the block; yields that process (kill it to see a holder die). A pipe, not an Event,
    tells it to let go: setting an Event a killed process was waiting on can block forever."""
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    holder = ctx.Process(target=_hold_folder, args=(str(folder), owner, theirs))
    holder.start()
    theirs.close()
    try:
        assert mine.poll(60) and mine.recv() == "held"
        yield holder
    finally:
        mine.close()  # the holder's recv ends: it releases the folder and exits
        holder.join(60)


# A tiny, fast configuration of the whole game on `blobs_npz` (small players, few epochs).
TINY = dict(n=60, cls_arch="mlp-small", tch_arch="lenet", dis_arch="mlp-small",
            batch_size=20, pretrain_epochs=3, dis_pretrain_epochs=1, epochs=3,
            cls_steps=2, tch_steps=1, dis_steps=2, cls_lr=1e-3, tch_lr=1e-3, dis_lr=1e-3,
            eval_batch_size=500, device="cpu")


def _short_dir(prefix: str) -> Path:
    """A short folder under /tmp: Ray's unix sockets live under its temp dir, and a socket
    path may not exceed 107 bytes, which pytest's tmp_path easily does."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture(scope="session", autouse=True)
def ray_tmpdir():
    """Every Ray the tests start keeps its session files in a folder of this run, not in the
    machine-wide /tmp/ray (whose ray_current_cluster another Ray may read)."""
    import os
    import shutil

    path = _short_dir("kdgan-ray-")
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = saved
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def short_tmp():
    import shutil

    path = _short_dir("kdgan-t-")
    yield path
    shutil.rmtree(path, ignore_errors=True)
