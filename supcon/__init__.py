"""supcon: supervised contrastive (SupCon / NT-Xent) metric learning for PyTorch."""

__version__ = "0.1.0"

from supcon.evaluation.metrics import retrieval_metrics
from supcon.losses import LossStats, SupConLoss, supcon_loss

__all__ = ["LossStats", "SupConLoss", "__version__", "retrieval_metrics", "supcon_loss"]
