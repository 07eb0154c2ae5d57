"""``supcon train RECIPE [section.key=value ...] [--out DIR]``."""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

from supcon.errors import UserError


def _default_run_dir(recipe: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(recipe).stem}-{stamp}"


def run(args: argparse.Namespace) -> int:
    """Train from a recipe, print the held-out metrics table."""
    from supcon.config import load_config
    from supcon.reporting import metrics_table
    from supcon.training import train

    config = load_config(args.recipe, args.overrides)
    run_dir = Path(args.out) if args.out else _default_run_dir(args.recipe)
    if (run_dir / "metrics.json").exists():
        raise UserError(
            f"run directory {str(run_dir)!r} already holds a finished run; pass another --out"
        )
    started = time.perf_counter()
    metrics = train(config, run_dir, progress=not args.no_progress)
    elapsed = time.perf_counter() - started
    if metrics:
        print(metrics_table(metrics))
    else:
        print("the held-out split has no labels, so no retrieval metrics were computed")
    print(f"run directory: {run_dir}  ({elapsed:.1f} s)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the CLI."""
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train from a YAML recipe, then evaluate retrieval on the held-out split.",
    )
    parser.add_argument("recipe", help="YAML recipe, e.g. recipes/digits.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="override recipe values, e.g. train.epochs=2 loss.temperature=0.2",
    )
    parser.add_argument("--out", help="run directory (default: runs/<recipe>-<time>)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)
