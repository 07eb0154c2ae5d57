"""The training loop: data → views → model → (miner) → SupCon loss → optimizer, then evaluation.

Read top to bottom: setup (data, model, optimizer, resume), the epoch loop with one optimizer
step per batch, checkpoints and periodic evaluation, and the final evaluation. One process or
many (``torchrun``): ``train.batch_size`` is the global batch, each rank embeds its share, the
loss contrasts the whole batch and only rank 0 writes to the run directory.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from supcon.builders import (
    build_batch_sampler,
    build_loss,
    build_memory,
    build_miner,
    build_model,
    build_optimizer,
)
from supcon.config import Config, config_to_dict, config_to_yaml, resolve_defaults
from supcon.data import MultiViewDataset, build_transforms, input_channels, load_splits
from supcon.data.build import describe_transforms
from supcon.data.verify import screen_splits, write_skipped
from supcon.data.workers import resolve_num_workers
from supcon.devices import resolve_device
from supcon.distributed import (
    broadcast_buffers,
    get_rank,
    get_world_size,
    launched_by_torchrun,
    mean_over_ranks,
)
from supcon.io import atomic_write_json, atomic_write_text
from supcon.training.amp import autocast, check_precision, grad_scaler
from supcon.training.checkpoint import (
    load_checkpoint_or_previous,
    save_checkpoint,
    save_rotating,
)
from supcon.training.criterion import average_loss_gradients, step_loss
from supcon.training.evaluate import evaluate
from supcon.training.fingerprint import data_change, data_fingerprint
from supcon.training.gradcache import cached_backward
from supcon.training.guard import (
    NonFiniteGuard,
    eval_problem,
    nonfinite_state,
    restore_buffers,
    snapshot_buffers,
    step_problem,
)
from supcon.training.lock import run_lock
from supcon.training.logging import RunLog, provenance
from supcon.training.monitor import diagnose, warn_if_collapsed
from supcon.training.optim import build_scheduler, set_backbone_frozen
from supcon.training.preempt import Preempted, StopSignals
from supcon.training.preflight import check_components
from supcon.training.sampling import EpochBatches
from supcon.training.state import Progress, capture_rng, restore_rng
from supcon.training.trackers import build_trackers
from supcon.training.trackers import check_available as check_trackers


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, impossible batch); the message says why."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _wrap(model: nn.Module, device: torch.device, compile_model: bool) -> tuple[Any, Any]:
    """``(train_model, ddp)``: DDP under torchrun, then ``torch.compile`` if asked."""
    ddp = None
    if get_world_size() > 1:
        # Buffers (BatchNorm statistics) stay per rank: broadcasting them from rank 0 at every
        # forward would also clash with GradCache's re-runs. Rank 0's are the ones saved.
        ddp = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )
    train_model = ddp if ddp is not None else model
    if compile_model:
        train_model = torch.compile(train_model)
    return train_model, ddp


def _checkpoint(
    model: nn.Module,
    criterion: dict[str, nn.Module | None],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    progress: Progress,
    config: Config,
    in_chans: int,
    class_names: tuple[str, ...],
) -> dict[str, Any]:
    """Everything ``--resume`` needs, plus what :func:`supcon.runs.load_run` reads."""
    return {
        "model": model.state_dict(),
        **{name: part.state_dict() for name, part in criterion.items() if part is not None},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": capture_rng(),
        "progress": progress.to_dict(),
        "epoch": progress.epoch,
        "step": progress.step,
        "world_size": get_world_size(),
        "config": config_to_dict(config),
        "in_chans": in_chans,
        "class_names": list(class_names),
    }


def _agree(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag raised on any rank (one small all-reduce under torchrun)."""
    if get_world_size() == 1:
        return flags
    values = torch.tensor([float(f) for f in flags], device=device)
    return [bool(v > 0) for v in mean_over_ranks(values)]


