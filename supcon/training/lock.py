"""One writer per run directory: ``RUN/.lock`` holds the writer's pid, host and start time.

The file is created with ``O_CREAT | O_EXCL``, so of two runs started together exactly one gets
it. A lock left by a process that no longer runs on this host (killed with SIGKILL, a crashed
machine's reboot) is taken over with a notice; a lock from another host is never guessed stale,
as its pid cannot be checked from here. The lock is re-entrant within one process and released
(the file removed) on exit, also on errors and signals.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

from supcon.errors import UserError

LOCK_NAME = ".lock"


class RunLocked(UserError):  # noqa: N818
    """Another live process writes to this run directory."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _read(path: Path) -> dict | None:
    """The lock's content, or ``None`` when it vanished; ``{}`` when it is not (yet) readable."""
    for _ in range(20):  # a writer may be between creating the file and filling it
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            holder = json.loads(text)
            if isinstance(holder, dict):
                return holder
        except json.JSONDecodeError:
            pass
        time.sleep(0.05)
    return {}


def _try_create(path: Path, content: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(content, handle)
    return True


@contextmanager
def run_lock(run_dir: str | Path, *, who: str = "supcon train") -> Iterator[None]:
    """Hold ``run_dir/.lock`` on rank 0 for the ``with`` block; every rank raises if it is taken.

    Not distributed: :func:`hold_lock`. Under ``torchrun`` rank 0 takes the lock and tells the
    other ranks whether it got it (one broadcast), so a refused run ends on every rank at once.
    """
    from supcon.distributed import broadcast_object, get_rank, get_world_size

    if get_world_size() == 1:
        with hold_lock(run_dir, who=who):
            yield
        return
    with ExitStack() as stack:
        refused = None
        if get_rank() == 0:
            try:
                stack.enter_context(hold_lock(run_dir, who=who))
            except RunLocked as exc:
                refused = str(exc)
        refused = broadcast_object(refused)
        if refused is not None:
            raise RunLocked(str(refused))
        yield


@contextmanager
def hold_lock(
    run_dir: str | Path, *, enabled: bool = True, who: str = "supcon train"
) -> Iterator[None]:
    """Hold ``run_dir/.lock`` for the duration of the ``with`` block.

    Args:
        run_dir: The run directory (created if needed; removed again on exit if it is then
            empty and was created here).
        enabled: ``False`` (ranks other than 0) makes this a no-op.
        who: Prefix of the stale-lock notice.

    Raises:
        RunLocked: when a live process (or one on another host) holds the lock; one line that
            names it and says what to do.
    """
    if not enabled:
        yield
        return
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    host, pid = socket.gethostname(), os.getpid()
    mine = {"pid": pid, "host": host, "started": datetime.now(timezone.utc).isoformat()}
    owned = False
    while not owned:
        if _try_create(path, mine):
            owned = True
            break
        holder = _read(path)
        if holder is None:  # released meanwhile: try again
            continue
        if holder.get("pid") == pid and holder.get("host") == host:
            break  # this process holds it already (re-entrant): the outer holder releases it
        their_pid, their_host = holder.get("pid"), holder.get("host")
        if their_host == host and isinstance(their_pid, int) and not _pid_alive(their_pid):
            print(
                f"{who}: taking over the stale lock of process {their_pid} (started "
                f"{holder.get('started', '?')}, no longer running) in {str(run_dir)!r}",
                file=sys.stderr,
            )
            with suppress(FileNotFoundError):
                os.unlink(path)
            continue
        since = holder.get("started", "an unknown time")
        raise RunLocked(
            f"run directory {str(run_dir)!r} is in use by process {their_pid} on {their_host} "
            f"(since {since}); wait for it to end or pass another --out. If no such process "
            f"runs, delete {str(path)!r}"
        )
    try:
        yield
    finally:
        if owned:
            holder = _read(path)
            if holder is not None and holder.get("pid") == pid:
                with suppress(FileNotFoundError):
                    os.unlink(path)
            if created:
                with suppress(OSError):
                    run_dir.rmdir()  # only if nothing was written
