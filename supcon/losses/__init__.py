"""Contrastive losses: a functional core (:mod:`.functional`) and thin modules around it."""

from supcon.losses.functional import LossStats, supcon_loss, supcon_loss_with_stats
from supcon.losses.supcon import SupConLoss

__all__ = ["LossStats", "SupConLoss", "supcon_loss", "supcon_loss_with_stats"]
