"""python -m kdgan.cifar download: fetch, check and unpack CIFAR-10's python batches.

The batch format, its reader and the preprocessing are kdgan.data.cifar (names re-exported
here). The archive cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) is
checked against its md5 and unpacked without absolute paths, links out of the tree or special
files to ROOT/cifar-10-batches-py (default root ~/.kdgan/data), where dataset="cifar10" finds
it; elsewhere, set $KDGAN_CIFAR10 to the directory or pass the directory as the dataset.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from kdgan.data.cifar import (
    CIFAR10_DIRNAME, CIFAR10_ENV, DEFAULT_ROOT, DOWNLOAD_HINT, IMAGE_SHAPE, LABEL_NAMES,
    META_FILE, NUM_CLASSES, ROW_SIZE, TEST_BATCH, TRAIN_BATCHES, cifar10_root, is_cifar10_dir,
    load_cifar10_arrays, read_batch, write_cifar10_batches,
)
from kdgan.data.types import DataError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


# ----------------------------------------------------------------------------------------
# Download


def download(root_parent: Path) -> Path:
    """Fetch CIFAR10_URL into root_parent, check its md5 against CIFAR10_MD5, unpack it with
    tarfile's "data" filter (no absolute paths, links out of the tree or special files) and
    return root_parent / cifar-10-batches-py. A directory already there is kept as is. On a
    checksum mismatch or a failed download the partial file is deleted and DataError raised."""
    root_parent = Path(root_parent).expanduser()
    target = root_parent / CIFAR10_DIRNAME
    if is_cifar10_dir(target):
        print(f"CIFAR-10 already in {target}", file=sys.stderr)
        return target
    root_parent.mkdir(parents=True, exist_ok=True)
    url, want = CIFAR10_URL, CIFAR10_MD5
    archive = root_parent / (url.rsplit("/", 1)[-1] or "cifar-10-python.tar.gz")
    part = archive.with_name(archive.name + ".part")
    try:
        got = _fetch(url, part)
        if got != want:
            raise DataError(f"{url}: md5 {got} does not match the expected {want}; the "
                            "download is corrupt or the file changed (deleted it)")
        part.replace(archive)
    except BaseException as e:
        part.unlink(missing_ok=True)
        if isinstance(e, OSError):  # urllib.error.URLError is an OSError
            raise DataError(f"cannot download {url}: {e}") from None
        raise
    try:
        _extract(archive, root_parent, target)
    finally:
        archive.unlink(missing_ok=True)
    return target


def _fetch(url: str, dest: Path) -> str:
    """Stream `url` into `dest`, printing progress about every 10%; return the md5 hex."""
    md5 = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        step = total / 10 if total else 16 * 2**20  # report each 10%, or each 16 MiB
        done, next_at = 0, step
        print(f"downloading {url}" + (f" ({total / 2**20:.1f} MiB)" if total else ""),
              file=sys.stderr, flush=True)
        while chunk := response.read(1 << 20):
            out.write(chunk)
            md5.update(chunk)
            done += len(chunk)
            if done >= next_at:
                print(f"  {100 * done / total:.0f}%" if total else f"  {done / 2**20:.0f} MiB",
                      file=sys.stderr, flush=True)
                while next_at <= done:
                    next_at += step
    return md5.hexdigest()


def _extract(archive: Path, root_parent: Path, target: Path) -> None:
    """Unpack into a scratch directory beside `target`, then move the batches into place."""
    scratch = Path(tempfile.mkdtemp(prefix=".cifar-extract-", dir=root_parent))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(scratch, filter="data")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{archive}: cannot unpack ({e})") from None
        unpacked = scratch / CIFAR10_DIRNAME
        if not is_cifar10_dir(unpacked):
            raise DataError(f"{archive}: holds no {CIFAR10_DIRNAME}/ with {TRAIN_BATCHES[0]} "
                            f"and {TEST_BATCH}")
        if target.exists():  # an incomplete earlier directory
            shutil.rmtree(target)
        unpacked.replace(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdgan.cifar",
                                     description="CIFAR-10 (python version) for kdgan.")
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help=f"fetch, check (md5) and unpack {CIFAR10_URL}")
    dl.add_argument("--root", default=DEFAULT_ROOT,
                    help=f"directory to put {CIFAR10_DIRNAME} in (default {DEFAULT_ROOT})")
    args = parser.parse_args(argv)
    try:
        path = download(Path(args.root))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"CIFAR-10 batches in {path}")
    default = Path(f"{DEFAULT_ROOT}/{CIFAR10_DIRNAME}").expanduser()
    if path.resolve() != default.resolve():
        print(f"not the default location: set {CIFAR10_ENV}={path} so that dataset='cifar10' "
              f"finds it (or pass the directory itself as the dataset)")
    return 0


__all__ = [
    "CIFAR10_DIRNAME", "CIFAR10_ENV", "CIFAR10_MD5", "CIFAR10_URL", "DEFAULT_ROOT",
    "DOWNLOAD_HINT", "IMAGE_SHAPE", "LABEL_NAMES", "META_FILE", "NUM_CLASSES", "ROW_SIZE",
    "TEST_BATCH", "TRAIN_BATCHES", "cifar10_root", "download", "is_cifar10_dir",
    "load_cifar10_arrays", "main", "read_batch", "write_cifar10_batches",
]


if __name__ == "__main__":
    sys.exit(main())
