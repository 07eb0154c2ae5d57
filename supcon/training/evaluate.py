"""Retrieval evaluation of the model being trained, on the held-out split."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from supcon.data import Split
from supcon.data.transforms import Transform
from supcon.distributed import broadcast_buffers
from supcon.evaluation import evaluate_split
from supcon.training.errors import TrainingError

if TYPE_CHECKING:
    from supcon.training.run import Run


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


def evaluate_run(run: Run) -> dict[str, Any]:
    """Evaluate the run's model on its held-out split and log the metrics.

    Every rank evaluates (the evaluator may shard the embedding), with rank 0's BatchNorm
    statistics.

    Returns:
        The metrics (``{}`` for an unlabeled held-out split).

    Raises:
        TrainingError: when ``train.best_metric`` is not one of them.
    """
    broadcast_buffers(run.model)  # every rank embeds with rank 0's BatchNorm statistics
    config = run.config
    metrics = evaluate(
        run.model,
        run.test_split,
        run.eval_transform,
        ks=config.eval.ks,
        batch_size=config.eval.batch_size,
        device=run.device,
        num_workers=run.workers,
        autocast=run.amp(),
    )
    if metrics:
        if config.train.best_metric not in metrics:
            raise TrainingError(
                f"train.best_metric={config.train.best_metric!r} is not an evaluation metric; "
                f"choose one of {', '.join(sorted(metrics))}"
            )
        run.logs.evaluation(run.state.epoch, run.state.step, metrics)
    return metrics
