"""Setting up a training run: checks before the lock, then data, model, loss, optimizer, resume
and the run directory's files, gathered in a :class:`~supcon.training.run.Run`.

The order is part of the contract: cheap checks come before the data is scanned and the data
before the model is built (a batch that cannot fit says so before any weights load); the model
is built before anything else draws from the seeded RNG, so a run is reproducible from
``train.seed``; nothing is written before a resume has been checked.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from supcon.builders import (
    build_batch_sampler,
    build_loss,
    build_memory,
    build_miner,
    build_model,
    build_optimizer,
)
from supcon.config import Config, config_to_dict, config_to_yaml, resolve_defaults
from supcon.data import MultiViewDataset, Split, build_transforms, input_channels, load_splits
from supcon.data.build import describe_transforms
from supcon.data.verify import screen_splits, write_skipped
from supcon.data.workers import resolve_num_workers
from supcon.devices import resolve_device
from supcon.distributed import get_rank, get_world_size, launched_by_torchrun
from supcon.io import atomic_write_json, atomic_write_text
from supcon.messages import say
from supcon.rundir import RunDir
from supcon.training.amp import check_precision, grad_scaler
from supcon.training.checkpoint import load_checkpoint_or_previous
from supcon.training.errors import TrainingError
from supcon.training.fingerprint import data_change, data_fingerprint
from supcon.training.guard import NonFiniteGuard
from supcon.training.logging import RunLog, provenance
from supcon.training.optim import build_scheduler
from supcon.training.preflight import check_components
from supcon.training.run import Run
from supcon.training.sampling import EpochBatches
from supcon.training.state import Progress, restore_rng
from supcon.training.trackers import build_trackers
from supcon.training.trackers import check_available as check_trackers

#: Checkpoint entries a resume cannot do without (the loss's and memory's are optional).
REQUIRED_STATE = ("model", "optimizer", "scheduler", "scaler")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare(config: Config) -> Config:
    """Checks and settings that need no data and no lock; the config with its defaults resolved.

    Raises:
        TrainingError: when started by torchrun without a process group.
    """
    if config.data.color_jitter is not None and get_rank() == 0:
        say(
            "supcon train: data.color_jitter is deprecated; use augment.jitter (it is applied "
            "as augment.jitter when the preset has colour jitter, else ignored)",
        )
    config = resolve_defaults(config)  # the run directory records the automatic choices
    if launched_by_torchrun() and get_world_size() == 1:
        raise TrainingError(
            "started by torchrun but no process group is initialised; call train() inside "
            "supcon.training.distributed_session(config.train.device)"
        )
    tc = config.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    check_precision(resolve_device(tc.device), tc.precision)
    check_components(config)  # before the data is scanned
    seed_everything(tc.seed)
    return config


def setup(
    config: Config, paths: RunDir, *, progress: bool, resume: bool, allow_data_change: bool
) -> Run:
    """Everything a locked run needs, restored from ``last.pt`` when resuming.

    Args:
        config: From :func:`prepare`.
        paths: The (locked) run directory.
        progress: Show tqdm bars on rank 0.
        resume: Continue from ``paths.last``.
        allow_data_change: Resume even if the training data's fingerprint changed.

    Returns:
        The run, ready for its first (or next) epoch.
    """
    rank, world = get_rank(), get_world_size()
    tc, is_main = config.train, rank == 0
    device = resolve_device(tc.device)
    train_split, test_split, bad_images = _load_data(config, progress and is_main)
    try:
        batches = build_batch_sampler(config, train_split.labels, num_replicas=world, rank=rank)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    workers = resolve_num_workers(
        config.data.num_workers, in_memory=not hasattr(train_split, "paths")
    )
    per_rank = tc.batch_size // world

    in_chans = input_channels(config.data)
    model = build_model(config.model, in_chans, pretrained=False if resume else None)
    train_transform, eval_transform = build_transforms(
        config.data,
        model.backbone,
        config.augment,
        use_labels=config.loss.use_labels,
        resize=config.eval.resize,
    )
    dataset = MultiViewDataset(train_split, train_transform, config.data.views, seed=tc.seed)
    memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)  # type: ignore[call-overload]
    num_classes = int(train_split.labels.max()) + 1 if train_split.labeled else None
    loss_fn = build_loss(
        config.loss,
        distributed=world > 1,
        num_classes=num_classes,
        embedding_size=model.head_dim,
    ).to(device)
    memory = build_memory(config.loss, model.head_dim)
    if memory is not None:
        memory.to(device)
    # supcon mines this rank's anchors itself; a PML loss sees the gathered batch.
    gathers = getattr(loss_fn, "gather_distributed", False)
    miner = build_miner(config.miner, distributed=world > 1 and gathers)
    optimizer = build_optimizer(config.optim, model, loss_fn)
    scheduler = build_scheduler(
        optimizer,
        total_steps=tc.epochs * len(batches),
        warmup_steps=round(config.optim.warmup_epochs * len(batches)),
        min_ratio=config.optim.min_lr_ratio,
    )
    scaler = grad_scaler(device, tc.precision)
    stateful = {"model": model, "loss": loss_fn, "memory": memory, "optimizer": optimizer,
                "scheduler": scheduler, "scaler": scaler}  # fmt: skip

    fingerprint = data_fingerprint(train_split)
    state = Progress()
    if resume:
        saved = _load_resume_checkpoint(paths, fingerprint, allow_data_change, is_main)
        state = _restore(saved, stateful, config, world, is_main)

    check_trackers(tc.loggers)  # a missing tracker package stops before any file
    if is_main:
        _write_run_files(paths, config, train_split, resume, state.step, world, bad_images,
                         describe_transforms(config.augment, config.eval.resize,
                                             train_transform, eval_transform))  # fmt: skip
    logs = _open_logs(config, paths, is_main, state.step)
    epoch_batches = EpochBatches(batches)
    return Run(
        config=config,
        paths=paths,
        device=device,
        rank=rank,
        world=world,
        show_progress=progress,
        train_split=train_split,
        test_split=test_split,
        eval_transform=eval_transform,
        dataset=dataset,
        batches=epoch_batches,
        loader=_loader(dataset, epoch_batches, workers, device, tc.seed),
        steps_per_epoch=len(batches),
        workers=workers,
        micro=min(tc.micro_batch_size or per_rank, per_rank),
        in_chans=in_chans,
        model=model,
        loss_fn=loss_fn,
        memory=memory,
        miner=miner,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        watched=nn.ModuleDict({"model": model, "loss": loss_fn}),  # what the guard checks
        state=state,
        fingerprint=fingerprint,
        guard=NonFiniteGuard(tc.on_nonfinite, tc.max_nonfinite_steps, state.nonfinite_in_row),
        logs=logs,
    )


def _load_data(config: Config, progress: bool) -> tuple[Split, Split, list]:
    """The train and held-out splits, screened for bad images; refuses unusable labels."""
    train_split, test_split = load_splits(config.data, config.train.seed)
    train_split, test_split, bad_images = screen_splits(
        config.data, train_split, test_split, progress=progress
    )
    if config.loss.use_labels and not train_split.labeled:
        from supcon.losses.registry import losses

        if losses()[config.loss.name].class_based:
            raise TrainingError(
                f"loss.name={config.loss.name} learns one weight per class, so it needs "
                "labeled training data; add a label column or choose loss.name=supcon"
            )
        raise TrainingError(
            "the training data has no labels; set loss.use_labels=false to train NT-Xent on "
            "augmentation pairs, or add a label column"
        )
    return train_split, test_split, bad_images


def _load_resume_checkpoint(
    paths: RunDir, fingerprint: dict[str, Any], allow_data_change: bool, is_main: bool
) -> dict[str, Any]:
    """``last.pt`` (or ``prev.pt``), once its training data is known to match."""
    saved, used = load_checkpoint_or_previous(paths.last, who="supcon train")
    if used != paths.last and is_main:  # never rotate the unusable file into prev.pt
        paths.last.unlink(missing_ok=True)
    changed = data_change(saved.get("data_fingerprint"), fingerprint)
    if changed and not allow_data_change:
        raise TrainingError(
            f"cannot resume: {changed}; restore the data, or pass --allow-data-change "
            "to continue on the new data anyway"
        )
    if changed and is_main:
        say(f"supcon train: warning: {changed}; continuing (--allow-data-change)")
    return saved


def _restore(
    saved: dict[str, Any], stateful: dict[str, Any], config: Config, world: int, is_main: bool
) -> Progress:
    """Load every state dict and the RNG streams; the saved progress."""
    for name, part in stateful.items():
        if name in REQUIRED_STATE or (part is not None and name in saved):
            part.load_state_dict(saved[name])  # a missing required entry raises KeyError
    state = Progress(**saved["progress"])
    restore_rng(saved["rng"])
    if saved["config"]["train"].get("best_metric") != config.train.best_metric:
        state.best_value = state.best_step = None  # best.pt is re-chosen by the new metric
    if saved.get("world_size", world) != world and is_main:
        say(
            f"supcon train: resuming a {saved['world_size']}-process run with {world}; "
            "batches are the same but per-rank BatchNorm statistics differ, so the result "
            "will not be bit-identical to an uninterrupted run"
        )
    return state


def _write_run_files(
    paths: RunDir,
    config: Config,
    train_split: Split,
    resume: bool,
    step: int,
    world: int,
    bad_images: list,
    augment: str,
) -> None:
    """``config.yaml``, ``meta.json``, ``classes.json``, ``augment.txt`` (+ ``skipped.csv``)."""
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.config, config_to_yaml(config))
    meta = provenance() | {"world_size": world}
    if resume:  # the provenance of the process that finished the run, and where it began
        meta["resumed_at_step"] = step
    atomic_write_json(paths.meta, meta)
    atomic_write_json(paths.classes, {"classes": list(train_split.class_names)})
    atomic_write_text(paths.augment, augment)
    write_skipped(paths.root, bad_images)


def _open_logs(config: Config, paths: RunDir, is_main: bool, step: int) -> RunLog:
    """The run's logs and trackers (disabled off rank 0), told the resolved config."""
    tc = config.train
    trackers = (
        build_trackers(
            tc.loggers, paths.root, mlflow_uri=tc.mlflow_uri, wandb_project=tc.wandb_project
        )
        if is_main
        else []
    )
    logs = RunLog(
        paths.root,
        enabled=is_main,
        tensorboard=tc.tensorboard and "tensorboard" in tc.loggers,
        resume_step=step,
        trackers=trackers,
    )
    logs.config(config_to_dict(config))
    return logs


def _loader(
    dataset: MultiViewDataset,
    batches: EpochBatches,
    workers: int,
    device: torch.device,
    seed: int,
) -> DataLoader:
    """One loader for the whole run: its workers live across epochs; the epoch travels with
    each index, so per-sample augmentation seeds stay exact."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),  # leaves the global RNG alone
    )
