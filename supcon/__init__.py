"""supcon: supervised contrastive (SupCon / NT-Xent) metric learning for PyTorch."""

__version__ = "0.1.0"

from supcon.evaluation.metrics import retrieval_metrics
from supcon.losses import (
    BatchDiagnostics,
    CrossBatchMemory,
    LossStats,
    SupConLoss,
    batch_diagnostics,
    loss_bounds,
    supcon_loss,
)

__all__ = [
    "BatchDiagnostics",
    "CrossBatchMemory",
    "LossStats",
    "SupConLoss",
    "__version__",
    "batch_diagnostics",
    "loss_bounds",
    "retrieval_metrics",
    "supcon_loss",
]
