"""``supcon eval RUN_OR_CKPT [--data DIR_OR_CSV] [--split heldout|all] [--ks …] [--json OUT]
[--plots DIR] [--linear-probe]``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from supcon.commands._evaldata import add_data_arguments, embed_items, load_items
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


def _linear_probe(loaded: Any, data: Any, args: argparse.Namespace, device: Any) -> dict:
    """Fit a logistic regression on the run's training split, score it on ``data``."""
    from supcon.data import load_splits
    from supcon.evaluation.linear_probe import linear_probe

    train_split, _ = load_splits(loaded.config.data, loaded.config.train.seed)
    if not train_split.labeled:
        raise UserError("--linear-probe needs a labelled training split; this run's has no labels")
    train = embed_items(loaded, train_split, args, device)
    return linear_probe(
        train.embeddings, train.labels, data.embeddings, data.labels, c=args.probe_c
    )


def _check_refine(args: argparse.Namespace) -> None:
    """``--refine`` needs an approximate ``--index`` (checked before anything is embedded)."""
    if args.refine is None:
        return
    if args.index is None:
        raise UserError(
            "supcon eval searches exactly, so --refine has nothing to refine; add --index "
            "ivf|hnsw|ivfpq to measure an approximate index with and without it"
        )
    if args.index == "flat":
        raise UserError("--refine: a flat index is already exact; use --index ivf|hnsw|ivfpq")
    if args.refine < 1:
        raise UserError(f"--refine must be ≥ 1, got {args.refine}")


def _approximate(args: argparse.Namespace, data: Any) -> dict[str, Any] | None:
    """Recall@k through an approximate index (``--index``), refined with ``--refine``."""
    from supcon.evaluation.index import IndexParams
    from supcon.evaluation.postprocess import approximate_recall

    if args.index is None:
        return None
    params = IndexParams(args.index, nprobe=args.nprobe)
    metrics = approximate_recall(
        data.embeddings,
        data.labels,
        params,
        refine=args.refine,
        ks=tuple(args.ks),
        is_query=data.is_query,
        is_gallery=data.is_gallery,
    )
    label = args.index + (f" + refine {args.refine}" if args.refine else "")
    return {"metrics": metrics, "label": label, "index": args.index, "refine": args.refine}


def _postprocessed(args: argparse.Namespace, data: Any, device: Any) -> dict[str, Any] | None:
    """Metrics after DBA / αQE (``--dba``, ``--qe``), with what was done and its time."""
    from supcon.evaluation.postprocess import postprocessed_metrics

    if args.qe is None and args.dba is None:
        return None
    started = time.perf_counter()
    metrics = postprocessed_metrics(
        data.embeddings,
        data.labels,
        qe=args.qe,
        qe_alpha=args.qe_alpha,
        dba=args.dba,
        dba_alpha=args.dba_alpha,
        is_query=data.is_query,
        is_gallery=data.is_gallery,
        ks=args.ks,
        precision_ks=args.precision_ks,
        map_ks=args.map_ks,
        device=device,
    )
    steps = []
    if args.dba is not None:
        steps.append(f"DBA (n={args.dba}, α={args.dba_alpha:g})")
    if args.qe is not None:
        steps.append(f"αQE (n={args.qe}, α={args.qe_alpha:g})")
    settings = {"qe": args.qe, "qe_alpha": args.qe_alpha, "dba": args.dba,
                "dba_alpha": args.dba_alpha}  # fmt: skip
    return {
        "metrics": metrics,
        "label": " + ".join(steps),
        "settings": settings,
        "seconds": time.perf_counter() - started,
    }


def run(args: argparse.Namespace) -> int:
    """Embed the evaluation images, print retrieval metrics, optionally write JSON and plots."""
    from supcon.evaluation import retrieval_metrics
    from supcon.evaluation.plots import recall_curve
    from supcon.io import atomic_write_json
    from supcon.outputs import EVAL_REPORT, check_outputs, check_plot_folder, run_inputs
    from supcon.reporting import escape, format_table, metrics_table
    from supcon.runs import load_run

    if args.linear_probe and args.split == "all" and args.data is None:
        raise UserError(
            "--linear-probe fits on the run's training split, so it cannot be scored on "
            "--split all; drop --split all (held-out split) or pass --data"
        )
    inputs = [*run_inputs(args.run), args.data]
    if args.json:
        check_outputs([(args.json, EVAL_REPORT)], option="--json", force=args.force, inputs=inputs)
    if args.plots:
        check_plot_folder(args.plots, PLOT_NAMES, force=args.force, inputs=inputs)
    _check_refine(args)
    from supcon.devices import resolve_device

    device = resolve_device(args.device, option="--device")
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
    if args.linear_probe:
        metrics.update(_linear_probe(loaded, data, args, device))
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
    approximate = _approximate(args, data)
    if approximate is not None:
        print()
        print(metrics_table(approximate["metrics"]))
        print(f"through {approximate['label']}")
    processed = _postprocessed(args, data, device)
    if processed is not None:
        print()
        print(metrics_table(processed["metrics"]))
        print(f"after {processed['label']}  (+{processed['seconds']:.2f} s)")

    if args.json:
        report = {
            "format": "supcon-eval/1",
            "metrics": metrics,
            "data": description,
            "model": data.model,
            "num_items": len(data.labels),
        }
        if processed is not None:
            report["postprocessed"] = processed
        if approximate is not None:
            report["approximate"] = approximate
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
        "--index",
        choices=("flat", "ivf", "hnsw", "ivfpq"),
        help="also report recall@k through this FAISS index type (and recall vs exact)",
    )
    parser.add_argument("--nprobe", type=int, help="with --index ivf/ivfpq: cells searched")
    parser.add_argument(
        "--refine", type=int, metavar="K", help="with --index: re-score K candidates exactly"
    )
    parser.add_argument(
        "--qe", type=int, metavar="N", help="also score after α-query expansion with the top N"
    )
    parser.add_argument(
        "--qe-alpha", type=float, default=3.0, metavar="A", help="αQE weight exponent (default 3)"
    )
    parser.add_argument(
        "--dba",
        type=int,
        metavar="N",
        help="also score after database-side augmentation of the gallery with the top N",
    )
    parser.add_argument(
        "--dba-alpha", type=float, default=3.0, metavar="A", help="DBA weight exponent (default 3)"
    )
    parser.add_argument(
        "--plots", metavar="DIR", help="write recall_at_k.png and retrieval_grid.png here"
    )
    parser.add_argument(
        "--linear-probe",
        action="store_true",
        help="also fit a logistic regression on frozen embeddings of the run's training split "
        "and report its accuracy on the evaluated images (needs shared classes)",
    )
    parser.add_argument(
        "--probe-c",
        type=float,
        default=1.0,
        help="inverse L2 strength of the linear probe (scikit-learn's C, default 1)",
    )
    add_force_argument(parser)
    parser.set_defaults(func=run)
