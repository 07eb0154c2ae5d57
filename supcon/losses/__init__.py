"""Contrastive losses: a functional core (:mod:`.functional`) and thin modules around it.

* :func:`supcon_loss` / :class:`SupConLoss`: SupCon L_out / NT-Xent, dense or tiled, with HCL
  hard-negative reweighting and an exact distributed gather.
* :class:`CrossBatchMemory`: a label-aware FIFO queue whose rows feed ``ref_embeddings``.
* :func:`batch_diagnostics` / :func:`loss_bounds`: loss bounds, alignment, uniformity and a
  collapse alarm, cheap enough to log during training.
"""

from supcon.blocks import AUTO_TILE_ELEMENTS
from supcon.losses.diagnostics import BatchDiagnostics, batch_diagnostics, loss_bounds
from supcon.losses.functional import (
    LossStats,
    l2_normalize,
    supcon_loss,
    supcon_loss_with_stats,
)
from supcon.losses.memory import CrossBatchMemory
from supcon.losses.supcon import SupConLoss

__all__ = [
    "AUTO_TILE_ELEMENTS",
    "BatchDiagnostics",
    "CrossBatchMemory",
    "LossStats",
    "SupConLoss",
    "batch_diagnostics",
    "l2_normalize",
    "loss_bounds",
    "supcon_loss",
    "supcon_loss_with_stats",
]
