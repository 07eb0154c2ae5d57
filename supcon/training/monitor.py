"""Embedding diagnostics during training: loss bounds, alignment, uniformity, collapse."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from supcon.messages import say


def diagnose(
    embeddings: Tensor,
    labels: Tensor | None,
    views: int,
    *,
    temperature: float,
    contrast_mode: str = "all",
) -> dict[str, Any]:
    """:func:`supcon.losses.diagnostics.batch_diagnostics` of one rank's step.

    Args:
        embeddings: ``(b·V, D)`` this rank's embeddings, sample-major.
        labels: ``(b,)`` class ids, or ``None`` (the views are the positives).
        views: ``V``.
        temperature: τ of the training loss.
        contrast_mode: The loss's contrast mode.

    Returns:
        The diagnostics as a flat dict (``collapsed`` is a bool).
    """
    from supcon.losses.diagnostics import batch_diagnostics

    grouped = embeddings.detach().float().view(-1, views, embeddings.shape[-1])
    result = batch_diagnostics(
        grouped, labels, temperature=temperature, contrast_mode=contrast_mode
    )
    return result.as_dict()


def warn_if_collapsed(values: dict[str, Any], step: int) -> None:
    """Print the collapse alarm (mean pairwise similarity near 1) to stderr."""
    if values.get("collapsed"):
        say(
            f"supcon train: warning: embeddings are collapsing at step {step} (mean pairwise "
            f"similarity {values['mean_similarity']:.3f}); lower optim.lr, raise "
            "loss.temperature or check that the views differ",
        )
