"""A run killed with SIGKILL, then resumed with ``--resume``, ends like an uninterrupted one."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from supcon.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "recipes" / "digits.yaml")
# 10 steps per epoch; the SIGKILL lands in epoch 2, after a mid-epoch checkpoint.
SETTINGS = ["train.epochs=3", "train.batch_size=128", "train.threads=1", "eval.ks=[1,2]"]


def supcon(*args: str) -> list[str]:
    return [sys.executable, "-m", "supcon", "train", *args, "--no-progress"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def losses(run: Path) -> list[tuple[str, str]]:
    with (run / "log.csv").open() as handle:
        return [(row["step"], row["loss"]) for row in csv.DictReader(handle)]


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = subprocess.Popen(
        supcon(DIGITS, *SETTINGS, "--out", str(straight)), env=env(), stdout=subprocess.DEVNULL
    )
    victim = subprocess.Popen(
        supcon(DIGITS, *SETTINGS, "train.checkpoint_every=3", "--out", str(killed)),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    last = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if last.exists():
            progress = load_checkpoint(last)["progress"]
            if progress["epoch"] == 1 and progress["batch"] > 0:
                break
        time.sleep(0.05)
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (killed / "metrics.json").exists()
    interrupted_at = load_checkpoint(last)["progress"]
    assert interrupted_at["epoch"] == 1 and 0 < interrupted_at["batch"] < 10

    resumed = subprocess.run(
        supcon("--resume", str(killed)), env=env(), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert reference.wait(timeout=600) == 0

    metrics = json.loads((killed / "metrics.json").read_text())
    assert metrics == json.loads((straight / "metrics.json").read_text())
    assert losses(killed) == losses(straight)  # every step logged once, same values
    final, expected = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (killed, straight))
    assert final["progress"] == expected["progress"]
    for name, tensor in expected["model"].items():
        assert torch.equal(final["model"][name], tensor), name
    moments = final["optimizer"]["state"], expected["optimizer"]["state"]
    assert moments[0].keys() == moments[1].keys()
    for key, state in moments[1].items():
        assert all(torch.equal(moments[0][key][k], value) for k, value in state.items())
