"""Wall time of the digits recipe: one process, and 2 CPU processes under torchrun.

    python benchmarks/bench_digits.py [--repeats 1] [section.key=value ...]

Runs ``supcon train recipes/digits.yaml`` (one process, the recipe's ``train.threads``) and
``torchrun --standalone --nproc_per_node=2 -m supcon train recipes/digits.yaml
train.threads=1 train.device=cpu`` (one thread per process) end to end as subprocesses, and
reports wall time (start-up, training and evaluation included) with held-out recall@1. Prints a
markdown table and writes JSON to ``benchmarks/results/bench_digits.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import timed_train  # noqa: E402

from supcon.io import atomic_write_json  # noqa: E402

RECIPE = str(ROOT / "recipes" / "digits.yaml")


def variants(overrides: list[str]) -> dict[str, list[str]]:
    train = ["-m", "supcon", "train", RECIPE, *overrides]
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return {
        "1 process": [sys.executable, *train],
        "torchrun, 2 processes × 1 thread": [
            sys.executable,
            *torchrun,
            *train,
            "train.threads=1",
            "train.device=cpu",
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bench_digits.json")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. train.epochs=5")
    args = parser.parse_args(argv)

    results = []
    for name, command in variants(args.overrides).items():
        walls, metrics = [], {}
        for _ in range(args.repeats):
            wall, metrics = timed_train(command)
            walls.append(wall)
        results.append(
            {
                "variant": name,
                "command": " ".join(Path(c).name if c == sys.executable else c for c in command),
                "wall_s": statistics.median(walls),
                "walls_s": walls,
                "recall@1": metrics.get("recall@1"),
                "map@r": metrics.get("map@r"),
            }
        )
    python = platform.python_version()
    print(f"CPU: {os.cpu_count()} cores ({platform.machine()}), python {python}\n")
    print("| variant | wall time | recall@1 | mAP@R |")
    print("|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['variant']} | {r['wall_s']:.1f} s | {r['recall@1']:.3f} | {r['map@r']:.3f} |")
    atomic_write_json(
        args.out,
        {
            "benchmark": "bench_digits",
            "cpu_count": os.cpu_count(),
            "argv": sys.argv,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "results": results,
        },
    )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
