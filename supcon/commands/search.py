"""``supcon search INDEX IMAGE… [--k 10] [--run RUN_OR_CKPT] [--json OUT]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from supcon.commands._evaldata import resolve_device
from supcon.errors import UserError
from supcon.outputs import add_force_argument


def _load_model(index: Any, run_arg: str | None, device: torch.device) -> Any:
    """The run whose model made the index, checked by weight fingerprint and dimension."""
    from supcon.evaluation.embed import model_fingerprint
    from supcon.runs import load_run

    recorded = index.model.get("checkpoint")
    source = run_arg or recorded
    if source is None:
        raise UserError(
            "the index does not record which model made its embeddings; pass --run RUN_OR_CKPT"
        )
    loaded = load_run(source, device=device)
    if loaded.model.embedding_dim != index.dim:
        raise UserError(
            f"{loaded.checkpoint} makes {loaded.model.embedding_dim}-dimensional embeddings but "
            f"the index holds {index.dim}-dimensional ones; use the model the index was built with"
        )
    expected = index.model.get("fingerprint")
    if not expected:
        raise UserError(
            "the index's .json records no model fingerprint, so supcon search cannot check "
            f"that {loaded.checkpoint} made its embeddings; rebuild it from a run (supcon index "
            "RUN --out INDEX) or from embeddings written by supcon embed"
        )
    fingerprint = model_fingerprint(loaded.model)
    if fingerprint != expected:
        raise UserError(
            f"the index was built from a model with fingerprint {expected} ({recorded}), but "
            f"{loaded.checkpoint} has {fingerprint}; search with that model (--run) or rebuild "
            "the index with supcon index"
        )
    return loaded


def _embed_images(loaded: Any, paths: list[str], device: torch.device) -> torch.Tensor:
    from supcon.data import DataError, input_channels, with_channels
    from supcon.data.sources import FileSplit

    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise UserError(f"image(s) not found: {', '.join(missing[:5])}")
    resolved = tuple(str(Path(p).resolve()) for p in paths)
    files = FileSplit(resolved, np.zeros(len(paths), np.int64), ())
    files = with_channels(files, input_channels(loaded.config.data))
    try:
        images = torch.stack([loaded.eval_transform(files.load(i)) for i in range(len(paths))])
    except DataError as exc:
        raise UserError(str(exc)) from None
    with torch.no_grad():
        return loaded.model(images.to(device)).float().cpu()


def run(args: argparse.Namespace) -> int:
    """Embed query images and print their nearest gallery items."""
    from supcon.evaluation.index import SearchIndex
    from supcon.io import atomic_write_json
    from supcon.outputs import SEARCH_REPORT, check_outputs, data_inputs, run_inputs
    from supcon.reporting import escape, format_table

    if args.k < 1:
        raise UserError(f"--k must be ≥ 1, got {args.k}")
    if args.json:
        inputs = [*data_inputs(args.index), *run_inputs(args.run), *args.images]
        check_outputs(
            [(args.json, SEARCH_REPORT)], option="--json", force=args.force, inputs=inputs
        )
    device = resolve_device(args.device)
    index = SearchIndex.load(args.index, device=device)
    index.configure(nprobe=args.nprobe, ef_search=args.ef_search)
    loaded = _load_model(index, args.run, device)
    scores, ids = index.search(_embed_images(loaded, args.images, device), args.k)
    results, rows = [], []
    for query, score_row, id_row in zip(args.images, scores, ids, strict=True):
        neighbours = []
        for rank, (score, item) in enumerate(zip(score_row, id_row, strict=True), start=1):
            if item < 0:
                continue
            row = index.rows(item)
            label = int(index.labels[row])
            name = index.class_names[label] if 0 <= label < len(index.class_names) else ""
            path = index.paths[row] if index.paths is not None else ""
            neighbours.append(
                {
                    "rank": rank,
                    "id": int(item),
                    "score": float(score),
                    "label": label,
                    "class_name": name,
                    "path": path,
                }
            )
            rows.append((query if rank == 1 else "", rank, float(score), name or label, path))
        results.append({"query": query, "neighbours": neighbours})
    print(format_table(rows, ["query", "rank", "score", "label", "path"]))
    if args.json:
        atomic_write_json(
            args.json,
            {
                "format": "supcon-search/1",
                "index": str(args.index),
                "model": index.model,
                "results": results,
            },
        )
        print(f"results written to {escape(args.json)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``search`` to the CLI."""
    parser = subparsers.add_parser(
        "search",
        help="find gallery images that look like the given images",
        description="Embed images with the model an index was built from (recorded in its "
        ".json, or --run) and print their nearest gallery items: rank, cosine score, label, "
        "path.",
    )
    parser.add_argument("index", metavar="INDEX", help="index file written by supcon index")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="query image files")
    parser.add_argument("--k", type=int, default=10, help="neighbours per image (default 10)")
    parser.add_argument(
        "--run", metavar="RUN_OR_CKPT", help="model to embed with (default: the index's)"
    )
    parser.add_argument("--json", metavar="OUT", help="write the neighbours as JSON")
    parser.add_argument("--nprobe", type=int, help="ivf/ivfpq: cells to search (recall vs speed)")
    parser.add_argument("--ef-search", type=int, help="hnsw: search beam (recall vs speed)")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu or cuda (default auto)"
    )
    add_force_argument(parser)
    parser.set_defaults(func=run)
