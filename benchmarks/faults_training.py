"""Fault injection for training: kills, non-finite steps, broken checkpoints, two writers.

Each ``check_*()`` returns rows ``{"fault", "injected", "handled", "lost", "detail"}``:
*injected* faults, how many were *handled* as documented, and how many *lost* work or gave a
wrong result. ``benchmarks/faults.py`` collects these functions (with those of the other
``faults_*`` modules) into one table; run alone, this module prints its own rows:

    nice -n 10 python benchmarks/faults_training.py [--kills 1] [--seed 0]

Every run trains ``test_resnet`` on the bundled digits (10 steps of 256 images), so nothing
is downloaded. A resumed run counts as handled only when its final weights, optimizer state,
per-step losses and metrics equal those of an uninterrupted run bit for bit.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import FaultRow, fault_row  # noqa: E402

RECIPE = str(ROOT / "recipes" / "digits.yaml")
STEPS = 10  # 2 epochs × 5 steps
SETTINGS = [
    "train.epochs=2",
    "train.batch_size=256",
    "train.threads=1",
    "train.tensorboard=false",
    "model.embedding_dim=16",
    "eval.ks=[1,2]",
]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "supcon", "train", *args, "--no-progress"]


def _logged_steps(run: Path) -> int:
    try:
        with (run / "log.csv").open() as handle:
            return len(list(csv.DictReader(handle)))
    except FileNotFoundError:
        return 0


def _same_run(run: Path, reference: Path) -> bool:
    """Bit-identical final checkpoint, per-step losses and metrics."""
    from supcon.training.checkpoint import load_checkpoint

    try:
        final, expected = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (run, reference))
        same = final["progress"] == expected["progress"] and all(
            torch.equal(final["model"][k], v) for k, v in expected["model"].items()
        )
        for key, slots in expected["optimizer"]["state"].items():
            same &= all(
                torch.equal(final["optimizer"]["state"][key][s], v) for s, v in slots.items()
            )
        losses = [
            [(r["step"], r["loss"]) for r in csv.DictReader((x / "log.csv").open())]
            for x in (run, reference)
        ]
        metrics = [(x / "metrics.json").read_text() for x in (run, reference)]
        return same and losses[0] == losses[1] and metrics[0] == metrics[1]
    except (OSError, KeyError, ValueError):
        return False


def _reference(work: Path) -> Path:
    """An uninterrupted run with ``checkpoint_every=1`` (written once per working folder)."""
    run = work / "reference"
    if not (run / "metrics.json").exists():
        subprocess.run(
            _cli(RECIPE, *SETTINGS, "train.checkpoint_every=1", "--out", str(run)),
            env=_env(),
            stdout=subprocess.DEVNULL,
            check=True,
        )
    return run


def _kill_and_resume(work: Path, name: str, signum: int, target: int) -> tuple[bool, str]:
    """Start a run, send ``signum`` once ``target`` steps are logged, resume; identical?"""
    run = work / name
    victim = subprocess.Popen(
        _cli(RECIPE, *SETTINGS, "train.checkpoint_every=1", "--out", str(run)),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 900
    while victim.poll() is None and _logged_steps(run) < target and time.monotonic() < deadline:
        time.sleep(0.02)
    if victim.poll() is not None:
        return False, f"ended before step {target}"
    victim.send_signal(signum)
    _, err = victim.communicate(timeout=900)
    expected_code = -signal.SIGKILL if signum == signal.SIGKILL else 128 + signum
    if victim.returncode != expected_code:
        return False, f"exit {victim.returncode}, expected {expected_code}: {err.strip()[-200:]}"
    from supcon.training.checkpoint import load_checkpoint

    at = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    resumed = subprocess.run(
        _cli("--resume", str(run)), env=_env(), capture_output=True, text=True, timeout=900
    )
    if resumed.returncode != 0:
        return False, f"resume failed: {resumed.stderr.strip()[-200:]}"
    return _same_run(run, _reference(work)), f"signal at step ≥{target}, checkpoint at {at}"


def check_kills(kills: int = 1, seed: int = 0, work: Path | None = None) -> list[FaultRow]:
    """SIGKILL and SIGTERM at seeded random steps, each followed by ``--resume``."""
    work = Path(work or tempfile.mkdtemp(prefix="faults_training_"))
    rng = random.Random(seed)
    rows = []
    for signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        name = signal.Signals(signum).name
        results = [
            _kill_and_resume(work, f"{name}-{i}", signum, rng.randint(1, STEPS - 1))
            for i in range(kills)
        ]
        ok = sum(same for same, _ in results)
        rows.append(
            fault_row(
                f"{name} during training, then --resume",
                kills,
                ok,
                kills - ok,
                "; ".join(d for _, d in results) + " — identical to an uninterrupted run"
                if ok == kills
                else "; ".join(d for _, d in results),
            )
        )
    return rows


def _digits_config(**train: Any):
    from supcon.config import config_from_dict

    raw = {
        "data": {"dataset": "digits", "image_size": 16},
        "model": {"embedding_dim": 16},
        "optim": {"warmup_epochs": 0},
        "train": {"epochs": 2, "batch_size": 256, "threads": 1, "tensorboard": False, **train},
        "eval": {"ks": [1, 2]},
    }
    return config_from_dict(raw)


def _with_loss(make: Callable[[], torch.nn.Module], run: Callable[[], Any]) -> Any:
    import supcon.training.loop as loop

    original = loop.build_loss
    loop.build_loss = lambda config, **_: make()
    try:
        return run()
    finally:
        loop.build_loss = original


def _finite_checkpoint(path: Path) -> bool:
    from supcon.training.checkpoint import load_checkpoint

    if not path.exists():
        return True  # nothing written: nothing wrong written
    saved = load_checkpoint(path)
    tensors = [v for v in saved["model"].values() if v.is_floating_point()]
    tensors += [
        v for s in saved["optimizer"]["state"].values() for v in s.values() if v.is_floating_point()
    ]
    return all(bool(t.isfinite().all()) for t in tensors)


def check_nonfinite(seed: int = 0, work: Path | None = None) -> list[FaultRow]:
    """NaN losses at random steps under ``stop`` and ``skip``, and a diverging learning rate."""
    from supcon import SupConLoss
    from supcon.training import TrainingError, train
    from supcon.training.checkpoint import load_checkpoint

    work = Path(work or tempfile.mkdtemp(prefix="faults_training_"))
    rng = random.Random(seed)

    class NanAt(SupConLoss):
        def __init__(self, steps: set[int]) -> None:
            super().__init__(0.1)
            self.calls, self.steps = 0, steps

        def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
            self.calls += 1
            loss = super().forward(*args, **kwargs)
            return loss * float("nan") if self.calls in self.steps else loss

    rows = []
    bad = set(rng.sample(range(1, STEPS + 1), 3))
    run = work / "skip"
    config = _digits_config(on_nonfinite="skip", checkpoint_every=1)
    _with_loss(lambda: NanAt(bad), lambda: train(config, run, progress=False))
    progress = load_checkpoint(run / "checkpoints" / "last.pt")["progress"]
    finite = _finite_checkpoint(run / "checkpoints" / "last.pt")
    rows.append(
        fault_row(
            "NaN loss, on_nonfinite=skip",
            len(bad),
            progress["skipped_steps"],
            int(not finite),
            f"steps {sorted(bad)} skipped, run finished with finite weights",
        )
    )
    step = rng.randint(2, STEPS)
    run = work / "stop"
    config = _digits_config(checkpoint_every=1)
    try:
        _with_loss(lambda: NanAt({step}), lambda: train(config, run, progress=False))
        stopped = False
    except TrainingError:
        stopped = True
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    ok = stopped and saved == step - 1 and _finite_checkpoint(run / "checkpoints" / "last.pt")
    rows.append(
        fault_row(
            "NaN loss, on_nonfinite=stop",
            1,
            int(ok),
            int(not ok),
            f"stopped at step {step}, last.pt = step {saved}",
        )
    )
    run = work / "diverge"
    from supcon.config import config_from_dict, config_to_dict

    raw = config_to_dict(_digits_config(checkpoint_every=1))
    raw["optim"]["lr"] = 30.0
    try:
        train(config_from_dict(raw), run, progress=False)
        caught = False
    except TrainingError:
        caught = True
    ok = caught and _finite_checkpoint(run / "checkpoints" / "last.pt")
    rows.append(
        fault_row(
            "diverging lr=30 (finite but huge weights)",
            1,
            int(ok),
            int(not ok),
            "stopped before the eval-mode embeddings turned NaN; last.pt finite",
        )
    )
    return rows


def check_truncated_checkpoint(seed: int = 0, work: Path | None = None) -> list[FaultRow]:
    """``last.pt`` cut at random lengths, emptied or overwritten: prev.pt is used, resume works."""
    from supcon.runs import load_run
    from supcon.training.checkpoint import load_checkpoint, load_checkpoint_or_previous

    work = Path(work or tempfile.mkdtemp(prefix="faults_training_"))
    reference = _reference(work)
    run = work / "truncated"
    shutil.copytree(reference, run)
    last = run / "checkpoints" / "last.pt"
    good = last.read_bytes()
    rng = random.Random(seed)
    damages = [good[: rng.randint(1, len(good) - 1)] for _ in range(4)]
    damages += [b"", b'{"not": "a checkpoint"}', bytes(rng.getrandbits(8) for _ in range(512))]
    handled = 0
    for damage in damages:
        last.write_bytes(damage)
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                _, used = load_checkpoint_or_previous(last)
                loaded = load_run(last).checkpoint
                handled += used.name == "prev.pt" and loaded.name == "prev.pt"
            except Exception:  # counted as not handled
                pass
    last.write_bytes(good[: len(good) // 2])
    (run / "metrics.json").unlink()
    resumed = subprocess.run(_cli("--resume", str(run)), env=_env(), capture_output=True, text=True)
    identical = resumed.returncode == 0 and _same_run(run, reference)
    kept = load_checkpoint(run / "checkpoints" / "prev.pt")["step"] == STEPS - 1
    return [
        fault_row(
            "truncated / corrupt last.pt → prev.pt",
            len(damages),
            handled,
            len(damages) - handled,
            "load_run and --resume fall back with a one-line notice",
        ),
        fault_row(
            "--resume from a truncated last.pt",
            1,
            int(identical and kept),
            int(not identical),
            "redoes the last step from prev.pt; identical to the "
            "uninterrupted run; the corrupt file is not rotated into prev.pt",
        ),
    ]


def check_two_writers(pairs: int = 2, work: Path | None = None) -> list[FaultRow]:
    """Two ``supcon train`` started together into one ``--out``: one runs, one is refused."""
    work = Path(work or tempfile.mkdtemp(prefix="faults_training_"))
    handled = 0
    details = []
    for i in range(pairs):
        out = work / f"shared-{i}"
        procs = [
            subprocess.Popen(
                _cli(RECIPE, *SETTINGS, "--out", str(out)),
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = [(p.wait(timeout=900), p.stderr.read()) for p in procs]
        codes = sorted(code for code, _ in results)
        refused = [err for code, err in results if code == 2]
        ok = (
            codes == [0, 2]
            and "is in use by process" in refused[0]
            and (out / "metrics.json").exists()
        )
        handled += ok
        details.append(f"exit codes {codes}")
    return [
        fault_row(
            "two writers into one run directory",
            pairs,
            handled,
            pairs - handled,
            "; ".join(details) + " (the second is refused by the lock)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=1, help="kills per signal")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="faults_training_"))
    rows = [
        *check_kills(args.kills, args.seed, work),
        *check_nonfinite(args.seed, work),
        *check_truncated_checkpoint(args.seed, work),
        *check_two_writers(2, work),
    ]
    print("| fault | injected | handled | lost | detail |\n|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['fault']} | {r['injected']} | {r['handled']} | {r['lost']} | {r['detail']} |")
    out = ROOT / "benchmarks" / "results" / "faults_training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
