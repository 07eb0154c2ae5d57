"""Experiment trackers behind RunLog: the interface (always), MLflow and W&B offline (when
installed: the ``mlflow`` / ``wandb`` extras, not in ``dev``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from supcon.config import ConfigError, config_from_dict
from supcon.training import train
from supcon.training.logging import RunLog
from supcon.training.trackers import build_trackers
from tests.training.helpers import tiny


class Recorder:
    """A tracker that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def log_config(self, config):
        self.calls.append(("config", dict(config)))

    def log_metrics(self, prefix, values, step):
        self.calls.append((prefix, (dict(values), step)))

    def log_summary(self, metrics):
        self.calls.append(("summary", dict(metrics)))

    def close(self):
        self.calls.append(("close", None))


def test_runlog_forwards_numeric_scalars_config_and_summary(tmp_path: Path) -> None:
    recorder = Recorder()
    log = RunLog(tmp_path, enabled=True, tensorboard=False, trackers=[recorder])
    log.config({"train": {"epochs": 2}})
    log.train({"epoch": 0, "step": 3, "loss": 1.5, "lr": 0.1})
    log.evaluation(0, 3, {"recall@1": 0.75})
    log.diagnostics(0, 3, {"alignment": np.float32(0.5), "collapsed": "no", "nan": float("nan")})
    log.summary({"recall@1": 0.8, "num_queries": 12})
    log.close()
    log.close()
    assert recorder.calls == [
        ("config", {"train": {"epochs": 2}}),
        ("train", ({"loss": 1.5, "lr": 0.1}, 3)),
        ("eval", ({"recall@1": 0.75}, 3)),
        ("diagnostics", ({"alignment": 0.5}, 3)),
        ("summary", {"recall@1": 0.8, "num_queries": 12.0}),
        ("close", None),
    ]


def test_disabled_runlog_never_calls_trackers(tmp_path: Path) -> None:
    recorder = Recorder()
    log = RunLog(tmp_path, enabled=False, tensorboard=False, trackers=[recorder])
    log.train({"epoch": 0, "step": 1, "loss": 1.0})
    log.summary({"recall@1": 1.0})
    log.close()
    assert recorder.calls == []


def test_unknown_or_missing_tracker_is_refused(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="train.loggers: unknown neptune"):
        config_from_dict({"train": {"loggers": ["csv", "neptune"]}})
    real = importlib.util.find_spec
    monkeypatch.setattr(  # as if mlflow were not installed
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(ValueError, match=r"pip install 'supcon\[mlflow\]'"):
        build_trackers(("csv", "mlflow"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_mlflow_file_store_gets_config_metrics_and_final_metrics(images: Path, tmp_path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    metrics = train(tiny(images, train={"loggers": ["csv", "mlflow"]}), run, progress=False)
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("supcon").experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == "run"
    assert found.data.params["train.epochs"] == "2"
    steps = [m.step for m in client.get_metric_history(found.info.run_id, "train/loss")]
    logged = [int(row) for row in _column(run / "log.csv", "step")]
    assert steps == logged
    assert found.data.metrics["final/recall_at_1"] == pytest.approx(metrics["recall@1"])


def test_wandb_offline_run_inside_the_run_directory(
    images: Path, tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("wandb")
    from supcon.training import trackers

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    seen: dict[str, Any] = {}
    finish = trackers.WandbTracker.close

    def close(self) -> None:  # read wandb's own summary just before the run ends
        if self.run is not None:
            seen.update(dict(self.run.summary))
        finish(self)

    monkeypatch.setattr(trackers.WandbTracker, "close", close)
    run = tmp_path / "run"
    metrics = train(tiny(images, train={"loggers": ["wandb"], "epochs": 1}), run, progress=False)
    assert seen["final/recall@1"] == pytest.approx(metrics["recall@1"])
    # wandb holds a step's row until the next step arrives: the summary has the one before last
    losses = [float(v) for v in _column(run / "log.csv", "loss")]
    assert seen["train/loss"] == pytest.approx(losses[-2], rel=1e-5)  # CSV keeps 6 digits
    (record,) = (run / "wandb").glob("offline-run-*/run-*.wandb")  # written inside the run
    assert b"final/recall@1" in record.read_bytes() and b"eval/recall@1" in record.read_bytes()


def _column(path: Path, name: str) -> list[str]:
    import csv

    with path.open() as handle:
        return [row[name] for row in csv.DictReader(handle)]
