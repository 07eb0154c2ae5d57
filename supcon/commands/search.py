"""``supcon search INDEX (IMAGE… | --queries DIR_OR_CSV) [--k 10] [--run MODEL] [--out HITS]
[--refine K] [--qe N --qe-alpha A]``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from supcon.errors import UserError
from supcon.outputs import add_force_argument

if TYPE_CHECKING:
    import torch

SEARCH_BATCH = 1024
HIT_COLUMNS = ["query", "rank", "id", "score", "label", "class_name", "path"]


def _load_model(index: Any, run_arg: str | None, device: torch.device) -> Any:
    """The run (or exported model) that made the index, checked by weight fingerprint and
    dimension."""
    from supcon.commands._evaldata import load_model, model_info

    recorded = index.model.get("checkpoint")
    source = run_arg or recorded
    if source is None:
        raise UserError(
            "the index does not record which model made its embeddings; pass --run "
            "RUN_OR_CKPT (or an exported .onnx / .pt)"
        )
    loaded = load_model(source, device=device)
    dim = getattr(loaded, "embedding_dim", None) or loaded.model.embedding_dim
    if dim != index.dim:
        raise UserError(
            f"{loaded.checkpoint} makes {dim}-dimensional embeddings but "
            f"the index holds {index.dim}-dimensional ones; use the model the index was built with"
        )
    expected = index.model.get("fingerprint")
    if not expected:
        raise UserError(
            "the index's .json records no model fingerprint, so supcon search cannot check "
            f"that {loaded.checkpoint} made its embeddings; rebuild it from a run (supcon index "
            "RUN --out INDEX) or from embeddings written by supcon embed"
        )
    fingerprint = model_info(loaded)["fingerprint"]
    if fingerprint != expected:
        raise UserError(
            f"the index was built from a model with fingerprint {expected} ({recorded}), but "
            f"{loaded.checkpoint} has {fingerprint}; search with that model (--run) or rebuild "
            "the index with supcon index"
        )
    return loaded


def _query_files(images: list[str], queries: str | None) -> tuple[str, ...]:
    """Query image paths: the IMAGE arguments, or every image of a folder / CSV manifest."""
    from supcon.data import DataError, read_csv_manifest
    from supcon.data.sources import IMAGE_EXTENSIONS

    if images and queries:
        raise UserError("give query images or --queries DIR_OR_CSV, not both")
    if not images and not queries:
        raise UserError("nothing to search for: give query images or --queries DIR_OR_CSV")
    if images:
        missing = [p for p in images if not Path(p).is_file()]
        if missing:
            raise UserError(f"image(s) not found: {', '.join(missing[:5])}")
        return tuple(images)
    path = Path(queries)
    if path.is_dir():
        found = sorted(
            str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not found:
            raise UserError(
                f"--queries folder {queries!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        return tuple(found)
    if path.is_file() and path.suffix.lower() == ".csv":
        try:
            return tuple(read_csv_manifest(path).files.paths)
        except DataError as exc:
            raise UserError(str(exc)) from None
    raise UserError(f"--queries {queries!r} must be an image folder or a .csv manifest")


def _embed(loaded: Any, paths: tuple[str, ...], args: argparse.Namespace, device: torch.device):
    from supcon.commands._evaldata import model_channels
    from supcon.data import DataError, EvalDataset, with_channels
    from supcon.data.sources import FileSplit
    from supcon.evaluation.embed import extract_embeddings

    resolved = tuple(str(Path(p).resolve()) for p in paths)
    files = FileSplit(resolved, np.full(len(paths), -1, np.int64), ())
    files = with_channels(files, model_channels(loaded))
    try:
        emb, _, _ = extract_embeddings(
            loaded.model,
            EvalDataset(files, loaded.eval_transform),
            batch_size=args.batch_size or 64,
            device=device,
            progress=not args.no_progress,
        )
    except DataError as exc:
        raise UserError(str(exc)) from None
    return emb


def _search(index: Any, emb: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Search in batches (progress bar), with αQE as a second round when asked."""
    from tqdm import tqdm

    from supcon.evaluation.postprocess import expand

    scores, ids = [], []
    starts = range(0, len(emb), SEARCH_BATCH)
    for start in tqdm(starts, desc="search", disable=args.no_progress or len(starts) < 2):
        q = emb[start : start + SEARCH_BATCH]
        if args.qe:
            s, i = index.search(q, args.qe, refine=args.refine)
            q = expand(q, index.vectors(index.rows(i)), s, args.qe_alpha)
        s, i = index.search(q, args.k, refine=args.refine)
        scores.append(s)
        ids.append(i)
    return np.concatenate(scores), np.concatenate(ids)


