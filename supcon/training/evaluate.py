"""Retrieval evaluation of the model being trained, on the held-out split."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from supcon.data import Split
from supcon.data.transforms import Transform
from supcon.evaluation import evaluate_split


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
) -> dict[str, Any]:
    """:func:`supcon.evaluation.evaluate_split` without disturbing the training around it.

    Every RNG stream is left as it was, so evaluating does not change the training that
    follows, and the forward passes run under the training's own mixed precision.

    Args:
        model: The (unwrapped) embedding model; its train/eval mode is restored afterwards.
        split: The held-out images.
        transform: Their deterministic transform (``None`` for in-memory digits).
        ks: Cut-offs for ``recall@k``.
        batch_size: Images per forward pass.
        device: Where the model runs.
        num_workers: DataLoader workers.
        autocast: Mixed-precision context for the forward passes (``None``: full precision).

    Returns:
        The metrics of :func:`supcon.retrieval_metrics`; ``{}`` for an unlabeled split.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), autocast or contextlib.nullcontext():
        return evaluate_split(
            model,
            split,
            transform,
            ks=ks,
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            amp=False,
        )
