"""The `supcon` command end to end."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from supcon import retrieval_metrics
from supcon.data import load_digits_splits
from supcon.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "recipes" / "digits.yaml")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "supcon", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_console_script_is_installed() -> None:
    assert shutil.which("supcon") is not None, "pip install -e . should install the supcon script"


def test_train_digits_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("train", DIGITS, "train.epochs=3", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "recall@1" in result.stdout and str(out) in result.stdout

    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "recall@1",
        "recall@2",
        "recall@4",
        "recall@8",
        "precision@1",
        "map@r",
        "r_precision",
    ):
        assert 0.0 <= metrics[key] <= 1.0
    # Random embeddings of the same held-out split as a floor.
    config = yaml.safe_load((out / "config.yaml").read_text())
    _, test = load_digits_splits(
        config["data"]["image_size"], config["data"]["test_fraction"], config["train"]["seed"]
    )
    rand = np.random.default_rng(0).normal(size=(len(test), 64)).astype(np.float32)
    random_recall = retrieval_metrics(rand, test.labels)["recall@1"]
    assert metrics["recall@1"] > random_recall + 0.4

    assert config["train"]["epochs"] == 3
    checkpoint = load_checkpoint(out / "checkpoints" / "last.pt")
    assert checkpoint["epoch"] == 3 and "model" in checkpoint
    with (out / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == checkpoint["step"] and float(rows[-1]["loss"]) > 0
    meta = json.loads((out / "meta.json").read_text())
    assert "git_sha" in meta and "torch_version" in meta


def test_refuses_to_overwrite_a_finished_run(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    result = run_cli("train", DIGITS, "--out", str(tmp_path))
    assert result.returncode == 2 and "already holds a finished run" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.yaml"], "not found"),
        ([DIGITS, "train.epochz=2"], "unknown key train.epochz; valid keys"),
        ([DIGITS, "loss.temperature=warm"], "loss.temperature must be float"),
        ([DIGITS, "train.batch_size=100000"], "larger than the training split"),
        ([DIGITS, "model.backbone=resnet_18"], "Did you mean"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("train", *args, "--out", str(tmp_path / "r"), "--no-progress")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and "Traceback" not in result.stderr


def test_malformed_yaml_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: [1,\n")
    result = run_cli("train", str(bad))
    assert result.returncode == 2 and "not valid YAML" in result.stderr


def test_overrides_may_follow_options() -> None:
    from supcon.cli import build_parser, parse_arguments

    args = parse_arguments(
        build_parser(),
        ["train", "r.yaml", "data.views=1", "--out", "D", "train.epochs=2", "--no-progress",
         "loss.temperature=0.2"],
    )  # fmt: skip
    assert (args.recipe, args.out, args.no_progress) == ("r.yaml", "D", True)
    assert args.overrides == ["data.views=1", "train.epochs=2", "loss.temperature=0.2"]
    args = parse_arguments(build_parser(), ["check-data", "r.yaml", "--workers", "1", "a.b=3"])
    assert args.overrides == ["a.b=3"]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "r.yaml", "--out", "D", "stray"],  # not key=value
        ["train", "r.yaml", "--out", "D", "--nope=1"],  # an unknown option
        ["eval", "RUN", "train.epochs=2"],  # eval takes no overrides
    ],
)
def test_leftover_words_are_still_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from supcon.cli import build_parser, parse_arguments

    with pytest.raises(SystemExit) as exit_info:
        parse_arguments(build_parser(), argv)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
