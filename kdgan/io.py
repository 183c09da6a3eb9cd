"""Files written whole or not at all: the one writer every module uses (results, runs,
benchmarks, the search), importing neither torch nor the game."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
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


class FolderInUse(RuntimeError):
    """A folder another live process holds (FolderLock); the message names the holder."""


class FolderLock:
    """An exclusive lock on FOLDER/.lock, with the holder (host, PID, start time) in
    FOLDER/lock.json; taken at once or refused (FolderInUse), never waited for.

    The lock is the kernel's (flock): it is released when its holder's process ends, however
    it ends, so a lock left by a killed process is free without any guess about the holder's
    state; lock.json only names the holder for the message. `owner` says what holds it ("the
    search", "the run") and `advice` what to do, in the refusal's message.
    """

    LOCK, HOLDER = ".lock", "lock.json"

    def __init__(self, folder: Path, owner: str = "the process", advice: str = "",
                 refuse: type[Exception] = FolderInUse) -> None:
        from filelock import FileLock

        self.dir, self.owner, self.advice, self.refuse = Path(folder), owner, advice, refuse
        self._lock = FileLock(str(self.dir / self.LOCK), timeout=0)

    def __enter__(self) -> "FolderLock":
        from filelock import Timeout

        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise self.refuse(f"{self.dir} is in use by {self.holder_text()}"
                              + (f"; {self.advice}" if self.advice else "")) from None
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                  "started_iso": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())}
        atomic_write(self.dir / self.HOLDER, lambda tmp: tmp.write_text(json.dumps(holder)))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            (self.dir / self.HOLDER).unlink(missing_ok=True)
        finally:
            self._lock.release()

    def holder_text(self) -> str:
        try:
            h = json.loads((self.dir / self.HOLDER).read_text())
            return f"{self.owner} of PID {h['pid']} on {h['host']}, started {h['started_iso']}"
        except (OSError, ValueError, KeyError):
            return f"another process ({self.dir / self.HOLDER} is not readable yet)"
