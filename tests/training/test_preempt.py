"""SIGTERM / SIGINT finish the step, write last.pt, exit 143 / 130; --resume is bit-identical."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import supcon.training.setup as run_setup
from supcon import SupConLoss
from supcon.training import train
from supcon.training.checkpoint import load_checkpoint
from supcon.training.preempt import Preempted, StopSignals
from tests.training.helpers import rows, tiny

ROOT = Path(__file__).resolve().parents[2]


class SignalAtCall(SupConLoss):
    """SupCon that sends ``signum`` to this process while computing call ``call`` (1-based)."""

    def __init__(self, call: int | None, signum: int) -> None:
        super().__init__(0.1)
        self.calls, self.call, self.signum = 0, call, signum

    def forward(self, *args, **kwargs) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.call:
            os.kill(os.getpid(), self.signum)  # arrives mid-step, like a scheduler's SIGTERM
        return super().forward(*args, **kwargs)


def assert_same_run(run: Path, reference: Path) -> None:
    final, expected = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (run, reference))
    assert final["progress"] == expected["progress"]
    for name, tensor in expected["model"].items():
        assert torch.equal(final["model"][name], tensor), name
    for key, slots in expected["optimizer"]["state"].items():
        for slot, value in slots.items():
            assert torch.equal(final["optimizer"]["state"][key][slot], value), slot
    losses = lambda r: [(x["step"], x["loss"]) for x in rows(r / "log.csv")]  # noqa: E731
    assert losses(run) == losses(reference)  # every step logged once, same values
    assert (run / "metrics.json").read_text() == (reference / "metrics.json").read_text()


def test_signals_at_random_steps_then_resume_match_an_uninterrupted_run(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny(images, train={"epochs": 3})  # 3 steps per epoch, 9 in all
    monkeypatch.setattr(run_setup, "build_loss", lambda config, **_: SignalAtCall(None, 0))
    train(config, tmp_path / "straight", progress=False)

    run, done = tmp_path / "run", 0
    stops = sorted(random.Random(12).sample(range(1, 9), 2))  # steps 1..8 (seeded)
    for stop_at, signum in zip(stops, (signal.SIGTERM, signal.SIGINT), strict=True):
        monkeypatch.setattr(
            run_setup,
            "build_loss",
            lambda config, c=stop_at - done, s=signum, **_: SignalAtCall(c, s),
        )
        with pytest.raises(Preempted) as caught:
            train(config, run, progress=False, resume=done > 0)
        assert caught.value.exit_code == 128 + signum
        assert f"after step {stop_at}" in str(caught.value)
        assert f"supcon train --resume {run}" in str(caught.value)
        assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == stop_at
        assert not (run / ".lock").exists() and not (run / "metrics.json").exists()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back
        done = stop_at
    monkeypatch.setattr(run_setup, "build_loss", lambda config, **_: SignalAtCall(None, 0))
    train(config, run, progress=False, resume=True)
    assert_same_run(run, tmp_path / "straight")


def test_second_signal_acts_as_usual() -> None:
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == signal.SIGINT and stop.name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


DIGITS = str(ROOT / "recipes" / "digits.yaml")
SETTINGS = ["train.epochs=2", "train.batch_size=256", "train.threads=1", "eval.ks=[1,2]"]
SETTINGS += ["train.tensorboard=false"]


def supcon(*args: str) -> list[str]:
    return [sys.executable, "-m", "supcon", "train", *args, "--no-progress"]


def logged_steps(run: Path) -> int:
    try:
        with (run / "log.csv").open() as handle:
            return len(list(csv.DictReader(handle)))
    except FileNotFoundError:
        return 0


@pytest.mark.slow  # two digits runs in subprocesses: ~20 s idle, minutes on a busy machine
def test_sigterm_from_outside_exits_143_and_resumes_identically(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    straight, victim_dir = tmp_path / "straight", tmp_path / "victim"
    reference = subprocess.Popen(
        supcon(DIGITS, *SETTINGS, "--out", str(straight)), env=env, stdout=subprocess.DEVNULL
    )
    victim = subprocess.Popen(
        supcon(DIGITS, *SETTINGS, "--out", str(victim_dir)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    target = random.Random(3).randint(2, 8)  # of 10 steps (5 per epoch)
    deadline = time.monotonic() + 300
    while victim.poll() is None and logged_steps(victim_dir) < target:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=300)
    assert victim.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"supcon train --resume {victim_dir}" in lines[0], err
    step = load_checkpoint(victim_dir / "checkpoints" / "last.pt")["step"]
    assert target <= step < 10 and f"after step {step}" in lines[0]

    resumed = subprocess.run(
        supcon("--resume", str(victim_dir)), env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert reference.wait(timeout=600) == 0
    assert_same_run(victim_dir, straight)
