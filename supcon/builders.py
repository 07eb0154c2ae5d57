"""Builders: recipe sections in, components out.

Components (model, loss, miner, sampler, optimizer) take plain arguments; these functions map
recipe sections onto them, so library code never depends on the config layout. Naming rule:
``build_<thing>(config_section, ...)`` reads the config (here, and the data builders
``supcon.data.build.load_splits`` / ``build_transforms``, which map ``data:`` and ``augment:``);
``create_<thing>(name, **arguments)`` makes one by registry name from plain arguments
(:func:`supcon.miners.create_miner`, :func:`supcon.losses.registry.create_loss`,
:func:`supcon.training.optim.create_optimizer`, :func:`supcon.samplers.create_sampler`).
Components never see the config object; the loop, ``supcon.runs`` and the commands hand its
sections to these builders (``tests/test_architecture.py`` keeps components below them).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from supcon.arguments import reject_arguments
from supcon.config import Config, LossConfig, MinerConfig, ModelConfig, OptimConfig
from supcon.losses import CrossBatchMemory
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


def build_loss(
    config: LossConfig,
    *,
    distributed: bool = False,
    num_classes: int | None = None,
    embedding_size: int | None = None,
) -> nn.Module:
    """The loss of a recipe, from the loss registry (``supcon.losses.registry``).

    Args:
        config: The ``loss:`` section.
        distributed: Training under DDP: ``supcon`` contrasts against every rank's rows
            (``gather_distributed=True``), with exact full-batch gradients. PML losses are
            called on the gathered batch by :func:`supcon.training.criterion.step_loss`.
        num_classes: Classes of the training data, for losses with one weight per class.
        embedding_size: Dimension of the embeddings the loss sees (the head output).

    Raises:
        ValueError: for an unknown loss or argument (listing the valid ones), or a class-based
            loss without ``num_classes``.
    """
    from supcon.losses.registry import DEFAULT_LOSS, create_loss, losses

    if config.name == DEFAULT_LOSS:
        args = {
            "temperature": config.temperature,
            "base_temperature": config.base_temperature,
            "contrast_mode": config.contrast_mode,
            "hcl_beta": config.hcl_beta,
            "path": config.path,
            "block_size": config.block_size,
            "gather_distributed": distributed,
        }
        return create_loss(DEFAULT_LOSS, args)
    if losses()[config.name].class_based and num_classes is None:
        raise ValueError(f"loss.name={config.name} needs num_classes (labeled training data)")
    loss = create_loss(
        config.name, config.args, num_classes=num_classes, embedding_size=embedding_size
    )
    if config.memory_size == 0:
        return loss
    from supcon.losses.pml_memory import ResumableCrossBatchMemory

    if embedding_size is None:
        raise ValueError("loss.memory_size needs the embedding size")
    return ResumableCrossBatchMemory(loss, embedding_size, memory_size=config.memory_size)


def build_memory(config: LossConfig, embedding_size: int) -> CrossBatchMemory | None:
    """The cross-batch memory of ``supcon`` (``None`` for ``loss.memory_size: 0``).

    PML losses get PML's own memory wrapper from :func:`build_loss` instead.

    Args:
        config: The ``loss:`` section.
        embedding_size: Dimension of the embeddings the loss sees.
    """
    from supcon.losses.registry import DEFAULT_LOSS

    if config.memory_size == 0 or config.name != DEFAULT_LOSS:
        return None
    return CrossBatchMemory(config.memory_size, embedding_size, gather_distributed=True)


def build_optimizer(
    config: OptimConfig, model: nn.Module, loss: nn.Module | None = None
) -> torch.optim.Optimizer:
    """The optimizer of a recipe: AdamW or SGD with backbone / head groups (see ``optim:``).

    A loss with parameters (proxies, class weights) adds a ``"loss"`` group at
    ``optim.loss_lr`` (default 10 × ``optim.lr``) without weight decay.
    """
    from supcon.training.optim import add_loss_group, create_optimizer

    optimizer = create_optimizer(
        model,
        config.name,
        lr=config.lr,
        weight_decay=config.weight_decay,
        backbone_lr=config.backbone_lr,
        momentum=config.momentum,
    )
    if loss is not None:
        add_loss_group(
            optimizer, loss, config.lr * 10 if config.loss_lr is None else config.loss_lr
        )
    return optimizer


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
        reject_arguments("sampler", "random", args, noun="args")
        return RandomBatchSampler(
            len(labels), batch_size, num_replicas=num_replicas, rank=rank, seed=seed
        )
    if batch_size % num_replicas:
        raise ValueError(
            f"train.batch_size={batch_size} does not split evenly over {num_replicas} "
            f"processes; use a multiple of {num_replicas}"
        )
    from supcon.samplers import create_sampler
    from supcon.samplers.fit import m_per_class_problem

    if name == "m_per_class" and isinstance(args.get("m"), int):
        problem = m_per_class_problem(labels, batch_size, args["m"], num_replicas)
        if problem:
            raise ValueError(problem)
    per_rank = batch_size // num_replicas
    try:
        return create_sampler(
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
        reject_arguments("miner", "none", config.args, noun="args")
        return None
    from supcon.miners import MINERS, create_miner

    args = dict(config.args)
    accepted = inspect.signature(MINERS[config.name]).parameters if config.name in MINERS else {}
    if distributed and "gather_distributed" in accepted:
        args.setdefault("gather_distributed", True)
    return create_miner(config.name, **args)
