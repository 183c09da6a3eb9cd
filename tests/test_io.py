"""kdgan.io: whole-or-nothing writes."""

from __future__ import annotations

import os
import stat

import pytest

from kdgan.io import atomic_write


def test_an_atomic_write_gets_the_mode_of_an_ordinary_write(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("x"))
        (tmp_path / "b.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    atomic_write(path, lambda tmp: tmp.write_text("old"))

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]
