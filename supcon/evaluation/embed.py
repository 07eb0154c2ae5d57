"""Embedding extraction: batched, no gradient, in eval mode."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


@torch.no_grad()
def embed_images(
    model: nn.Module, images: Tensor, *, batch_size: int = 512, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Embed in-memory images.

    Args:
        model: Maps ``(B, C, H, W)`` to ``(B, D)``.
        images: ``(N, C, H, W)``.
        batch_size: Images per forward pass.
        device: Where the model runs.

    Returns:
        ``(N, D)`` float32 embeddings.
    """
    was_training = model.training
    model.eval()
    try:
        out = [
            model(images[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()
