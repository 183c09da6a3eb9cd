"""Files written whole or not at all: the one writer every module uses (results, runs,
benchmarks, the search), importing neither torch nor the game."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same directory, then rename over `path`.

    A reader sees the old file or the new one, never a part; a process killed mid-write
    leaves at most a hidden `.<name>.*.tmp` beside it. The file gets the mode an ordinary
    `open(path, "w")` would give it (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed (damaged, or written by another config); the
    message names the file and what to do."""
