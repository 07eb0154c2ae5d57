"""``EmbeddingModel``: a timm backbone, global pooling, a projection head and L2 normalisation."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, cast

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from supcon.errors import InputError

TIMM_POOLS = ("avg", "max", "avgmax", "catavgmax", "token")
POOLS = ("default", *TIMM_POOLS, "gem")
EMBEDDINGS = ("head", "backbone")


def _unknown_model_error(name: str) -> InputError:
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else " See timm.list_models()."
    return InputError(f"unknown timm model {name!r}.{hint}")


def create_backbone(
    name: str,
    *,
    pretrained: bool = False,
    in_chans: int = 3,
    weights: str | Path | None = None,
    pool: str = "default",
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """Create a timm model without its classifier (``num_classes=0``).

    Args:
        name: A ``timm.list_models()`` name.
        pretrained: Load pretrained weights: from ``weights`` when given, else timm's (the
            Hugging Face hub or its local cache).
        in_chans: Input channels (timm adapts pretrained first-layer weights).
        weights: Local weights file; implies ``pretrained``. See :func:`load_backbone_weights`.
        pool: ``"default"`` (the model's own global pooling), a timm pool type (``"avg"``,
            ``"max"``, ``"avgmax"``, ``"catavgmax"``, ``"token"``), or ``"gem"``: no pooling
            here, so the backbone returns ``(B, C, H, W)`` feature maps for :class:`GeM`.
        drop_rate: timm's ``drop_rate`` (dropout of the pooled features); passed only if > 0.
        drop_path_rate: timm's ``drop_path_rate`` (stochastic depth); passed only if > 0.

    Returns:
        The backbone; its output width is :func:`feature_dim`.

    Raises:
        ValueError: for an unknown model name (suggesting close names), a missing or
            mismatched weights file, or pretrained weights that cannot be fetched (offline).
    """
    if not timm.is_model(name):
        raise _unknown_model_error(name)
    if pool not in POOLS:
        raise InputError(f"pool must be one of {', '.join(POOLS)}; got {pool!r}.")
    kwargs: dict = {"num_classes": 0, "in_chans": in_chans}
    if pool == "gem":
        kwargs["global_pool"] = ""
    elif pool != "default":
        kwargs["global_pool"] = pool
    if drop_rate > 0:
        kwargs["drop_rate"] = drop_rate
    if drop_path_rate > 0:
        kwargs["drop_path_rate"] = drop_path_rate
    if weights is not None:
        backbone = timm.create_model(name, pretrained=False, **kwargs)
        load_backbone_weights(backbone, weights, in_chans)
        return backbone
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    from supcon.hub import hub_offline_mode, hub_unreachable

    unreachable = hub_unreachable()  # ≤ 1.5 s; offline, only the local cache is tried
    try:
        with hub_offline_mode(unreachable is not None):
            return timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, RuntimeError) as exc:  # hub errors are OSErrors; "no weights" RuntimeError
        why = f"hub unreachable: {unreachable}" if unreachable else type(exc).__name__
        raise InputError(
            f"cannot get pretrained weights for {name!r} ({why}). Offline? "
            f"On a machine with a network run timm.create_model({name!r}, pretrained=True), "
            "save its state_dict with safetensors.torch.save_file and set model.weights=FILE; "
            "or set model.pretrained=false to start from random weights"
        ) from None


def _timm_cfg(backbone: nn.Module) -> dict[str, Any]:
    """The ``pretrained_cfg`` dict timm sets on every model it creates."""
    return cast("dict[str, Any]", backbone.pretrained_cfg)


def _classifier_keys(backbone: nn.Module) -> tuple[str, ...]:
    names = _timm_cfg(backbone).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{n}.{suffix}" for n in names for suffix in ("weight", "bias"))


def load_backbone_weights(backbone: nn.Module, path: str | Path, in_chans: int = 3) -> None:
    """Load a local weights file into a ``num_classes=0`` timm backbone, strictly.

    The file is a ``.safetensors`` file or a ``torch.save``'d state dict (read with
    ``weights_only=True``), possibly nested under ``state_dict`` / ``model`` / EMA keys and
    prefixed by DDP or ``torch.compile`` wrappers, as timm reads checkpoints. Classifier weights
    are dropped and a 3-channel first convolution is adapted to ``in_chans`` as timm does for
    hub weights. Every backbone tensor must come from the file: unlike timm's own pretrained
    loader (lenient once the classifier changes), a missing or unexpected key is an error.

    Raises:
        ValueError: for a missing file or weights that do not fit the backbone.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"model.weights file {str(path)!r} not found; pass a .safetensors or .pt/.pth "
            "state dict of the backbone"
        )
    name = _timm_cfg(backbone).get("architecture", type(backbone).__name__)
    try:
        state = timm.models.load_state_dict(str(path))
    except Exception as exc:  # unreadable or unsafe pickle: report, do not crash
        raise InputError(
            f"cannot read model.weights {str(path)!r} ({type(exc).__name__}: {exc}); save the "
            "backbone's state_dict with safetensors.torch.save_file or torch.save"
        ) from None
    for key in _classifier_keys(backbone):
        state.pop(key, None)
    first_conv = _timm_cfg(backbone).get("first_conv")
    for conv in (first_conv,) if isinstance(first_conv, str) else first_conv or ():
        key = f"{conv}.weight"
        if key in state and state[key].ndim == 4 and state[key].shape[1] != in_chans:
            state[key] = timm.models.adapt_input_conv(in_chans, state[key])
    expected = backbone.state_dict().keys()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing tensor(s) ({', '.join(missing[:3])} ...)")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])} ...)")
        raise InputError(
            f"model.weights {str(path)!r} does not fit timm model {name!r}: "
            f"{'; '.join(problems)}. Check model.backbone matches the weights"
        )
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise InputError(
            f"model.weights {str(path)!r} does not fit timm model {name!r}: {detail}"
        ) from None


