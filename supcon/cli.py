"""The ``supcon`` command line.

User mistakes (missing file, bad YAML, unknown key, wrong type, impossible setting) print one
line that says what is wrong and how to fix it, and exit with code 2: never a traceback
(set ``SUPCON_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

EXIT_USAGE = 2


class UserError(Exception):
    """An error in the user's input; printed as one line, exit code 2."""


def _default_run_dir(recipe: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(recipe).stem}-{stamp}"


def cmd_train(args: argparse.Namespace) -> int:
    """``supcon train RECIPE [section.key=value ...] [--out DIR]``."""
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
    print(metrics_table(metrics))
    print(f"run directory: {run_dir}  ({elapsed:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="supcon",
        description="Supervised contrastive metric learning: train, evaluate, search.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train from a YAML recipe, then evaluate retrieval on the held-out split.",
    )
    train.add_argument("recipe", help="YAML recipe, e.g. recipes/digits.yaml")
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="override recipe values, e.g. train.epochs=2 loss.temperature=0.2",
    )
    train.add_argument("--out", help="run directory (default: runs/<recipe>-<time>)")
    train.add_argument("--no-progress", action="store_true", help="hide progress bars")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``supcon`` console script."""
    from supcon.config import ConfigError
    from supcon.training import TrainingError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ConfigError, TrainingError, FileNotFoundError, ValueError) as exc:
        if os.environ.get("SUPCON_DEBUG"):
            raise
        print(f"supcon {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"supcon {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
