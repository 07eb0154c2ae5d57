"""Run-directory logging: CSV logs, TensorBoard scalars and the run's provenance."""

from __future__ import annotations

import csv
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

import supcon
from supcon.messages import say


class CsvLog:
    """Append rows to a CSV file, writing the header once and flushing every row.

    Args:
        path: The CSV file.
        columns: Column names, in order.
    """

    def __init__(self, path: str | Path, columns: list[str]) -> None:
        self.path = Path(path)
        self.columns = columns
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._handle = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=columns)
        if new:
            self._writer.writeheader()
            self._handle.flush()

    def write(self, row: dict[str, Any]) -> None:
        """Write one row (missing columns are left empty)."""
        self._writer.writerow({k: row.get(k, "") for k in self.columns})
        self._handle.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._handle.close()


def truncate_csv(path: str | Path, last_step: int) -> None:
    """Drop the rows of a CSV log whose ``step`` is after ``last_step`` (resuming a run).

    A run killed after its last checkpoint has logged steps the resumed run will repeat; this
    keeps each step once. Missing files are left alone.
    """
    path = Path(path)
    if not path.is_file():
        return
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        rows = [row for row in reader if row.get("step") and int(row["step"]) <= last_step]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


class Scalars:
    """TensorBoard scalars under ``log_dir`` when ``tensorboard`` is installed, else nothing.

    Args:
        log_dir: Event-file folder.
        enabled: Write at all.
        purge_step: On resume, the first step to (re)write; later events of the old run are
            discarded by TensorBoard.
    """

    def __init__(self, log_dir: str | Path, enabled: bool, purge_step: int | None = None) -> None:
        self._writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            say(
                "supcon train: tensorboard is not installed, logging to CSV only "
                "(pip install tensorboard, or set train.tensorboard=false to silence this)",
            )
            return
        self._writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def add(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        """Write ``prefix/name`` scalars at ``step``."""
        if self._writer is None:
            return
        for name, value in values.items():
            self._writer.add_scalar(f"{prefix}/{name}", float(value), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def git_sha(cwd: str | Path = ".") -> str | None:
    """Commit of the git checkout containing ``cwd`` (with ``-dirty`` if modified), or None."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict[str, Any]:
    """What produced a run: versions, git commit, command line."""
    return {
        "supcon_version": supcon.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_sha": git_sha(Path(__file__).resolve().parent) or git_sha(),
        "argv": sys.argv,
    }


TRAIN_COLUMNS = [
    "epoch",
    "step",
    "loss",
    "lr",
    "backbone_lr",
    "grad_norm",
    "images_per_s",
    "anchors_without_positives",
    "elapsed_s",
]


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


class RunLog:
    """The logs of a run directory: ``log.csv``, ``eval.csv``, ``diagnostics.csv``, TensorBoard,
    and experiment trackers (:mod:`supcon.training.trackers`: MLflow, W&B).

    Every method is a no-op when ``enabled`` is false (ranks other than 0).

    Args:
        run_dir: The run directory.
        enabled: Write at all.
        tensorboard: Also write TensorBoard scalars under ``run_dir/tensorboard``.
        resume_step: The step a resumed run continues from: rows logged after it by the
            interrupted run are dropped (0 for a new run, which clears stale logs).
        trackers: Experiment trackers that also receive every scalar (see
            :class:`supcon.training.trackers.Tracker`).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        enabled: bool,
        tensorboard: bool,
        resume_step: int = 0,
        trackers: Sequence[Any] = (),
    ) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.trackers = list(trackers) if enabled else []
        self._eval: CsvLog | None = None
        self._diagnostics: CsvLog | None = None
        self._train: CsvLog | None = None
        self.scalars = Scalars(self.run_dir / "tensorboard", enabled and tensorboard,
                               purge_step=resume_step + 1)  # fmt: skip
        if enabled:
            for name in ("log.csv", "eval.csv", "diagnostics.csv"):
                truncate_csv(self.run_dir / name, resume_step)
            self._train = CsvLog(self.run_dir / "log.csv", TRAIN_COLUMNS)

    def train(self, row: Mapping[str, Any]) -> None:
        """One training step (keys from ``TRAIN_COLUMNS``; ``epoch`` and ``step`` required)."""
        if self._train is not None:
            self._train.write({k: _fmt(v) for k, v in row.items()})
            numbers = {k: v for k, v in row.items() if k not in ("epoch", "step")}
            self.scalars.add("train", numbers, int(row["step"]))
            self._track("train", numbers, int(row["step"]))

    def evaluation(self, epoch: int, step: int, metrics: Mapping[str, float]) -> None:
        """One evaluation's metrics."""
        if self.enabled:
            if self._eval is None:
                self._eval = CsvLog(self.run_dir / "eval.csv", ["epoch", "step", *metrics])
            self._eval.write({"epoch": epoch, "step": step, **metrics})
            self.scalars.add("eval", metrics, step)
            self._track("eval", metrics, step)

    def diagnostics(self, epoch: int, step: int, values: Mapping[str, Any]) -> None:
        """One set of embedding diagnostics."""
        if self.enabled:
            if self._diagnostics is None:
                columns = ["epoch", "step", *values]
                self._diagnostics = CsvLog(self.run_dir / "diagnostics.csv", columns)
            self._diagnostics.write({"epoch": epoch, "step": step, **values})
            self.scalars.add("diagnostics", values, step)
            self._track("diagnostics", values, step)

    def _track(self, prefix: str, values: Mapping[str, Any], step: int) -> None:
        from supcon.training.trackers import scalars

        for tracker in self.trackers:
            tracker.log_metrics(prefix, scalars(values), step)

    def config(self, config: Mapping[str, Any]) -> None:
        """The resolved config, to the trackers (the run directory has ``config.yaml``)."""
        for tracker in self.trackers:
            tracker.log_config(config)

    def summary(self, metrics: Mapping[str, Any]) -> None:
        """The final metrics, to the trackers (the run directory has ``metrics.json``)."""
        from supcon.training.trackers import scalars

        for tracker in self.trackers:
            tracker.log_summary(scalars(metrics))

    def close(self) -> None:
        """Close every file and end every tracker run (idempotent)."""
        for handle in (self._train, self._eval, self._diagnostics, self.scalars, *self.trackers):
            if handle is not None:
                handle.close()
        self.trackers = []