def feature_dim(backbone: nn.Module) -> int:
    """Width of a ``num_classes=0`` timm backbone's output (channels of unpooled maps).

    timm's ``head_hidden_size`` accounts for pools that change the width (``catavgmax``) and
    for models with a hidden layer after pooling (MobileNetV3); ``num_features`` is the fallback.
    """
    width = getattr(backbone, "head_hidden_size", None) or backbone.num_features
    return int(cast("int", width))


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al., TPAMI 2018) with a learnable exponent.

    ``GeM(x)_c = (mean_{h,w} max(x_chw, eps)^p)^(1/p)``: ``p = 1`` is average pooling and
    ``p → ∞`` approaches max pooling. Computed in float32.

    Args:
        p: Initial exponent (3 is the usual choice for retrieval).
        eps: Lower clamp keeping the power defined.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        if p <= 0:
            raise InputError(f"GeM p must be > 0, got {p}.")
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, features: Tensor) -> Tensor:
        """Pool feature maps.

        Args:
            features: ``(B, C, H, W)``.

        Returns:
            ``(B, C)``.
        """
        if features.ndim != 4:
            raise InputError(
                f"model.pool=gem needs (B, C, H, W) feature maps from a convolutional backbone; "
                f"this backbone returns shape {tuple(features.shape)}. Use model.pool=avg or "
                "token for transformers"
            )
        p = self.p.float()
        pooled = features.float().clamp(min=self.eps).pow(p).mean(dim=(-2, -1))
        return pooled.pow(1.0 / p)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}, eps={self.eps}"


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
    raise InputError(f"head must be 'mlp', 'linear' or 'none', got {kind!r}.")


class EmbeddingModel(nn.Module):
    """timm backbone → (GeM) pooling → projection head → L2 normalisation.

    The loss trains the head's output (``forward(x, output="head")``); ``forward(x)`` returns
    the retrieval embedding chosen by ``embedding``, which is what evaluation, ``embed`` and
    ``index`` use.

    Args:
        backbone: A ``num_classes=0`` timm model mapping ``(B, C, H, W)`` to ``(B, F)``, or to
            feature maps when ``pool`` pools them.
        embedding_dim: Head output dimension (ignored when ``head="none"``).
        head: ``"mlp"``, ``"linear"`` or ``"none"``.
        pool: Module applied to the backbone output (e.g. :class:`GeM`); ``None``: the
            backbone pools itself.
        embedding: The retrieval embedding: ``"head"`` or ``"backbone"`` (pooled features).
    """

    def __init__(
        self,
        backbone: nn.Module,
        embedding_dim: int = 128,
        head: str = "mlp",
        *,
        pool: nn.Module | None = None,
        embedding: str = "head",
    ) -> None:
        super().__init__()
        if embedding not in EMBEDDINGS:
            raise InputError(f"embedding must be 'head' or 'backbone', got {embedding!r}.")
        self.backbone = backbone
        self.pool = pool if pool is not None else nn.Identity()
        features = feature_dim(backbone)
        self.head = projection_head(features, embedding_dim, head)
        self.embedding = embedding
        self.feature_dim = features
        self.head_dim = features if head == "none" else embedding_dim
        self.embedding_dim = features if embedding == "backbone" else self.head_dim

    def forward(self, images: Tensor, output: str | None = None) -> Tensor:
        """Embed images.

        Args:
            images: ``(B, C, H, W)``.
            output: ``"head"`` (what the loss trains), ``"backbone"`` (pooled features), or
                ``None`` for the retrieval embedding chosen at construction.

        Returns:
            ``(B, D)`` unit-norm embeddings.
        """
        features = self.pool(self.backbone(images))
        if (output or self.embedding) == "backbone":
            return F.normalize(features, dim=-1)
        return F.normalize(self.head(features), dim=-1)
