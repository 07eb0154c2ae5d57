"""What ``eval``, ``embed``, ``index`` and ``fewshot`` read: a run's own data or the images of
``--data`` (``index`` and ``fewshot`` also take an embeddings file)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from supcon.errors import UserError

if TYPE_CHECKING:
    import torch

    from supcon.data import Split
    from supcon.evaluation.embed import EmbeddingSet
    from supcon.runs import LoadedRun


def num_workers_argument(text: str) -> int | str:
    """``--num-workers`` value: ``auto`` or an integer ≥ 0."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer ≥ 0, got {text!r}")
    return value


def add_data_arguments(parser: argparse.ArgumentParser, default_split: str) -> None:
    """``--data``, ``--split``, ``--batch-size``, ``--num-workers``, ``--device``,
    ``--no-progress``."""
    parser.add_argument(
        "--data",
        metavar="DIR_OR_CSV",
        help="image folder (DIR/<class>/<image>) or CSV manifest (path,label[,is_query,"
        "is_gallery]) instead of the run's own data",
    )
    parser.add_argument(
        "--split",
        choices=("heldout", "all"),
        default=default_split,
        help=f"without --data: the run's held-out split or all its data (default {default_split})",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass")
    parser.add_argument(
        "--num-workers",
        type=num_workers_argument,
        default="auto",
        metavar="N",
        help="DataLoader worker processes, or auto: the cores available minus one, at most 8, "
        "0 on ≤ 2 cores (default auto; the run's data.num_workers is not used)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu or cuda (default auto)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def load_items(run: LoadedRun, data: str | None, split: str) -> tuple[Split, str]:
    """The items to embed and a description of them.

    Args:
        run: The loaded run.
        data: ``--data`` (image folder or CSV manifest), or ``None`` for the run's own data.
        split: ``"heldout"`` or ``"all"`` (without ``data``).

    Returns:
        ``(split, description)``.

    Raises:
        UserError: when the data cannot be read or cannot be embedded by this run.
    """
    from supcon.config import DataConfig
    from supcon.data import (
        load_splits,
        read_csv_manifest,
        scan_image_folder,
        with_channels,
    )
    from supcon.data.verify import screen_splits, summarize
    from supcon.data.views import concat_splits

    if data is None:
        if run.config is None:
            raise UserError(
                f"{run.checkpoint} is an exported model and carries no data; pass --data DIR_OR_CSV"
            )
        train, held_out = load_splits(run.config.data, run.config.train.seed)
        train, held_out, bad = screen_splits(run.config.data, train, held_out)
        if bad:
            print(f"note: data.on_bad_image=skip left out {summarize(bad)}")
        if split == "heldout":
            return held_out, f"held-out split of {run.checkpoint}"
        return concat_splits(train, held_out), f"all data of {run.checkpoint}"
    path = Path(data)
    data_config = run.config.data if run.config is not None else DataConfig()
    if path.is_dir():
        items = scan_image_folder(path, class_names=run.class_names or None)
    elif path.is_file() and path.suffix.lower() == ".csv":
        outside = data_config.allow_outside_root
        items = read_csv_manifest(path, allow_outside_root=outside).files
    else:
        raise UserError(f"--data {data!r} must be an image folder or a .csv manifest")
    items = dataclasses.replace(items, max_pixels=data_config.max_image_pixels)
    return with_channels(items, model_channels(run)), str(path)


def model_channels(run: LoadedRun) -> int:
    """Input channels of a run's model, or of an exported one (from its sidecar)."""
    from supcon.data import input_channels

    if run.config is None:
        return int(run.meta["transform"]["input_size"][0])  # type: ignore[attr-defined]
    return input_channels(run.config.data)


def model_info(run: LoadedRun) -> dict[str, str]:
    """The checkpoint path and weight fingerprint recorded with embeddings and indexes
    (an exported model reports those of the run it was exported from)."""
    from supcon.evaluation.embed import model_fingerprint

    if getattr(run, "model_info", None) is not None:
        return dict(run.model_info)
    return {
        "checkpoint": str(Path(run.checkpoint).resolve()),
        "fingerprint": model_fingerprint(run.model),
        "backbone": run.config.model.backbone,
    }


def embed_items(
    run: LoadedRun, items: Split, args: argparse.Namespace, device: torch.device
) -> EmbeddingSet:
    """Embed ``items`` with the run's model and eval transform."""
    from supcon.data import EvalDataset
    from supcon.data.workers import resolve_num_workers
    from supcon.evaluation.embed import EmbeddingSet, extract_embeddings

    emb, labels, ids = extract_embeddings(
        run.model,
        EvalDataset(items, run.eval_transform),
        batch_size=args.batch_size or (run.config.eval.batch_size if run.config else 64),
        device=device,
        num_workers=resolve_num_workers(
            getattr(args, "num_workers", "auto"), in_memory=not hasattr(items, "paths")
        ),
        progress=not args.no_progress,
    )
    paths = getattr(items, "paths", None)
    return EmbeddingSet(
        embeddings=emb,
        labels=labels,
        ids=ids,
        paths=None if paths is None else tuple(paths),
        class_names=tuple(items.class_names),
        is_query=items.is_query,
        is_gallery=items.is_gallery,
        model=model_info(run),
    )


def load_model(source: str | Path, device: torch.device) -> LoadedRun:
    """A run (directory or checkpoint) or a model written by ``supcon export`` (``.onnx`` /
    TorchScript ``.pt`` with its ``.json``), loaded for embedding."""
    from supcon.export import is_exported, load_exported
    from supcon.runs import load_run

    if is_exported(source):
        return load_exported(source, device=device)  # type: ignore[return-value]
    return load_run(source, device=device)


def load_or_embed(
    source: str, args: argparse.Namespace, device: torch.device
) -> tuple[EmbeddingSet, str]:
    """Embeddings from a file written by ``supcon embed``, or embedded now from a run.

    Args:
        source: ``NAME.npy`` / ``NAME.safetensors``, or a run directory or checkpoint.
        args: The parsed ``--data``, ``--split``, ``--batch-size`` and ``--no-progress``.
        device: Where the model runs.

    Returns:
        ``(embeddings, description of their source)``.

    Raises:
        ValueError: for ``--data`` with an embeddings file (it applies to runs only).
    """
    from supcon.evaluation.embed import EXTENSIONS, load_embeddings

    path = Path(source)
    if path.suffix in EXTENSIONS:
        if args.data is not None:
            raise ValueError("--data applies to a run; embeddings files are used as they are")
        return load_embeddings(path), str(path)
    loaded = load_model(path, device=device)
    items, description = load_items(loaded, args.data, args.split)
    return embed_items(loaded, items, args, device), description
