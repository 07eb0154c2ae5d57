"""Builders: the only place that reads the config object to construct components.

Components (model, loss, miner, sampler, optimizer) take plain arguments; these functions map
recipe sections onto them, so library code never depends on the config layout.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from supcon.config import Config, LossConfig, MinerConfig, ModelConfig, OptimConfig
from supcon.losses import SupConLoss
from supcon.models import EmbeddingModel, GeM, create_backbone

if TYPE_CHECKING:
    from supcon.training.sampling import BatchSampler


def build_model(
    config: ModelConfig, in_chans: int, *, pretrained: bool | None = None
) -> EmbeddingModel:
    """The embedding model of a recipe.

    Args:
        config: The ``model:`` section.
        in_chans: Input image channels.
        pretrained: ``False`` skips pretrained weights (``model.weights`` included), e.g. when
            a checkpoint is loaded next; ``None`` follows the config.

    Returns:
        The model, in train mode on the CPU.
    """
    use_pretrained = config.pretrained if pretrained is None else pretrained
    weights = config.weights if pretrained is not False else None
    backbone = create_backbone(
        config.backbone,
        pretrained=use_pretrained,
        in_chans=in_chans,
        weights=weights,
        pool=config.pool,
        drop_rate=config.drop_rate,
        drop_path_rate=config.drop_path_rate,
    )
    pool = GeM(config.gem_p) if config.pool == "gem" else None
    return EmbeddingModel(
        backbone, config.embedding_dim, config.head, pool=pool, embedding=config.embedding
    )


def build_loss(config: LossConfig, *, distributed: bool = False) -> SupConLoss:
    """The loss of a recipe.

    Args:
        config: The ``loss:`` section.
        distributed: Training under DDP: contrast against every rank's rows
            (``gather_distributed=True``), with exact full-batch gradients.
    """
    return SupConLoss(
        config.temperature,
        base_temperature=config.base_temperature,
        contrast_mode=config.contrast_mode,
        gather_distributed=distributed,
    )


def build_optimizer(config: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of a recipe: AdamW or SGD with backbone / head groups (see ``optim:``)."""
    from supcon.training.optim import build_optimizer as make_optimizer

    return make_optimizer(
        model,
        config.name,
        lr=config.lr,
        weight_decay=config.weight_decay,
        backbone_lr=config.backbone_lr,
        momentum=config.momentum,
    )


def build_batch_sampler(
    config: Config, labels: np.ndarray, *, num_replicas: int = 1, rank: int = 0
) -> BatchSampler:
    """The training batch sampler of a recipe, for this rank.

    ``train.batch_size`` is the global batch; each of ``num_replicas`` ranks draws
    ``batch_size / num_replicas`` of it.

    Args:
        config: The whole config (``sampler:`` and ``train:`` sections).
        labels: ``(N,)`` class ids of the training split.
        num_replicas: Number of ranks.
        rank: This rank.

    Returns:
        A batch sampler yielding this rank's index lists, with ``set_epoch``.

    Raises:
        ValueError: when the data and settings cannot form a batch; the message says what to
            change.
    """
    from supcon.training.sampling import RandomBatchSampler

    batch_size, seed = config.train.batch_size, config.train.seed
    name, args = config.sampler.name, dict(config.sampler.args)
    if name == "random":
        if args:
            raise ValueError(f"sampler 'random' takes no args, got {sorted(args)}")
        return RandomBatchSampler(
            len(labels), batch_size, num_replicas=num_replicas, rank=rank, seed=seed
        )
    if batch_size % num_replicas:
        raise ValueError(
            f"train.batch_size={batch_size} does not split evenly over {num_replicas} "
            f"processes; use a multiple of {num_replicas}"
        )
    from supcon.samplers import build_sampler

    per_rank = batch_size // num_replicas
    try:
        return build_sampler(
            name,
            labels,
            batch_size=per_rank,
            num_replicas=num_replicas,
            rank=rank,
            seed=seed,
            **args,
        )
    except ValueError as exc:
        where = f" over {num_replicas} processes" if num_replicas > 1 else ""
        raise ValueError(
            f"sampler.name={name}: {exc} (batch_size here is train.batch_size={batch_size}"
            f"{where}, {per_rank} per process)"
        ) from None


def build_miner(config: MinerConfig, *, distributed: bool = False) -> nn.Module | None:
    """The miner of a recipe (``None`` for ``miner.name: none``).

    Args:
        config: The ``miner:`` section.
        distributed: Training under DDP: a miner that can gather (``topk``) mines this rank's
            anchors against every rank's rows; the others are run on the gathered batch by
            :func:`supcon.training.contrast.batch_loss`.
    """
    if config.name == "none":
        if config.args:
            raise ValueError(f"miner 'none' takes no args, got {sorted(config.args)}")
        return None
    from supcon.miners import MINERS
    from supcon.miners import build_miner as make_miner

    args = dict(config.args)
    accepted = inspect.signature(MINERS[config.name]).parameters if config.name in MINERS else {}
    if distributed and "gather_distributed" in accepted:
        args.setdefault("gather_distributed", True)
    return make_miner(config.name, **args)