def train(
    config: Config,
    run_dir: str | Path,
    *,
    progress: bool = True,
    resume: bool = False,
    allow_data_change: bool = False,
) -> dict[str, float]:
    """Train on the configured data, evaluate on the held-out split and fill ``run_dir``.

    Writes ``config.yaml``, ``meta.json``, ``classes.json``, ``log.csv`` (and ``eval.csv``,
    TensorBoard events), ``checkpoints/last.pt`` (+ ``best.pt`` with ``train.eval_every``) and
    ``metrics.json`` into ``run_dir``; under torchrun every rank evaluates (so the evaluator can
    shard the embedding) but only rank 0 writes, and the process group
    must already be initialised (:func:`supcon.training.distributed.distributed_session`).

    Args:
        config: The resolved run configuration.
        run_dir: Output folder (created).
        progress: Show tqdm bars (rank 0).
        resume: Continue from ``run_dir/checkpoints/last.pt``: model, optimizer, scheduler,
            gradient scaler, batch position and RNG streams, so the run ends as an
            uninterrupted one would. A truncated or corrupt ``last.pt`` falls back to
            ``prev.pt`` with a notice.
        allow_data_change: Resume even if the training data's fingerprint changed.

    Returns:
        The held-out retrieval metrics (empty for unlabeled held-out data).

    Raises:
        TrainingError: when the loss stops being finite or the data cannot form a batch.
        Preempted: after SIGTERM / SIGINT, once ``last.pt`` holds the last finished step.
        RunLocked: when another process writes to ``run_dir``.
    """
    run_dir = Path(run_dir)
    rank, world = get_rank(), get_world_size()
    if config.data.color_jitter is not None and rank == 0:
        print(
            "supcon train: data.color_jitter is deprecated; use augment.jitter (it is applied "
            "as augment.jitter when the preset has colour jitter, else ignored)",
            file=sys.stderr,
        )
    config = resolve_defaults(config)  # the run directory records the automatic choices
    if launched_by_torchrun() and world == 1:
        raise TrainingError(
            "started by torchrun but no process group is initialised; call train() inside "
            "supcon.training.distributed_session(config.train.device)"
        )
    tc = config.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = resolve_device(tc.device)
    check_precision(device, tc.precision)
    check_components(config)  # before the data is scanned
    seed_everything(tc.seed)
    with run_lock(run_dir):  # rank 0 holds it; every rank raises if it is taken
        return _train(config, run_dir, progress, resume, allow_data_change)


