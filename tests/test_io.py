"""Atomic writes: permissions, temporary files, and one-line errors for unwritable places."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from supcon import io
from supcon.io import OutputError, atomic_write_bytes, atomic_write_json, atomic_write_text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_new_files_follow_the_umask(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives: the reference
    finally:
        os.umask(old)
    assert _mode(path) == _mode(plain) == 0o666 & ~mask


def test_replaced_files_keep_their_mode(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text("{}")
    path.chmod(0o640)
    atomic_write_json(path, {"a": 1})
    assert _mode(path) == 0o640 and path.read_text().startswith("{")


@pytest.mark.parametrize(
    "raised",
    [KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left on device"), RuntimeError("x")],
)
def test_failed_writes_leave_the_old_file_and_no_temporary(tmp_path: Path, raised) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def write(handle) -> None:
        handle.write(b"new, half")
        raise raised

    with pytest.raises((type(raised), OutputError)):
        io._atomic(path, write)
    assert path.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "free disk space"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "write permission"),
    ],
)
def test_unwritable_places_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, advice: str
) -> None:
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    where = "fsync" if code == errno.ENOSPC else "replace"
    monkeypatch.setattr(io.os, where, refuse)
    target = tmp_path / "metrics.json"
    with pytest.raises(OutputError) as caught:
        atomic_write_bytes(target, b"{}")
    message = str(caught.value)
    assert str(target) in message and advice in message and "\n" not in message
    assert isinstance(caught.value, OSError) and caught.value.errno == code
    assert _leftovers(tmp_path) == [] and not target.exists()


def test_other_os_errors_pass_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(io.os, "fsync", broken)
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(tmp_path / "x", b"1")
    assert not isinstance(caught.value, OutputError)
