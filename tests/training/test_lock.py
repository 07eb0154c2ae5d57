"""One writer per run directory: a second writer is refused, a stale lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from supcon.cli import main
from supcon.config import config_to_yaml
from supcon.training.lock import RunLocked, hold_lock
from tests.training.helpers import tiny


def lock_of(run: Path) -> dict:
    return json.loads((run / ".lock").read_text())


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_lock_holds_pid_host_time_and_is_released(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with hold_lock(run):
        holder = lock_of(run)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["started"][:4].isdigit()
        with hold_lock(run):  # re-entrant in one process
            pass
        assert (run / ".lock").exists()
        (run / "file").write_text("x")
    assert not (run / ".lock").exists()
    with pytest.raises(ZeroDivisionError), hold_lock(run):  # released on errors too
        raise ZeroDivisionError
    assert not (run / ".lock").exists()
    with hold_lock(tmp_path / "unused"):
        pass
    assert not (tmp_path / "unused").exists()  # nothing written: the folder goes again


def test_live_writer_refuses_a_second_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with hold_lock(run):  # held by this process; a "second writer" is any other pid
        holder = lock_of(run)
        (run / ".lock").write_text(json.dumps({**holder, "pid": os.getppid()}))  # alive
        with pytest.raises(RunLocked) as caught, hold_lock(run):
            pass
        message = str(caught.value)
        assert f"in use by process {os.getppid()} on {socket.gethostname()}" in message
        assert "\n" not in message and "another --out" in message
        assert lock_of(run)["pid"] == os.getppid()  # the holder's lock is left alone
    assert lock_of(run)["pid"] == os.getppid()  # and not released by someone else


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "started": "2026-01-01T00:00"}
    (run / ".lock").write_text(json.dumps(stale))
    with hold_lock(run):
        assert lock_of(run)["pid"] == os.getpid()
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and f"taking over the stale lock of process {stale['pid']}" in notice[0]


def test_lock_of_another_host_is_never_guessed_stale(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    other = {"pid": dead_pid(), "host": "elsewhere.example", "started": "2026-01-01T00:00"}
    (run / ".lock").write_text(json.dumps(other))
    with pytest.raises(RunLocked, match="on elsewhere.example"), hold_lock(run):
        pass


def test_cli_second_writer_exits_2_and_writes_nothing(images: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(config_to_yaml(tiny(images, train={"epochs": 1})))
    run.mkdir()
    live = {"pid": os.getppid(), "host": socket.gethostname(), "started": "now"}
    (run / ".lock").write_text(json.dumps(live))
    for argv in (["train", str(recipe), "--out", str(run)], ["train", "--resume", str(run)]):
        if argv[1] == "--resume":
            (run / "checkpoints").mkdir()
            (run / "checkpoints" / "last.pt").write_bytes(b"")
            (run / "config.yaml").write_text(recipe.read_text())
        assert main([*argv, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by process {os.getppid()}" in err[0], err
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "config.yaml"]
