"""Embedding extraction: batched, no gradient, eval mode, a progress bar."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm


@torch.no_grad()
def embed_dataset(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed every item of a dataset whose items are ``(image, label, index)``.

    Args:
        model: Maps ``(B, C, H, W)`` to ``(B, D)``.
        dataset: E.g. :class:`supcon.data.EvalDataset`.
        batch_size: Images per forward pass.
        device: Where the model runs.
        num_workers: DataLoader workers.
        progress: Show a tqdm bar.

    Returns:
        ``(embeddings, labels)``: ``(N, D)`` float32 and ``(N,)`` int64, in dataset order.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    chunks, labels = [], []
    try:
        for images, batch_labels, _ in tqdm(
            loader, desc="embed", disable=not progress, leave=False
        ):
            chunks.append(model(images.to(device, non_blocking=True)).float().cpu())
            labels.append(batch_labels)
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy(), torch.cat(labels).numpy().astype(np.int64)