def _write_hits(path: str, hits: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    import csv
    import io

    from supcon.io import atomic_write_json, atomic_write_text

    if path.lower().endswith(".csv"):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HIT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(hits)
        atomic_write_text(path, buffer.getvalue())
    else:
        atomic_write_json(path, {"format": "supcon-hits/1", **meta, "hits": hits})


def run(args: argparse.Namespace) -> int:
    """Embed query images and print (or write) their nearest gallery items."""
    from supcon.evaluation.index import SearchIndex
    from supcon.io import atomic_write_json
    from supcon.outputs import SEARCH_REPORT, check_outputs, data_inputs, hits_kind, run_inputs
    from supcon.reporting import escape, format_table

    if args.k < 1:
        raise UserError(f"--k must be ≥ 1, got {args.k}")
    if args.json:
        inputs = [*data_inputs(args.index), *run_inputs(args.run), *args.images]
        check_outputs(
            [(args.json, SEARCH_REPORT)], option="--json", force=args.force, inputs=inputs
        )
    if args.qe is not None and args.qe < 1:
        raise UserError(f"--qe must be ≥ 1, got {args.qe}")
    if not np.isfinite(args.qe_alpha) or args.qe_alpha < 0:
        raise UserError(f"--qe-alpha must be a number ≥ 0, got {args.qe_alpha}")
    if args.out and not args.out.lower().endswith((".csv", ".json")):
        raise UserError(f"--out {args.out!r} must end in .csv or .json")
    if args.out:
        inputs = [*data_inputs(args.index), *run_inputs(args.run), *args.images, args.queries]
        check_outputs(
            [(args.out, hits_kind(HIT_COLUMNS))], option="--out", force=args.force, inputs=inputs
        )
    paths = _query_files(args.images, args.queries)
    from supcon.devices import resolve_device

    device = resolve_device(args.device, option="--device")
    index = SearchIndex.load(args.index, device=device)
    index.configure(nprobe=args.nprobe, ef_search=args.ef_search)
    if args.refine is not None:
        try:
            index.check_refine(args.refine)
        except ValueError as exc:
            raise UserError(f"--refine: {exc}") from None
    if args.qe is not None and args.qe > len(index):
        raise UserError(
            f"--qe {args.qe} is larger than the {len(index)} items in the index; use at most "
            f"{len(index)}"
        )
    loaded = _load_model(index, args.run, device)
    scores, ids = _search(index, _embed(loaded, paths, args, device), args)

    hits, results, rows = [], [], []
    for query, score_row, id_row in zip(paths, scores, ids, strict=True):
        neighbours = []
        for rank, (score, item) in enumerate(zip(score_row, id_row, strict=True), start=1):
            if item < 0:
                continue
            row = index.rows(item)
            label = int(index.labels[row])
            name = index.class_names[label] if 0 <= label < len(index.class_names) else ""
            path = index.paths[row] if index.paths is not None else ""
            hit = {"rank": rank, "id": int(item), "score": float(score), "label": label,
                   "class_name": name, "path": path}  # fmt: skip
            neighbours.append(hit)
            hits.append({"query": query, **hit})
            rows.append((query if rank == 1 else "", rank, float(score), name or label, path))
        results.append({"query": query, "neighbours": neighbours})
    settings = {"k": args.k, "refine": args.refine, "qe": args.qe, "qe_alpha": args.qe_alpha}
    meta = {"index": str(args.index), "model": index.model, "search": settings}
    if args.out:
        _write_hits(args.out, hits, meta)
        print(f"{len(paths)} queries, {len(hits)} hits written to {args.out}")
    else:
        print(format_table(rows, ["query", "rank", "score", "label", "path"]))
    if args.json:
        atomic_write_json(args.json, {"format": "supcon-search/1", **meta, "results": results})
        print(f"results written to {escape(args.json)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``search`` to the CLI."""
    parser = subparsers.add_parser(
        "search",
        help="find gallery images that look like the given images",
        description="Embed images with the model an index was built from (recorded in its "
        ".json, or --run: a run or a model written by supcon export) and print their nearest "
        "gallery items: rank, cosine score, label, path. With --queries, embed and search a "
        "whole folder or CSV manifest in batches and write one row per (query, rank) to --out.",
    )
    parser.add_argument("index", metavar="INDEX", help="index file written by supcon index")
    parser.add_argument("images", metavar="IMAGE", nargs="*", help="query image files")
    parser.add_argument(
        "--queries", metavar="DIR_OR_CSV", help="search every image of a folder or CSV manifest"
    )
    parser.add_argument("--k", type=int, default=10, help="neighbours per image (default 10)")
    parser.add_argument(
        "--run",
        metavar="MODEL",
        help="model to embed with: run, checkpoint or exported .onnx/.pt (default: the index's)",
    )
    parser.add_argument(
        "--out", metavar="HITS", help="write one row per (query, rank) to HITS.csv or HITS.json"
    )
    parser.add_argument("--json", metavar="OUT", help="write the neighbours per query as JSON")
    parser.add_argument("--nprobe", type=int, help="ivf/ivfpq: cells to search (recall vs speed)")
    parser.add_argument("--ef-search", type=int, help="hnsw: search beam (recall vs speed)")
    parser.add_argument(
        "--refine",
        type=int,
        metavar="K",
        help="approximate indexes: re-score a shortlist of K candidates exactly",
    )
    parser.add_argument(
        "--qe", type=int, metavar="N", help="α-query expansion with the top N neighbours"
    )
    parser.add_argument(
        "--qe-alpha", type=float, default=3.0, metavar="A", help="αQE weight exponent (default 3)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu or cuda (default auto)"
    )
    add_force_argument(parser)
    parser.set_defaults(func=run)
