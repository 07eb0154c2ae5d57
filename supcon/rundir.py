"""The paths of a run directory, spelled once.

``supcon train`` writes a run directory; ``--resume``, ``eval``, ``embed``, ``export`` and the
Python API read it. Every one of them goes through :class:`RunDir` (or the file names below), so
a file is renamed in one place::

    RUN/
      config.yaml  meta.json  classes.json  augment.txt  metrics.json  skipped.csv
      log.csv  eval.csv  diagnostics.csv  tensorboard/  .lock
      checkpoints/last.pt  checkpoints/prev.pt  checkpoints/best.pt

This module imports nothing heavy: the CLI uses it before any model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.yaml"  # the resolved config
META = "meta.json"  # provenance: versions, git SHA, world size
CLASSES = "classes.json"  # class names by id
AUGMENT = "augment.txt"  # the resolved augmentation pipelines
METRICS = "metrics.json"  # final held-out metrics: present once the run has finished
SKIPPED = "skipped.csv"  # images skipped by data.on_bad_image=skip
TRAIN_LOG = "log.csv"
EVAL_LOG = "eval.csv"
DIAGNOSTICS_LOG = "diagnostics.csv"
TENSORBOARD = "tensorboard"
LOCK = ".lock"  # held while a process writes the run
CHECKPOINTS = "checkpoints"
LAST = "last.pt"  # written every epoch (and on checkpoint_every / a stop signal)
PREVIOUS = "prev.pt"  # the last.pt before the latest one (see training.checkpoint.save_rotating)
BEST = "best.pt"  # the best evaluation so far (train.eval_every)

#: The CSV logs, in the order ``RunLog`` opens them.
LOGS = (TRAIN_LOG, EVAL_LOG, DIAGNOSTICS_LOG)
#: Checkpoints a reader picks from a run directory, best first.
CHECKPOINT_NAMES = (BEST, LAST)
#: What a reader falls back to, in order, when a checkpoint cannot be loaded.
FALLBACK_NAMES = (BEST, LAST, PREVIOUS)
#: Entries that mark a folder as a supcon run directory (``.lock`` alone: a run just started).
MARKERS = (CONFIG, CHECKPOINTS, META, METRICS, TRAIN_LOG, LOCK)
#: Files beside the checkpoints that a reader of a run uses.
RUN_FILES = (CONFIG, META, CLASSES)


@dataclass(frozen=True)
class RunDir:
    """Every path of one run directory.

    Args:
        root: The run directory (need not exist).
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of_checkpoint(cls, path: str | Path) -> RunDir | None:
        """The run a checkpoint file belongs to (``RUN/checkpoints/X.pt``), else ``None``."""
        path = Path(path)
        return cls(path.parent.parent) if path.parent.name == CHECKPOINTS else None

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def meta(self) -> Path:
        return self.root / META

    @property
    def classes(self) -> Path:
        return self.root / CLASSES

    @property
    def augment(self) -> Path:
        return self.root / AUGMENT

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def skipped(self) -> Path:
        return self.root / SKIPPED

    @property
    def train_log(self) -> Path:
        return self.root / TRAIN_LOG

    @property
    def eval_log(self) -> Path:
        return self.root / EVAL_LOG

    @property
    def diagnostics_log(self) -> Path:
        return self.root / DIAGNOSTICS_LOG

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    def checkpoint(self, name: str) -> Path:
        """``checkpoints/<name>`` (``name``: :data:`LAST`, :data:`PREVIOUS`, :data:`BEST`)."""
        return self.checkpoints / name

    @property
    def last(self) -> Path:
        return self.checkpoint(LAST)

    @property
    def previous(self) -> Path:
        return self.checkpoint(PREVIOUS)

    @property
    def best(self) -> Path:
        return self.checkpoint(BEST)

    def is_finished(self) -> bool:
        """Whether the run wrote its final metrics."""
        return self.metrics.is_file()

    def has_checkpoint(self) -> bool:
        """Whether there is something to resume (``last.pt`` or its predecessor)."""
        return self.last.is_file() or self.previous.is_file()
