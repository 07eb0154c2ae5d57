"""``supcon fewshot RUN_OR_EMBEDDINGS [--data DIR_OR_CSV] [--split heldout|all] [--n-way 5]
[--k-shot 1 5] [--n-query 15] [--episodes 600] [--classifier prototype nn] [--seed 0]
[--json OUT]``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from supcon.commands._evaldata import add_data_arguments, load_or_embed
from supcon.errors import UserError
from supcon.outputs import add_force_argument


def fewshot_table(report: dict[str, Any]) -> str:
    """Classifier × k-shot table of ``accuracy ± 95 % CI`` in percent."""
    from supcon.reporting import format_table

    shots = list(dict.fromkeys(r["k_shot"] for r in report["results"]))
    cells: dict[str, dict[int, str]] = {}
    for r in report["results"]:
        text = f"{100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f}"
        cells.setdefault(r["classifier"], {})[r["k_shot"]] = text
    rows = [(name, *(row[k] for k in shots)) for name, row in cells.items()]
    return format_table(rows, ["classifier", *(f"{k}-shot" for k in shots)])


def run(args: argparse.Namespace) -> int:
    """Embed (or load) labelled items, run few-shot episodes, print and optionally write JSON."""
    from supcon.evaluation.fewshot import fewshot_accuracy
    from supcon.io import atomic_write_json
    from supcon.outputs import FEWSHOT_REPORT, check_outputs, data_inputs, run_inputs
    from supcon.reporting import escape

    if args.json:
        inputs = [*run_inputs(args.source), *data_inputs(args.source), args.data]
        check_outputs(
            [(args.json, FEWSHOT_REPORT)], option="--json", force=args.force, inputs=inputs
        )
    from supcon.devices import resolve_device

    device = resolve_device(args.device, option="--device")
    started = time.perf_counter()
    data, description = load_or_embed(args.source, args, device)
    labelled = data.labels >= 0
    if not labelled.any():
        raise UserError(
            f"{description} has no labels, so few-shot episodes cannot be drawn; embed "
            "labelled images (an image folder, or a CSV manifest with a label column)"
        )
    if not labelled.all():
        print(f"note: {int((~labelled).sum())} unlabelled items are left out")
    report = fewshot_accuracy(
        data.embeddings[labelled],
        data.labels[labelled],
        n_way=args.n_way,
        k_shots=args.k_shot,
        n_query=args.n_query,
        episodes=args.episodes,
        classifiers=args.classifier,
        seed=args.seed,
        device=device,
        progress=not args.no_progress,
    )
    print(
        f"{report['n_way']}-way, {report['n_query']} queries per class, "
        f"{report['episodes']} episodes (seed {report['seed']}): accuracy % ± 95 % CI"
    )
    print(fewshot_table(report))
    classes = sorted({r["classes"] for r in report["results"]})
    print(
        f"{int(labelled.sum())} items in {report['num_classes']} classes "
        f"({'/'.join(map(str, classes))} with enough items) from {escape(description)}  "
        f"({time.perf_counter() - started:.1f} s)"
    )
    if args.json:
        atomic_write_json(
            args.json,
            {
                "format": "supcon-fewshot/1",
                "fewshot": report,
                "data": description,
                "model": data.model,
                "num_items": int(labelled.sum()),
            },
        )
        print(f"results written to {escape(args.json)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fewshot`` to the CLI."""
    parser = subparsers.add_parser(
        "fewshot",
        help="N-way K-shot accuracy of a trained model",
        description="Few-shot evaluation of frozen embeddings: draw N-way K-shot episodes "
        "(K support and --n-query query items per class) from labelled items, classify each "
        "query from the support set, and report the mean accuracy over episodes with its 95% "
        "confidence interval (1.96 · std / √episodes). The same episodes are used for every "
        "classifier. Query/gallery flags in the data are ignored.",
    )
    parser.add_argument(
        "source",
        metavar="RUN_OR_EMBEDDINGS",
        help="run directory or checkpoint file, or NAME.npy / NAME.safetensors from supcon embed",
    )
    add_data_arguments(parser, default_split="heldout")
    parser.add_argument("--n-way", type=int, default=5, help="classes per episode (default 5)")
    parser.add_argument(
        "--k-shot",
        type=int,
        nargs="+",
        default=[1, 5],
        help="support items per class; several give one column each (default 1 5)",
    )
    parser.add_argument(
        "--n-query", type=int, default=15, help="query items per class (default 15)"
    )
    parser.add_argument(
        "--episodes", type=int, default=600, help="episodes per k-shot setting (default 600)"
    )
    parser.add_argument(
        "--classifier",
        nargs="+",
        metavar="NAME",
        default=["prototype", "nn"],
        help="prototype: nearest class mean (cosine); nn: nearest support item; logistic: "
        "scikit-learn logistic regression per episode, slower (default prototype nn)",
    )
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    add_force_argument(parser)
    parser.set_defaults(func=run)
