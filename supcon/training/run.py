"""What the pieces of one training run share: :class:`Run`.

:func:`supcon.training.setup.setup` builds it; :func:`supcon.training.epoch.train_one_epoch`,
:func:`supcon.training.evaluate.evaluate_run` and :func:`supcon.training.saving.checkpoint`
read and advance it. It holds objects, not behaviour: each piece is a plain function.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from supcon.config import Config
from supcon.data import MultiViewDataset, Split
from supcon.data.transforms import Transform
from supcon.losses import CrossBatchMemory
from supcon.models import EmbeddingModel
from supcon.rundir import RunDir
from supcon.training.amp import autocast
from supcon.training.guard import NonFiniteGuard
from supcon.training.logging import RunLog
from supcon.training.sampling import EpochBatches
from supcon.training.state import Progress


@dataclass
class Run:
    """One training run in progress (on this rank).

    Attributes:
        config: The resolved configuration.
        paths: The run directory (written by rank 0 only).
        device: Where this rank trains.
        rank: This process's rank (0 without torchrun).
        world: Number of processes.
        show_progress: Show tqdm bars (rank 0).
        train_split: The training images.
        test_split: The held-out images.
        eval_transform: Their deterministic transform.
        dataset: Multi-view training dataset (per-sample-seeded views).
        batches: This rank's batch order, resumable mid-epoch.
        loader: One loader for the whole run (its workers live across epochs).
        steps_per_epoch: Optimizer steps per epoch.
        workers: DataLoader workers.
        micro: Samples per GradCache micro-batch on this rank (the per-rank batch: one pass).
        in_chans: Input channels of the model.
        model: The embedding model (unwrapped).
        loss_fn: The loss module.
        memory: Cross-batch memory, if configured.
        miner: Pair miner, if configured.
        optimizer: Over :func:`supcon.training.optim.parameter_groups` (+ the loss's group).
        scheduler: Per-step warmup + cosine schedule.
        scaler: AMP gradient scaler (disabled outside float16).
        watched: The modules the non-finite guard checks (model and loss).
        state: Where training stands (saved in every checkpoint).
        fingerprint: The training data's fingerprint (saved; checked on resume).
        guard: Decides what a non-finite step does.
        logs: CSV logs, TensorBoard and trackers (no-ops off rank 0).
        probe: A few images of the latest good batch, to check a checkpoint's model with.
        train_model: ``model`` as trained: DDP- and ``torch.compile``-wrapped when asked.
        ddp: The DDP wrapper under torchrun, else ``None``.
        started: ``time.perf_counter()`` when training started (``elapsed_s`` in the log).
    """

    config: Config
    paths: RunDir
    device: torch.device
    rank: int
    world: int
    show_progress: bool
    train_split: Split
    test_split: Split
    eval_transform: Transform | None
    dataset: MultiViewDataset
    batches: EpochBatches
    loader: DataLoader
    steps_per_epoch: int
    workers: int
    micro: int
    in_chans: int
    model: EmbeddingModel
    loss_fn: nn.Module
    memory: CrossBatchMemory | None
    miner: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    watched: nn.Module
    state: Progress
    fingerprint: dict[str, Any]
    guard: NonFiniteGuard
    logs: RunLog
    probe: Tensor | None = None
    train_model: Any = None
    ddp: Any = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes to the run directory."""
        return self.rank == 0

    @property
    def views(self) -> int:
        """Augmented views per sample."""
        return self.config.data.views

    @property
    def memory_format(self) -> torch.memory_format:
        """Layout of image batches (``train.channels_last``)."""
        return torch.channels_last if self.config.train.channels_last else torch.contiguous_format

    def amp(self) -> AbstractContextManager:
        """A fresh mixed-precision context of ``train.precision``."""
        return autocast(self.device, self.config.train.precision)

    def stateful(self) -> dict[str, Any]:
        """Everything with a ``state_dict`` that a checkpoint saves, by checkpoint key."""
        parts: dict[str, Any] = {"model": self.model, "loss": self.loss_fn}
        if self.memory is not None:
            parts["memory"] = self.memory
        return parts | {
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
        }
