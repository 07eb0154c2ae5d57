"""Retrieval evaluation of the model being trained, on the held-out split."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from supcon.data import EvalDataset, Split
from supcon.data.transforms import Transform
from supcon.evaluation import embed_dataset, retrieval_metrics


def evaluate(
    model: nn.Module,
    split: Split,
    transform: Transform | None,
    *,
    ks: tuple[int, ...],
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, float]:
    """Retrieval metrics of ``model`` on a held-out split.

    Leave-one-out over the split, or query → gallery when the split carries ``is_query`` /
    ``is_gallery`` flags. Unlabeled splits give no metrics (an empty dict). Every RNG stream is
    left as it was, so evaluating does not change the training that follows.

    Args:
        model: The (unwrapped) embedding model; its train/eval mode is restored afterwards.
        split: The held-out images.
        transform: Their deterministic transform (``None`` for in-memory digits).
        ks: Cut-offs for ``recall@k``.
        batch_size: Images per forward pass.
        device: Where the model runs.
        num_workers: DataLoader workers.
        autocast: Mixed-precision context for the forward passes.

    Returns:
        The metrics of :func:`supcon.retrieval_metrics`.
    """
    if not split.labeled:
        return {}
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), autocast or contextlib.nullcontext():
        embeddings, labels = embed_dataset(
            model,
            EvalDataset(split, transform),
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
        )
    if split.is_query is None and split.is_gallery is None:
        return retrieval_metrics(embeddings, labels, ks=ks)
    query = split.is_query if split.is_query is not None else np.ones(len(labels), bool)
    gallery = split.is_gallery if split.is_gallery is not None else np.ones(len(labels), bool)
    return retrieval_metrics(
        embeddings[query], labels[query], embeddings[gallery], labels[gallery], ks=ks
    )
