"""``supcon index EMBEDDINGS_OR_RUN --out INDEX [--type flat|ivf|hnsw|ivfpq] [...]``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from supcon.commands._evaldata import add_data_arguments, load_or_embed
from supcon.outputs import add_force_argument


def run(args: argparse.Namespace) -> int:
    """Build a FAISS index over gallery embeddings and save it with its metadata."""
    from supcon.evaluation.index import IndexParams, build_index
    from supcon.outputs import INDEX, check_outputs, data_inputs, run_inputs, sidecar_kind
    from supcon.reporting import format_table

    out = Path(args.out)
    check_outputs(
        [
            (out, INDEX),
            (out.with_name(out.name + ".json"), sidecar_kind("supcon-index/1", "index .json")),
        ],
        option="--out",
        force=args.force,
        inputs=[*run_inputs(args.source), *data_inputs(args.source), args.data],
    )
    from supcon.devices import resolve_device

    device = resolve_device(args.device, option="--device")
    started = time.perf_counter()
    data, description = load_or_embed(args.source, args, device)
    rows = np.arange(len(data.ids)) if data.is_gallery is None else np.flatnonzero(data.is_gallery)
    params = IndexParams(
        args.type,
        nlist=args.nlist,
        nprobe=args.nprobe,
        m=args.m,
        ef_search=args.ef_search,
        pq_m=args.pq_m,
        store_exact=args.store_exact,
    )
    if args.store_exact and args.type != "ivfpq":
        raise ValueError(
            "--store-exact applies to --type ivfpq (flat, ivf and hnsw store exact vectors)"
        )
    gallery, model = data.embeddings[rows], dict(data.model)
    if args.dba is not None:
        from supcon.evaluation.postprocess import database_augmentation

        gallery = database_augmentation(gallery, args.dba, args.dba_alpha)
        model["dba"] = {"n": args.dba, "alpha": args.dba_alpha}
    built = time.perf_counter()
    index = build_index(
        gallery,
        ids=data.ids[rows],
        labels=data.labels[rows],
        paths=None if data.paths is None else tuple(data.paths[i] for i in rows),
        class_names=data.class_names,
        model=model,
        params=params,
        device=device,
    )
    build_s = time.perf_counter() - built
    path = index.save(args.out)
    settings = ", ".join(f"{k}={v}" for k, v in index.params.as_dict().items() if k != "kind")
    table = [
        ("type", index.params.kind + (f" ({settings})" if settings else "")),
        ("items", len(index)),
        ("dimension", index.dim),
        ("gallery", description),
        ("model", data.model.get("checkpoint", "unknown (pass --run to supcon search)")),
        ("build time", f"{build_s:.2f} s"),
        ("written", f"{path} (+ {path.name}.json)"),
    ]
    print(format_table(table, ["", "value"]))
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``index`` to the CLI."""
    parser = subparsers.add_parser(
        "index",
        help="build and save a FAISS index",
        description="Build a cosine FAISS index over gallery embeddings (an embeddings file "
        "from supcon embed, or a run whose data is embedded now; only is_gallery rows when "
        "flagged) and save it with a .json recording the model, ids, labels and paths.",
    )
    parser.add_argument(
        "source", metavar="EMBEDDINGS_OR_RUN", help="NAME.npy / NAME.safetensors, or a run"
    )
    parser.add_argument("--out", required=True, metavar="INDEX", help="index file to write")
    parser.add_argument(
        "--type",
        choices=("flat", "ivf", "hnsw", "ivfpq"),
        default="flat",
        help="flat: exact (default); ivf / hnsw / ivfpq: approximate, for large galleries",
    )
    parser.add_argument("--nlist", type=int, help="ivf/ivfpq cells (default ≈ 4·√N)")
    parser.add_argument("--nprobe", type=int, help="ivf/ivfpq cells searched (default 16)")
    parser.add_argument("--m", type=int, default=32, help="hnsw links per node (default 32)")
    parser.add_argument("--ef-search", type=int, default=64, help="hnsw search beam (default 64)")
    parser.add_argument("--pq-m", type=int, help="ivfpq bytes per vector (default D/4)")
    parser.add_argument(
        "--store-exact",
        action="store_true",
        help="ivfpq: also keep exact vectors (4·D bytes each) for supcon search --refine",
    )
    parser.add_argument(
        "--dba",
        type=int,
        metavar="N",
        help="database-side augmentation: each item → weighted mean of itself and its top N",
    )
    parser.add_argument(
        "--dba-alpha", type=float, default=3.0, metavar="A", help="DBA weight exponent (default 3)"
    )
    add_data_arguments(parser, default_split="all")
    add_force_argument(parser)
    parser.set_defaults(func=run)
