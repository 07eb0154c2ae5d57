"""The evaluation protocol in one call: embed a labelled split, then score retrieval.

Leave-one-out over the split, or query → gallery when it carries OML-style ``is_query`` /
``is_gallery`` flags. Training's final (or periodic) evaluation and ``supcon eval`` agree
because both go through here or through the same two steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from supcon.data.transforms import Transform
from supcon.data.views import EvalDataset, Split
from supcon.evaluation.embed import extract_embeddings
from supcon.evaluation.metrics import retrieval_metrics


def evaluate_split(
    model: nn.Module,
    split: Split,
    transform: Transform | None = None,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    amp: bool | None = None,
    progress: bool = False,
    **metric_options: Any,
) -> dict[str, Any]:
    """Retrieval metrics of ``model`` on a held-out split.

    Args:
        model: Maps ``(B, C, H, W)`` images to ``(B, D)`` embeddings.
        split: Labelled items (``FileSplit`` or ``TensorSplit``).
        transform: Deterministic eval transform (``None`` for in-memory tensors).
        ks: Cut-offs for ``recall@k``.
        batch_size: Images per forward pass.
        device: Where the model runs (search runs there too).
        num_workers: DataLoader workers.
        amp: Autocast the forward passes to float16 (``None``: on CUDA only; ``False`` keeps
            the caller's own autocast context).
        progress: Show a progress bar.
        **metric_options: Passed to :func:`retrieval_metrics` (``map_ks``, ``per_class``, …).

    Returns:
        The metrics of :func:`retrieval_metrics`; ``{}`` for an unlabelled split.
    """
    if not getattr(split, "labeled", True):
        return {}
    embeddings, labels, _ = extract_embeddings(
        model,
        EvalDataset(split, transform),
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        amp=amp,
        progress=progress,
    )
    return retrieval_metrics(
        embeddings,
        labels,
        ks=ks,
        is_query=split.is_query,
        is_gallery=split.is_gallery,
        device=torch.device(device),
        **metric_options,
    )
