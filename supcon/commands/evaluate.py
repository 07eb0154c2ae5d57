"""``supcon eval RUN_OR_CKPT [--data DIR_OR_CSV] [--split heldout|all] [--ks …] [--json OUT]
[--plots DIR]``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from supcon.commands._evaldata import add_data_arguments, embed_items, load_items, resolve_device
from supcon.errors import UserError
from supcon.outputs import add_force_argument

GRID_QUERIES = 8
GRID_NEIGHBOURS = 8
PLOT_NAMES = ("recall_at_k.png", "retrieval_grid.png")


def _curve_ks(longest: int) -> list[int]:
    ks, k = [], 1
    while k <= min(longest, 64):
        ks.append(k)
        k *= 2
    return ks


def _class_name(names: tuple[str, ...], label: Any) -> str:
    return names[label] if isinstance(label, int) and 0 <= label < len(names) else str(label)


def _grid(data: Any, items: Any, path: Path) -> None:
    """Top-k of a few evenly spaced queries, excluding the query itself."""
    from supcon.evaluation.index import build_index
    from supcon.evaluation.plots import retrieval_grid

    n = len(data.labels)
    is_query = data.is_query if data.is_query is not None else np.ones(n, bool)
    is_gallery = data.is_gallery if data.is_gallery is not None else np.ones(n, bool)
    gallery = np.flatnonzero(is_gallery)
    queries = np.flatnonzero(is_query)
    queries = queries[np.linspace(0, len(queries) - 1, min(GRID_QUERIES, len(queries))).astype(int)]
    k = min(GRID_NEIGHBOURS, len(gallery) - 1)
    if k < 1:
        return
    index = build_index(data.embeddings[gallery], ids=gallery)
    scores, ids = index.search(data.embeddings[queries], k + 1)
    keep = ids != queries[:, None]
    rows = [np.flatnonzero(row)[:k] for row in keep]
    ids = np.stack([i[r] for i, r in zip(ids, rows, strict=True)])
    scores = np.stack([s[r] for s, r in zip(scores, rows, strict=True)])
    labels = data.labels
    retrieval_grid(
        queries,
        ids,
        labels[np.maximum(ids, 0)] == labels[queries][:, None],
        items.load,
        scores=scores,
        captions=lambda i: _class_name(data.class_names, int(labels[i])),
        path=path,
    )


def run(args: argparse.Namespace) -> int:
    """Embed the evaluation images, print retrieval metrics, optionally write JSON and plots."""
    from supcon.evaluation import retrieval_metrics
    from supcon.evaluation.plots import recall_curve
    from supcon.io import atomic_write_json
    from supcon.outputs import EVAL_REPORT, check_outputs, check_plot_folder, run_inputs
    from supcon.reporting import escape, format_table, metrics_table
    from supcon.runs import load_run

    inputs = [*run_inputs(args.run), args.data]
    if args.json:
        check_outputs([(args.json, EVAL_REPORT)], option="--json", force=args.force, inputs=inputs)
    if args.plots:
        check_plot_folder(args.plots, PLOT_NAMES, force=args.force, inputs=inputs)
    device = resolve_device(args.device)
    started = time.perf_counter()
    loaded = load_run(args.run, device=device)
    items, description = load_items(loaded, args.data, args.split)
    if not items.labeled:
        raise UserError(f"{description} has no labels, so retrieval cannot be scored")
    data = embed_items(loaded, items, args, device)
    metrics = retrieval_metrics(
        data.embeddings,
        data.labels,
        ks=args.ks,
        precision_ks=args.precision_ks,
        map_ks=args.map_ks,
        is_query=data.is_query,
        is_gallery=data.is_gallery,
        per_class=args.per_class,
        nmi=args.nmi,
        device=device,
    )
    per_class = metrics.pop("per_class", None)
    print(metrics_table(metrics))
    if per_class:
        rows = [
            (
                _class_name(data.class_names, label),
                row["num_queries"],
                row["recall@1"],
                row["map@r"],
            )
            for label, row in per_class.items()
        ]
        print()
        print(format_table(rows, ["class", "queries", "recall@1", "map@r"]))
    print(
        f"{len(data.labels)} images from {escape(description)}  "
        f"({time.perf_counter() - started:.1f} s)"
    )

    if args.json:
        report = {
            "format": "supcon-eval/1",
            "metrics": metrics,
            "data": description,
            "model": data.model,
            "num_items": len(data.labels),
        }
        if per_class:
            report["per_class"] = {
                _class_name(data.class_names, label): row for label, row in per_class.items()
            }
        atomic_write_json(args.json, report)
        print(f"metrics written to {escape(args.json)}")
    if args.plots:
        plots = Path(args.plots)
        curve = retrieval_metrics(
            data.embeddings,
            data.labels,
            ks=_curve_ks(len(data.labels) - 1),
            precision_ks=(),
            at_r=False,
            is_query=data.is_query,
            is_gallery=data.is_gallery,
            device=device,
        )
        points = {
            int(key.split("@")[1]): v for key, v in curve.items() if key.startswith("recall@")
        }
        checkpoint = Path(loaded.checkpoint)
        name = checkpoint.parent.parent.name if checkpoint.parent.name == "checkpoints" else ""
        recall_curve({name or checkpoint.stem: points}, path=plots / "recall_at_k.png")
        _grid(data, items, plots / "retrieval_grid.png")
        print(f"plots written to {escape(plots)}/recall_at_k.png and retrieval_grid.png")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` to the CLI."""
    parser = subparsers.add_parser(
        "eval",
        help="retrieval metrics of a trained model",
        description="Embed labelled images with a trained model and report exact cosine "
        "retrieval metrics: leave-one-out, or query → gallery when the data has is_query / "
        "is_gallery flags.",
    )
    parser.add_argument("run", metavar="RUN_OR_CKPT", help="run directory or checkpoint file")
    add_data_arguments(parser, default_split="heldout")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8], help="recall@k cut-offs")
    parser.add_argument(
        "--precision-ks", type=int, nargs="+", default=[1], help="precision@k cut-offs"
    )
    parser.add_argument("--map-ks", type=int, nargs="*", default=[], help="mAP@k cut-offs")
    parser.add_argument("--per-class", action="store_true", help="also a per-class table")
    parser.add_argument("--nmi", action="store_true", help="also NMI / AMI of k-means clusters")
    parser.add_argument("--json", metavar="OUT", help="write the metrics as JSON")
    parser.add_argument(
        "--plots", metavar="DIR", help="write recall_at_k.png and retrieval_grid.png here"
    )
    add_force_argument(parser)
    parser.set_defaults(func=run)
