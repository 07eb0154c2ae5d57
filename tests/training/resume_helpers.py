"""Kill a training run in-process at a chosen checkpoint save, resume it, compare whole runs.

The "kill" raises :class:`KilledError` from ``save_rotating`` *before* ``last.pt`` at the
chosen step is written, so the run directory holds what a run killed at that moment leaves: an older
``last.pt`` and CSV rows (and possibly an evaluation and ``best.pt``) logged after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import supcon.training.saving as saving
from supcon.config import Config
from supcon.training import train
from supcon.training.checkpoint import load_checkpoint
from tests.training.helpers import rows

#: Columns of log.csv that measure wall-clock time and so differ between runs.
TIMING_COLUMNS = ("images_per_s", "elapsed_s")


class KilledError(Exception):
    """Stands for SIGKILL inside a test."""


@contextmanager
def kill_at_last_checkpoint(monkeypatch: pytest.MonkeyPatch, step: int) -> Iterator[None]:
    """Raise :class:`KilledError` when ``last.pt`` of ``step`` is about to be written."""
    real = saving.save_rotating  # how the loop writes last.pt (the old one becomes prev.pt)

    def save(path, content):
        if Path(path).name == "last.pt" and content["step"] == step:
            raise KilledError(step)
        return real(path, content)

    with monkeypatch.context() as patch:
        patch.setattr(saving, "save_rotating", save)
        yield


def killed_then_resumed(
    config: Config, run_dir: Path, monkeypatch: pytest.MonkeyPatch, kill_step: int
) -> dict:
    """Train until the ``last.pt`` save of ``kill_step``, then ``resume=True`` to the end.

    Returns:
        The ``progress`` of the ``last.pt`` the resumed run started from.
    """
    with kill_at_last_checkpoint(monkeypatch, kill_step), pytest.raises(KilledError):
        train(config, run_dir, progress=False)
    start = load_checkpoint(run_dir / "checkpoints" / "last.pt")["progress"]
    train(config, run_dir, progress=False, resume=True)
    return start


def _csv(path: Path, drop: tuple[str, ...] = ()) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in drop} for row in rows(path)]


def assert_same_checkpoint(got: dict, expected: dict) -> None:
    """Model, optimizer, scheduler, scaler and progress identical, bit for bit."""
    assert got["progress"] == expected["progress"]
    assert got["model"].keys() == expected["model"].keys()
    for name, tensor in expected["model"].items():
        assert torch.equal(got["model"][name], tensor), name
    moments = got["optimizer"]["state"], expected["optimizer"]["state"]
    assert moments[0].keys() == moments[1].keys()
    for key, state in moments[1].items():
        for k, value in state.items():
            assert torch.equal(torch.as_tensor(moments[0][key][k]), torch.as_tensor(value)), k
    assert got["scheduler"] == expected["scheduler"]
    assert got.get("metrics") == expected.get("metrics")


def assert_same_run(got: Path, expected: Path) -> None:
    """Two run directories hold the same results: checkpoints, metrics and every CSV log."""
    assert (got / "metrics.json").read_text() == (expected / "metrics.json").read_text()
    for name in ("last.pt", "best.pt"):
        path = expected / "checkpoints" / name
        assert (got / "checkpoints" / name).exists() == path.exists(), name
        if path.exists():
            assert_same_checkpoint(
                load_checkpoint(got / "checkpoints" / name), load_checkpoint(path)
            )
    assert _csv(got / "log.csv", TIMING_COLUMNS) == _csv(expected / "log.csv", TIMING_COLUMNS)
    for name in ("eval.csv", "diagnostics.csv"):
        assert (got / name).exists() == (expected / name).exists(), name
        if (expected / name).exists():
            assert _csv(got / name) == _csv(expected / name), name
