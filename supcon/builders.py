"""Builders: the only place that reads the config object to construct components.

Components (model, loss, data) take plain arguments; these functions map recipe sections onto
them, so library code never depends on the config layout.
"""

from __future__ import annotations

from supcon.config import LossConfig, ModelConfig
from supcon.losses import SupConLoss
from supcon.models import EmbeddingModel, create_backbone


def build_model(
    config: ModelConfig, in_chans: int, *, pretrained: bool | None = None
) -> EmbeddingModel:
    """The embedding model of a recipe.

    Args:
        config: The ``model:`` section.
        in_chans: Input image channels.
        pretrained: Override ``config.pretrained`` (e.g. ``False`` when a checkpoint follows).

    Returns:
        The model, in train mode on the CPU.
    """
    use_pretrained = config.pretrained if pretrained is None else pretrained
    backbone = create_backbone(config.backbone, pretrained=use_pretrained, in_chans=in_chans)
    return EmbeddingModel(backbone, config.embedding_dim, config.head)


def build_loss(config: LossConfig) -> SupConLoss:
    """The loss of a recipe."""
    return SupConLoss(
        config.temperature,
        base_temperature=config.base_temperature,
        contrast_mode=config.contrast_mode,
    )
