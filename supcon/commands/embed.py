"""``supcon embed RUN_OR_CKPT --out EMB.npy|EMB.safetensors [--data DIR_OR_CSV] [--split …]``."""

from __future__ import annotations

import argparse
import time

from supcon.commands._evaldata import (
    add_data_arguments,
    embed_items,
    load_items,
    load_model,
)
from supcon.outputs import add_force_argument


def run(args: argparse.Namespace) -> int:
    """Embed images with a trained model and write embeddings, labels, ids and paths."""
    from supcon.evaluation.embed import save_embeddings
    from supcon.outputs import check_embedding_outputs, run_inputs
    from supcon.reporting import format_table

    check_embedding_outputs(args.out, force=args.force, inputs=[*run_inputs(args.run), args.data])
    from supcon.devices import resolve_device

    device = resolve_device(args.device, option="--device")
    started = time.perf_counter()
    loaded = load_model(args.run, device=device)
    items, description = load_items(loaded, args.data, args.split)
    data = embed_items(loaded, items, args, device)
    path = save_embeddings(args.out, data)
    rows = [
        ("items", len(data.labels)),
        ("dimension", data.dim),
        ("labelled", "yes" if (data.labels >= 0).all() else "no"),
        ("data", description),
        ("model fingerprint", data.model["fingerprint"]),
        ("written", f"{path} (+ {path.name}.json)"),
    ]
    print(format_table(rows, ["", "value"]))
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``embed`` to the CLI."""
    parser = subparsers.add_parser(
        "embed",
        help="write embeddings of images",
        description="Embed images with a trained model's eval transform and write embeddings "
        "(.npy, with .labels.npy and .ids.npy beside it, or one .safetensors) and a .json "
        "with the model, class names and image paths.",
    )
    parser.add_argument(
        "run",
        metavar="RUN_OR_CKPT",
        help="run directory, checkpoint file, or a model written by supcon export (.onnx/.pt)",
    )
    parser.add_argument(
        "--out", required=True, metavar="EMB", help="output file: NAME.npy or NAME.safetensors"
    )
    add_data_arguments(parser, default_split="all")
    add_force_argument(parser)
    parser.set_defaults(func=run)
