"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename.

The file keeps the permissions an ordinary ``open(path, "w")`` would give it: those of the file
it replaces, or ``0o666`` less the process umask for a new file (``mkstemp`` alone would leave
``0o600``). The temporary file is removed on any exit, including ``KeyboardInterrupt`` and a
``SIGTERM`` turned into an exception. A full disk, a read-only or unwritable folder raise
:class:`OutputError`: one line that names the path and says what to do.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from supcon.errors import UserError

#: errno values that mean "this place cannot be written", with what to do about each.
WRITE_ERRNOS = {
    errno.ENOSPC: "free disk space or write to another disk",
    errno.EDQUOT: "free space in your quota or write to another disk",
    errno.EROFS: "the file system is read-only; write to a writable folder",
    errno.EACCES: "you lack write permission there; write to a folder you own",
    errno.EPERM: "the operation is not permitted there; write to a folder you own",
}


class OutputError(UserError, OSError):
    """A file could not be written (disk full, read-only or unwritable folder).

    Both a :class:`~supcon.errors.UserError` (the CLI prints one line) and an ``OSError``
    (``errno`` and ``filename`` set), so code that handles ``OSError`` still does.
    """

    def __init__(self, message: str, code: int | None = None, filename: str | None = None):
        super().__init__(message)
        self.message = message
        self.errno = code
        self.filename = filename

    def __str__(self) -> str:
        return self.message


def write_error(exc: OSError, path: str | Path, action: str = "write") -> OutputError:
    """One-line :class:`OutputError` for an ``OSError`` raised while writing ``path``.

    Args:
        exc: The error (its ``errno`` picks the advice).
        path: The file being written.
        action: The verb of the message (``"cannot write PATH"``).
    """
    reason = exc.strerror or str(exc)
    hint = WRITE_ERRNOS.get(exc.errno or 0, "check the folder and the disk")
    return OutputError(f"cannot {action} {str(path)!r}: {reason}; {hint}", exc.errno, str(path))


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is process-wide and racy)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS and not isinstance(exc, OutputError):
            raise write_error(exc, path) from None
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    return path


def sidecar_path(path: str | Path) -> Path:
    """``FILE.json`` beside ``FILE``: the description of an embeddings file, index or export."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a part."""
    return _atomic(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    """Atomically ``torch.save`` ``obj`` (a checkpoint is never left half-written)."""
    import torch  # here, so the command line's light modules can use supcon.io

    return _atomic(path, lambda handle: torch.save(obj, handle))
