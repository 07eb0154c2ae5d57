"""Compare losses on the digits recipe: SupCon, its memory, PML pair and proxy losses.

    python benchmarks/bench_losses.py [section.key=value ...]

Runs ``supcon train recipes/digits.yaml`` once per loss (same backbone, epochs, batch, sampler
and optimizer; only the ``loss:`` / ``miner:`` keys and the proxies' ``optim.loss_lr`` change)
as subprocesses, and reports held-out recall@1, MAP@R and wall time (start-up, training and
evaluation). Prints a markdown table and writes JSON to
``benchmarks/results/bench_losses.json``. Extra overrides apply to every run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import timed_train  # noqa: E402

from supcon.io import atomic_write_json  # noqa: E402

RECIPE = str(ROOT / "recipes" / "digits.yaml")

VARIANTS: dict[str, list[str]] = {
    "supcon": [],
    "supcon + memory 1024": ["loss.memory_size=1024"],
    "arcface": ["loss.name=arcface", "loss.args={margin: 28.6, scale: 64}"],
    "arcface, loss_lr = lr": [
        "loss.name=arcface",
        "loss.args={margin: 28.6, scale: 64}",
        "optim.loss_lr=0.003",
    ],
    "proxy_anchor": ["loss.name=proxy_anchor"],
    "multi_similarity + miner": ["loss.name=multi_similarity", "miner.name=multi_similarity"],
    "triplet_margin + semihard miner": [
        "loss.name=triplet_margin",
        "loss.args={margin: 0.1}",
        "miner.name=triplet_margin",
        "miner.args={margin: 0.1, type_of_triplets: semihard}",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="section.key=value for every run")
    args = parser.parse_args()
    results = []
    print("| loss | recall@1 | MAP@R | wall s | overrides |")
    print("|---|---:|---:|---:|---|")
    for name, overrides in VARIANTS.items():
        wall, metrics = timed_train(
            [sys.executable, "-m", "supcon", "train", RECIPE, *overrides, *args.overrides]
        )
        results.append({"loss": name, "overrides": overrides, "wall_s": wall, **metrics})
        shown = " ".join(f"`{o}`" for o in overrides) or "(recipe)"
        print(
            f"| {name} | {metrics['recall@1']:.3f} | {metrics['map@r']:.3f} | {wall:.0f} | "
            f"{shown} |",
            flush=True,
        )
    atomic_write_json(
        ROOT / "benchmarks" / "results" / "bench_losses.json",
        {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.platform(),
            "cpu_count": os.cpu_count(),
            "common_overrides": args.overrides,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
