"""Optimizer parameter groups, the warmup + cosine schedule and backbone freezing."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from supcon.errors import ConfigError

BACKBONE, BACKBONE_NO_DECAY = "backbone", "backbone_no_decay"
HEAD, HEAD_NO_DECAY = "head", "head_no_decay"  # the head and every parameter outside the backbone
LOSS = "loss"  # a loss's own parameters (proxies, class weights): see add_loss_group
GROUP_NAMES = (BACKBONE, BACKBONE_NO_DECAY, HEAD, HEAD_NO_DECAY)


def parameter_groups(
    model: nn.Module, *, lr: float, weight_decay: float, backbone_lr: float | None = None
) -> list[dict]:
    """Split parameters by part (backbone vs the rest) and by decay.

    Norm weights and biases (every tensor with ≤ 1 dimension, GeM's exponent included) get no
    weight decay. Parameters of ``model.backbone`` (when it has one) use ``backbone_lr``; the
    head and everything else use ``lr``. Frozen parameters are included, so unfreezing later
    needs no new optimizer.

    The decay rule matches timm's ``timm.optim.param_groups_weight_decay`` (no decay for
    tensors of ≤ 1 dimension, biases included), but timm's function is not used: it leaves
    out frozen parameters, merges everything into one group when ``weight_decay`` is 0 (which
    would change the optimizer-state layout of checkpoints saved that way) and knows no
    backbone / head split.

    Args:
        model: The model to optimise.
        lr: Learning rate outside the backbone.
        weight_decay: Decay of weight matrices and kernels.
        backbone_lr: Learning rate of the backbone (``None``: ``lr``).

    Returns:
        Non-empty parameter groups, each with ``name``, ``lr`` and ``weight_decay`` keys,
        named from :data:`GROUP_NAMES`.
    """
    backbone = getattr(model, "backbone", None)
    in_backbone = set()
    if isinstance(backbone, nn.Module):
        in_backbone = {id(p) for p in backbone.parameters()}
    buckets: dict[str, list[nn.Parameter]] = {name: [] for name in GROUP_NAMES}
    for param in model.parameters():
        decays = param.ndim > 1
        if id(param) in in_backbone:
            buckets[BACKBONE if decays else BACKBONE_NO_DECAY].append(param)
        else:
            buckets[HEAD if decays else HEAD_NO_DECAY].append(param)
    rate = lr if backbone_lr is None else backbone_lr
    rates = {BACKBONE: rate, BACKBONE_NO_DECAY: rate, HEAD: lr, HEAD_NO_DECAY: lr}
    return [
        {
            "name": name,
            "params": params,
            "lr": rates[name],
            "weight_decay": weight_decay if name in (BACKBONE, HEAD) else 0.0,
        }
        for name, params in buckets.items()
        if params
    ]


def create_optimizer(
    model: nn.Module,
    name: str = "adamw",
    *,
    lr: float,
    weight_decay: float,
    backbone_lr: float | None = None,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov momentum) over :func:`parameter_groups`.

    Args:
        model: The model to optimise.
        name: ``"adamw"`` or ``"sgd"``.
        lr: Peak learning rate outside the backbone.
        weight_decay: Decay of weight matrices and kernels.
        backbone_lr: Peak learning rate of the backbone (``None``: ``lr``).
        momentum: SGD momentum.

    Returns:
        The optimizer.
    """
    groups = parameter_groups(model, lr=lr, weight_decay=weight_decay, backbone_lr=backbone_lr)
    if name == "adamw":
        return fused_if_available(torch.optim.AdamW, groups, lr=lr)
    if name == "sgd":
        return fused_if_available(
            torch.optim.SGD, groups, lr=lr, momentum=momentum, nesterov=momentum > 0
        )
    raise ConfigError(f"optim.name must be 'adamw' or 'sgd', got {name!r}")


def fused_if_available(
    optimizer_class: Callable[..., torch.optim.Optimizer], groups: list[dict], **options: Any
) -> torch.optim.Optimizer:
    """``optimizer_class`` with PyTorch's fused kernel where the parameters' device has one.

    The fused kernel updates every parameter in one pass instead of a chain of element-wise
    ops per tensor: on one CPU thread a ResNet-18's AdamW step takes about 1/5 of the default
    implementation's time (``benchmarks/bench_optimizer.py``), on GPUs it is the fastest path
    too. Same update rule (float rounding aside). PyTorch before 2.4 has no CPU fused kernel
    and refuses ``fused=True`` when the optimizer is built; the default implementation is used
    then. A checkpoint's optimizer state keeps the choice it was written with on resume.
    """
    try:
        return optimizer_class(groups, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for these parameters
        return optimizer_class(groups, **options)


def add_loss_group(optimizer: torch.optim.Optimizer, loss: nn.Module, lr: float) -> bool:
    """Give a loss's parameters (proxies, class weights) their own ``"loss"`` group.

    Proxy losses are normalised inside (cosine to each proxy), so weight decay would only
    change their effective step size: the group has none. Proxy Anchor (Kim et al., CVPR
    2020) trains its proxies 100× faster than the backbone; see ``optim.loss_lr``.

    Args:
        optimizer: Built over the model's groups.
        loss: The loss module.
        lr: Peak learning rate of the group (scaled by the schedule like the others).

    Returns:
        Whether a group was added (``False`` for a loss without parameters).
    """
    params = [p for p in loss.parameters() if p.requires_grad]
    if not params:
        return False
    optimizer.add_param_group({"name": LOSS, "params": params, "lr": lr, "weight_decay": 0.0})
    return True


def group_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The current learning rate of each named parameter group (names from this module)."""
    return {group["name"]: group["lr"] for group in optimizer.param_groups}


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warmup to 1, then cosine decay to ``min_ratio``.

    Args:
        step: Optimizer steps taken so far.
        total_steps: Steps in the whole run.
        warmup_steps: Steps of linear warmup.
        min_ratio: Final multiplier.

    Returns:
        The multiplier for this step.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step :func:`warmup_cosine` schedule (scales every group's peak rate alike).

    Not timm's ``CosineLRScheduler``: its floor and warmup start are one absolute rate for all
    groups, where here each group keeps ``min_ratio`` of its own peak (head, backbone and loss
    groups have different peaks); see ``benchmarks/schedule_vs_timm.py``.
    """
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total_steps, warmup_steps, min_ratio)
    )


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze or unfreeze ``model.backbone``.

    Frozen: no gradients and eval mode (BatchNorm statistics stay put, dropout is off), so the
    backbone's state dict does not change. Unfrozen: gradients on; the train/eval mode follows
    ``model``'s.

    Args:
        model: A model with a ``backbone`` attribute.
        frozen: Freeze (``True``) or unfreeze.
    """
    backbone = model.get_submodule("backbone")
    for param in backbone.parameters():
        param.requires_grad_(not frozen)
    backbone.train(False if frozen else model.training)
