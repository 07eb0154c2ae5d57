"""``EmbeddingModel``: a timm backbone with a projection head and L2-normalised output."""

from __future__ import annotations

import difflib

import timm
import torch.nn.functional as F
from torch import Tensor, nn


def create_backbone(name: str, *, pretrained: bool = False, in_chans: int = 3) -> nn.Module:
    """Create a timm model without its classifier (``num_classes=0``).

    Args:
        name: A ``timm.list_models()`` name.
        pretrained: Load timm's pretrained weights (needs them cached or a network).
        in_chans: Input channels.

    Returns:
        The backbone; ``backbone.num_features`` is its pooled feature width.

    Raises:
        ValueError: for an unknown model name, suggesting close names.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See timm.list_models()."
        raise ValueError(f"unknown timm model {name!r}.{hint}")
    return timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=in_chans)


def projection_head(in_features: int, out_features: int, kind: str) -> nn.Module:
    """SimCLR-style head.

    Args:
        in_features: Backbone feature width.
        out_features: Embedding dimension.
        kind: ``"mlp"`` (Linear-BN-ReLU-Linear), ``"linear"`` or ``"none"`` (identity).

    Returns:
        The head module.
    """
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(in_features, in_features, bias=False),
            nn.BatchNorm1d(in_features),
            nn.ReLU(inplace=True),
            nn.Linear(in_features, out_features),
        )
    if kind == "linear":
        return nn.Linear(in_features, out_features)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"head must be 'mlp', 'linear' or 'none', got {kind!r}.")


class EmbeddingModel(nn.Module):
    """timm backbone → projection head → L2 normalisation.

    Args:
        backbone: A module mapping ``(B, C, H, W)`` to ``(B, F)`` with attribute ``num_features``.
        embedding_dim: Output dimension (ignored when ``head="none"``).
        head: ``"mlp"``, ``"linear"`` or ``"none"``.
    """

    def __init__(self, backbone: nn.Module, embedding_dim: int = 128, head: str = "mlp") -> None:
        super().__init__()
        self.backbone = backbone
        features = int(backbone.num_features)
        self.head = projection_head(features, embedding_dim, head)
        self.embedding_dim = features if head == "none" else embedding_dim

    def forward(self, images: Tensor) -> Tensor:
        """Embed images.

        Args:
            images: ``(B, C, H, W)``.

        Returns:
            ``(B, embedding_dim)`` unit-norm embeddings.
        """
        return F.normalize(self.head(self.backbone(images)), dim=-1)