def _train(
    config: Config, run_dir: Path, progress: bool, resume: bool, allow_data_change: bool
) -> dict[str, float]:
    """:func:`train` once the run directory is locked."""
    checkpoints = run_dir / "checkpoints"
    rank, world = get_rank(), get_world_size()
    is_main = rank == 0
    tc = config.train
    device = resolve_device(tc.device)

    # Data: held-out split for evaluation, per-sample-seeded views, this rank's batch order.
    train_split, test_split = load_splits(config.data, tc.seed)
    train_split, test_split, bad_images = screen_splits(
        config.data, train_split, test_split, progress=progress and is_main
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
    try:
        batches = build_batch_sampler(config, train_split.labels, num_replicas=world, rank=rank)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    steps_per_epoch = len(batches)
    workers = resolve_num_workers(
        config.data.num_workers, in_memory=not hasattr(train_split, "paths")
    )
    per_rank = tc.batch_size // world
    micro = min(tc.micro_batch_size or per_rank, per_rank)
    views = config.data.views

    # Model, loss, optimizer, schedule.
    in_chans = input_channels(config.data)
    model = build_model(config.model, in_chans, pretrained=False if resume else None)
    train_transform, eval_transform = build_transforms(
        config.data,
        model.backbone,
        config.augment,
        use_labels=config.loss.use_labels,
        resize=config.eval.resize,
    )
    dataset = MultiViewDataset(train_split, train_transform, views, seed=tc.seed)
    memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
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
    criterion = {"loss": loss_fn, "memory": memory}
    watched = nn.ModuleDict({"model": model, "loss": loss_fn})  # what the guard checks
    # supcon mines this rank's anchors itself; a PML loss sees the gathered batch.
    gathers = getattr(loss_fn, "gather_distributed", False)
    miner = build_miner(config.miner, distributed=world > 1 and gathers)
    optimizer = build_optimizer(config.optim, model, loss_fn)
    scheduler = build_scheduler(
        optimizer,
        total_steps=tc.epochs * steps_per_epoch,
        warmup_steps=round(config.optim.warmup_epochs * steps_per_epoch),
        min_ratio=config.optim.min_lr_ratio,
    )
    scaler = grad_scaler(device, tc.precision)
    amp = lambda: autocast(device, tc.precision)  # noqa: E731

    memory_start = config.loss.memory_start_epoch
    state = Progress()
    fingerprint = data_fingerprint(train_split)
    if resume:
        saved, used = load_checkpoint_or_previous(checkpoints / "last.pt", who="supcon train")
        if used.name != "last.pt" and is_main:  # never rotate the unusable file into prev.pt
            (checkpoints / "last.pt").unlink(missing_ok=True)
        changed = data_change(saved.get("data_fingerprint"), fingerprint)
        if changed and not allow_data_change:
            raise TrainingError(
                f"cannot resume: {changed}; restore the data, or pass --allow-data-change "
                "to continue on the new data anyway"
            )
        if changed and is_main:
            print(f"supcon train: warning: {changed}; continuing (--allow-data-change)")
        model.load_state_dict(saved["model"])
        for name, part in criterion.items():
            if part is not None and name in saved:
                part.load_state_dict(saved[name])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        state = Progress(**saved["progress"])
        restore_rng(saved["rng"])
        if saved["config"]["train"].get("best_metric") != tc.best_metric:
            state.best_value = state.best_step = None  # best.pt is re-chosen by the new metric
        if saved.get("world_size", world) != world and is_main:
            print(
                f"supcon train: resuming a {saved['world_size']}-process run with {world}; "
                "batches are the same but per-rank BatchNorm statistics differ, so the result "
                "will not be bit-identical to an uninterrupted run"
            )

    def contrastive_loss(embeddings: Tensor, labels: Tensor | None) -> Tensor:
        """:func:`step_loss`; the guard decides what a non-finite value does."""
        if not bool(torch.isfinite(embeddings.detach()).all()):  # forward overflowed
            return (embeddings * float("nan")).sum()  # NaN loss, still in the graph
        use_memory = state.epoch >= memory_start
        return step_loss(loss_fn, embeddings, labels, views, miner, memory, use_memory)

    guard = NonFiniteGuard(tc.on_nonfinite, tc.max_nonfinite_steps, state.nonfinite_in_row)
    probe: Tensor | None = None  # a few images of the latest batch, to check checkpoints with

    def diverged(problem: str, skippable: bool = True) -> TrainingError:
        last = checkpoints / "last.pt"
        kept = f"The last good checkpoint is {last}" if last.exists() else "No checkpoint kept"
        skip = (
            " (or set train.on_nonfinite=skip)" if skippable and tc.on_nonfinite == "stop" else ""
        )
        return TrainingError(
            f"{problem}; lower optim.lr, set optim.clip_grad_norm or raise loss.temperature"
            f"{skip}. {kept}"
        )

    check_trackers(tc.loggers)  # a missing tracker package stops before any file
    # Run directory (rank 0 only).
    if is_main:
        checkpoints.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", config_to_yaml(config))
        meta = provenance() | {"world_size": world}
        if resume:  # the provenance of the process that finished the run, and where it began
            meta["resumed_at_step"] = state.step
        atomic_write_json(run_dir / "meta.json", meta)
        atomic_write_json(run_dir / "classes.json", {"classes": list(train_split.class_names)})
        atomic_write_text(
            run_dir / "augment.txt",
            describe_transforms(
                config.augment, config.eval.resize, train_transform, eval_transform
            ),
        )
        write_skipped(run_dir, bad_images)
    trackers = (
        build_trackers(
            tc.loggers, run_dir, mlflow_uri=tc.mlflow_uri, wandb_project=tc.wandb_project
        )
        if is_main
        else []
    )
    logs = RunLog(
        run_dir,
        enabled=is_main,
        tensorboard=tc.tensorboard and "tensorboard" in tc.loggers,
        resume_step=state.step,
        trackers=trackers,
    )
    logs.config(config_to_dict(config))

    def save(name: str, metrics: dict[str, float] | None = None) -> None:
        if is_main:
            bad = nonfinite_state(watched, optimizer) or eval_problem(model, probe, amp)
            if bad is not None:  # diverged: keep the previous checkpoints as they are
                raise diverged(f"{bad} at step {state.step}; not saving {name}", False)
            state.nonfinite_in_row = guard.in_row
            content = _checkpoint(
                model, criterion, optimizer, scheduler, scaler, state, config, in_chans,
                train_split.class_names,
            )  # fmt: skip
            content["data_fingerprint"] = fingerprint
            if metrics is not None:
                content["metrics"] = metrics
            (save_rotating if name == "last.pt" else save_checkpoint)(checkpoints / name, content)

    def run_evaluation() -> dict[str, float]:
        """Evaluate on every rank (the evaluator may shard the embedding); track the best."""
        broadcast_buffers(model)  # every rank embeds with rank 0's BatchNorm statistics
        metrics = evaluate(
            model,
            test_split,
            eval_transform,
            ks=config.eval.ks,
            batch_size=config.eval.batch_size,
            device=device,
            num_workers=workers,
            autocast=amp(),
        )
        if metrics:
            if tc.best_metric not in metrics:
                raise TrainingError(
                    f"train.best_metric={tc.best_metric!r} is not an evaluation metric; "
                    f"choose one of {', '.join(sorted(metrics))}"
                )
            logs.evaluation(state.epoch, state.step, metrics)
            value = metrics[tc.best_metric]
            if tc.eval_every and (state.best_value is None or value > state.best_value):
                state.best_value, state.best_step = value, state.step
                save("best.pt", metrics)
        return metrics

    # One loader for the whole run: its workers live across epochs; the epoch travels with
    # each index, so per-sample augmentation seeds stay exact.
    epoch_batches = EpochBatches(batches)
    loader = DataLoader(
        dataset,
        batch_sampler=epoch_batches,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(tc.seed),  # leaves the global RNG alone
    )

    start = time.perf_counter()
    stop = StopSignals()  # entered here and left in `finally` (keeps the loop's indentation)
    try:
        stop.__enter__()
        for epoch in range(state.epoch, tc.epochs):
            model.train()
            frozen = epoch < config.optim.freeze_backbone_epochs
            set_backbone_frozen(model, frozen)
            if epoch == state.epoch or epoch == config.optim.freeze_backbone_epochs:
                train_model, ddp = _wrap(model, device, tc.compile)  # DDP tracks trainable params
            encode = lambda x, m=train_model: m(x, output="head")  # noqa: E731
            no_sync = ddp.no_sync if ddp is not None else None
            dataset.set_epoch(epoch)
            epoch_batches.set_epoch(epoch, skip=state.batch)
            bar = tqdm(
                loader,
                desc=f"epoch {epoch + 1}/{tc.epochs}",
                disable=not (progress and is_main),
                leave=False,
                dynamic_ncols=True,
                initial=state.batch,
                total=steps_per_epoch,
            )
            tick = time.perf_counter()
            for images, labels, sample_ids in bar:
                # One optimizer step on the global batch.
                images = images.flatten(0, 1).to(device, non_blocking=True)
                images = images.contiguous(memory_format=memory_format)
                labels = labels.to(device) if config.loss.use_labels else None
                optimizer.zero_grad(set_to_none=True)
                buffers = snapshot_buffers(watched) if tc.on_nonfinite == "skip" else None
                loss_of: Callable[[Tensor], Tensor] = lambda e, y=labels: contrastive_loss(e, y)  # noqa: E731
                if micro >= images.shape[0] // views:
                    with amp():
                        embeddings = encode(images)
                    loss = loss_of(embeddings)
                    scaler.scale(loss).backward()
                else:  # exact large batch: GradCache over micro-batches of `micro` samples
                    loss, embeddings = cached_backward(
                        encode,
                        images.split(micro * views),
                        loss_of,
                        autocast=amp,
                        scale=scaler.scale,
                        no_sync=no_sync,
                        buffers=model,
                    )
                average_loss_gradients(loss_fn)
                grad_norm = None
                if config.optim.clip_grad_norm is not None:
                    scaler.unscale_(optimizer)
                    grad_norm = nn.utils.clip_grad_norm_(
                        model.parameters(), config.optim.clip_grad_norm
                    )
                problem = step_problem(loss, watched, check_grads=not scaler.is_enabled())
                bad, stopping = _agree([problem is not None, stop.received is not None], device)
                if bad:  # no update: optimizer, scheduler and scaler stay as they were
                    reason = problem or "a non-finite loss or gradient on another rank"
                    message = guard.bad_step(reason, state.step + 1, sample_ids)
                    if message is not None:
                        raise diverged(message)
                    state.skipped_steps += 1
                    if buffers is not None:
                        restore_buffers(watched, buffers)
                    if scaler.is_enabled():  # forget an unscale_ of this step; keep the scale
                        scaler._per_optimizer_states.clear()
                else:
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    problem = nonfinite_state(watched, optimizer)
                    if problem is not None:  # cannot be undone: stop before it is saved
                        raise diverged(f"{problem} after step {state.step + 1}", False)
                    guard.good_step()
                    if memory is not None and epoch >= memory_start:  # after the step (XBM)
                        memory.enqueue(
                            embeddings.detach().view(-1, views, embeddings.shape[-1]), labels
                        )
                    probe = images[: min(8, images.shape[0])]
                state.step += 1
                state.batch += 1

                # Logging (rank 0), with the loss averaged over ranks.
                now = time.perf_counter()
                images_per_s = images.shape[0] * world / max(now - tick, 1e-9)
                tick = now
                if state.step % tc.log_every == 0 or state.batch == steps_per_epoch:
                    loss_value = mean_over_ranks(loss.detach().reshape(1))[0].item()
                    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
                    row = {
                        "epoch": epoch,
                        "step": state.step,
                        "loss": loss_value,
                        "lr": lrs.get("head", lrs.get("head_no_decay", 0.0)),
                        "backbone_lr": 0.0 if frozen else lrs.get("backbone", float("nan")),
                        "images_per_s": images_per_s,
                        "elapsed_s": now - start,
                    }
                    if grad_norm is not None:
                        row["grad_norm"] = float(grad_norm)
                    stats = getattr(loss_fn, "last_stats", None)
                    if stats is not None:
                        row["anchors_without_positives"] = stats.num_anchors_without_positives
                    logs.train(row)
                    bar.set_postfix(
                        loss=f"{loss_value:.4f}",
                        lr=f"{row['lr']:.2e}",
                        img_s=f"{images_per_s:.0f}",
                    )
                if tc.diagnostics_every and state.step % tc.diagnostics_every == 0 and is_main:
                    values = diagnose(
                        embeddings,
                        labels,
                        views,
                        temperature=config.loss.temperature,
                        contrast_mode=config.loss.contrast_mode,
                    )
                    logs.diagnostics(epoch, state.step, values)
                    warn_if_collapsed(values, state.step)
                # Mid-epoch checkpoints (the epoch-end one follows anyway).
                every = tc.checkpoint_every
                if every and state.step % every == 0 and state.batch < steps_per_epoch:
                    save("last.pt")
                if stopping:
                    save("last.pt")
                    raise Preempted(stop.received or 15, _stopped(stop.name, state.step, run_dir))

            state.epoch, state.batch = epoch + 1, 0
            if tc.eval_every and state.epoch % tc.eval_every == 0 and state.epoch < tc.epochs:
                run_evaluation()
            save("last.pt")

        if _agree([stop.received is not None], device)[0]:  # last.pt is up to date
            raise Preempted(stop.received or 15, _stopped(stop.name, state.step, run_dir))
        metrics = run_evaluation()
        if is_main:
            atomic_write_json(run_dir / "metrics.json", metrics)
            logs.summary(metrics)
    finally:
        stop.__exit__(None, None, None)
        logs.close()
    return metrics


def _stopped(signal_name: str, step: int, run_dir: Path) -> str:
    return (
        f"stopped by {signal_name or 'a signal on another rank'} after step {step}; "
        f"{run_dir / 'checkpoints' / 'last.pt'} holds it. Continue with: "
        f"supcon train --resume {run_dir}"
    )
