"""Experiment trackers behind :class:`~supcon.training.logging.RunLog`: MLflow and Weights & Biases.

``log.csv`` (always) and TensorBoard are written by ``RunLog`` itself; ``train.loggers`` adds:

* ``mlflow``: a run in an MLflow tracking store, by default the local file store
  ``RUN/mlruns`` (``train.mlflow_uri`` for another URI). Needs ``pip install 'supcon[mlflow]'``.
* ``wandb``: a Weights & Biases run in ``RUN/wandb``, offline unless ``WANDB_MODE`` says
  otherwise (``wandb sync RUN/wandb/offline-run-*`` uploads it later). Needs
  ``pip install 'supcon[wandb]'``.

Each tracker gets the resolved config once, every logged scalar as ``prefix/name`` at its step
(``train/loss``, ``eval/recall@1``, ``diagnostics/alignment`` …) and the final metrics.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from supcon.errors import ConfigError

LOGGERS = ("csv", "tensorboard", "mlflow", "wandb")


class Tracker(Protocol):
    """What :class:`~supcon.training.logging.RunLog` calls on an experiment tracker."""

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The resolved config (nested dict), once at the start."""

    def log_metrics(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        """Scalars ``prefix/name`` at ``step``."""

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        """The final evaluation."""

    def close(self) -> None:
        """Flush and end the run (idempotent)."""


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"epochs": 3}} → {"train.epochs": "3"}`` (lists and None as text)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


def scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of ``values`` as floats (bools and text are dropped)."""
    out = {}
    for key, value in values.items():
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if real and math.isfinite(float(value)):
            out[key] = float(value)
    return out


class MlflowTracker:
    """An MLflow run (client API: no global active run is touched).

    Args:
        run_dir: The supcon run directory; the run is named after it.
        uri: Tracking URI (default: the local file store ``run_dir/mlruns``).
        experiment: Experiment name (created when missing).
    """

    def __init__(self, run_dir: Path, uri: str | None = None, experiment: str = "supcon") -> None:
        from mlflow.tracking import MlflowClient

        if uri is None:
            # MLflow ≥ 3 keeps its file store in "maintenance mode" behind this opt-in; a local
            # store inside the run directory is what supcon wants (train.mlflow_uri for others).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.uri = uri or (Path(run_dir).resolve() / "mlruns").as_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=Path(run_dir).name).info.run_id
        self._open = True

    @staticmethod
    def _key(name: str) -> str:
        # MLflow keys allow letters, digits, _ - . / and spaces: "recall@1" → "recall_at_1".
        return re.sub(r"[^\w\-./ ]", "_", name.replace("@", "_at_"))

    def log_config(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(self._key(k), v[:500]) for k, v in flatten(config).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log_metrics(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(self._key(f"{prefix}/{k}"), v, now, step) for k, v in scalars(values).items()
        ]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        self.log_metrics("final", metrics, 0)

    def close(self) -> None:
        if self._open:
            self.client.set_terminated(self.run_id)
            self._open = False


class WandbTracker:
    """A Weights & Biases run stored in ``run_dir/wandb``; offline unless ``WANDB_MODE`` is set.

    Args:
        run_dir: The supcon run directory; the run is named after it.
        project: W&B project.
    """

    def __init__(self, run_dir: Path, project: str = "supcon") -> None:
        import wandb

        mode = os.environ.get("WANDB_MODE", "offline")
        self.run = wandb.init(
            project=project,
            name=Path(run_dir).name,
            dir=str(Path(run_dir).resolve()),
            mode=mode,
            reinit="create_new",
        )

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.run.config.update(dict(config), allow_val_change=True)

    def log_metrics(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        named = {f"{prefix}/{k}": v for k, v in scalars(values).items()}
        if named:
            self.run.log(named, step=step)

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        self.run.summary.update({f"final/{k}": v for k, v in scalars(metrics).items()})

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def check_available(loggers: tuple[str, ...]) -> None:
    """Raise ``ValueError`` for an unknown logger or a tracker whose package is missing, saying
    what to install (called before a run directory is written)."""
    unknown = [name for name in loggers if name not in LOGGERS]
    if unknown:
        raise ConfigError(f"train.loggers: unknown {unknown}; choose from {', '.join(LOGGERS)}")
    for name in ("mlflow", "wandb"):
        if name in loggers and importlib.util.find_spec(name) is None:
            raise ConfigError(
                f"train.loggers includes {name} but {name} is not installed: pip install "
                f"'supcon[{name}]', or remove {name} from train.loggers"
            )


def build_trackers(
    loggers: tuple[str, ...],
    run_dir: str | Path,
    *,
    mlflow_uri: str | None = None,
    wandb_project: str = "supcon",
) -> list[Tracker]:
    """The trackers named in ``train.loggers`` (``csv`` and ``tensorboard`` are RunLog's own).

    Raises:
        ValueError: see :func:`check_available`.
    """
    check_available(loggers)
    trackers: list[Tracker] = []
    if "mlflow" in loggers:
        trackers.append(MlflowTracker(Path(run_dir), mlflow_uri))
    if "wandb" in loggers:
        trackers.append(WandbTracker(Path(run_dir), wandb_project))
    return trackers
