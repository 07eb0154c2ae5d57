"""``supcon check-data RECIPE [section.key=value …] [--workers N]``: open every image once."""

from __future__ import annotations

import argparse
import time

EXIT_BAD_DATA = 1


def run(args: argparse.Namespace) -> int:
    """Check every image of the recipe's data; exit 1 when some cannot be used."""
    from supcon.config import load_config
    from supcon.data import load_splits
    from supcon.data.sources import FileSplit
    from supcon.data.verify import check_images, summarize
    from supcon.reporting import escape, format_table

    config = load_config(args.recipe, list(args.overrides))
    if config.data.dataset == "digits":
        print("data.dataset=digits: the bundled digits are arrays, not files; nothing to check")
        return 0
    started = time.perf_counter()
    train, held_out = load_splits(config.data, config.train.seed)
    if not isinstance(train, FileSplit) or not isinstance(held_out, FileSplit):  # CIFAR arrays
        print(
            f"data.dataset={config.data.dataset}: {len(train)} training and {len(held_out)} "
            "held-out images read as arrays; no image files to check"
        )
        return 0
    paths = list(dict.fromkeys([*train.paths, *held_out.paths]))
    bad = check_images(
        paths, config.data.max_image_pixels, workers=args.workers, progress=not args.no_progress
    )
    if bad:
        print(
            format_table([(b.path, b.kind, b.detail) for b in bad], ["path", "problem", "detail"])
        )
    source = config.data.manifest if config.data.dataset == "csv" else config.data.root
    print(
        f"{len(paths)} images checked ({len(train)} training, {len(held_out)} held-out) from "
        f"{escape(source)}: {summarize(bad)}  ({time.perf_counter() - started:.1f} s)"
    )
    if not bad:
        return 0
    print(
        "fix or remove them, or set data.on_bad_image=skip to train without them (the run "
        "lists them in skipped.csv)"
    )
    return EXIT_BAD_DATA


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``check-data`` to the CLI."""
    parser = subparsers.add_parser(
        "check-data",
        help="open every image of a recipe's data once and list the bad ones",
        description="Open and fully decode every image of the recipe's data (both splits), in "
        "parallel, and list the files that cannot be used: zero-byte, not an image, truncated "
        "or corrupt, over data.max_image_pixels, unreadable. Hidden and macOS ._* files are "
        "not data. Exit code 0 when all load, 1 when some do not, 2 for a bad recipe or "
        "manifest. Training runs the same check first with data.verify=true or "
        "data.on_bad_image=skip.",
    )
    parser.add_argument("recipe", help="YAML recipe, e.g. recipes/folder.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="override recipe values, e.g. data.root=/data/images",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="threads (default: the CPU cores available)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
