"""One training epoch: an optimizer step per batch (GradCache, AMP, the non-finite guard),
the log row, diagnostics, mid-epoch checkpoints and a stop on SIGTERM / SIGINT."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from supcon.distributed import get_world_size, mean_over_ranks
from supcon.rundir import LAST
from supcon.training.criterion import (
    anchors_without_positives,
    average_loss_gradients,
    step_loss,
)
from supcon.training.gradcache import cached_backward
from supcon.training.guard import (
    nonfinite_state,
    restore_buffers,
    snapshot_buffers,
    step_problem,
)
from supcon.training.monitor import diagnose, warn_if_collapsed
from supcon.training.optim import BACKBONE, HEAD, HEAD_NO_DECAY, group_rates, set_backbone_frozen
from supcon.training.preempt import Preempted, StopSignals
from supcon.training.run import Run
from supcon.training.saving import checkpoint, diverged, stopped_message


@dataclass
class StepOutcome:
    """What one optimizer step leaves for logging.

    Attributes:
        loss: The scalar loss of this rank (detached use only).
        embeddings: ``(b·V, D)`` this rank's embeddings of the step.
        grad_norm: The gradient norm before clipping (``optim.clip_grad_norm`` only).
        stopping: A stop signal arrived on some rank: save and stop after this step.
    """

    loss: Tensor
    embeddings: Tensor
    grad_norm: Tensor | None
    stopping: bool


def train_one_epoch(run: Run, epoch: int, stop: StopSignals) -> None:
    """Train ``epoch`` from batch ``run.state.batch`` to its end.

    Raises:
        TrainingError: when a step diverges beyond what ``train.on_nonfinite`` allows.
        Preempted: after a stop signal, once ``last.pt`` holds the last finished step.
    """
    config, tc, state = run.config, run.config.train, run.state
    run.model.train()
    frozen = epoch < config.optim.freeze_backbone_epochs
    set_backbone_frozen(run.model, frozen)
    # A fresh wrapper every epoch: DDP tracks the trainable parameters (unfreezing changes them),
    # and wrapping copies rank 0's parameters and BatchNorm statistics to every rank. Each epoch
    # thus starts from one state on all ranks, so a resumed run (wrapped at its first epoch)
    # matches an uninterrupted one: wrap once per epoch, not once per process.
    run.train_model, run.ddp = wrap(run.model, run.device, tc.compile)
    run.dataset.set_epoch(epoch)
    run.batches.set_epoch(epoch, skip=state.batch)
    bar = tqdm(
        run.loader,
        desc=f"epoch {epoch + 1}/{tc.epochs}",
        disable=not (run.show_progress and run.is_main),
        leave=False,
        dynamic_ncols=True,
        initial=state.batch,
        total=run.steps_per_epoch,
    )
    tick = time.perf_counter()
    for images, labels, sample_ids in bar:
        images = images.flatten(0, 1).to(run.device, non_blocking=True)
        images = images.contiguous(memory_format=run.memory_format)
        labels = labels.to(run.device) if config.loss.use_labels else None
        outcome = optimizer_step(run, epoch, images, labels, sample_ids, stop)
        state.step += 1
        state.batch += 1

        now = time.perf_counter()
        images_per_s = images.shape[0] * run.world / max(now - tick, 1e-9)
        tick = now
        if state.step % tc.log_every == 0 or state.batch == run.steps_per_epoch:
            log_step(run, bar, epoch, frozen, outcome, images_per_s, now)
        if tc.diagnostics_every and state.step % tc.diagnostics_every == 0 and run.is_main:
            values = diagnose(
                outcome.embeddings,
                labels,
                run.views,
                temperature=config.loss.temperature,
                contrast_mode=config.loss.contrast_mode,
            )
            run.logs.diagnostics(epoch, state.step, values)
            warn_if_collapsed(values, state.step)
        # Mid-epoch checkpoints (the epoch-end one follows anyway).
        every = tc.checkpoint_every
        if every and state.step % every == 0 and state.batch < run.steps_per_epoch:
            checkpoint(run, LAST)
        if outcome.stopping:
            checkpoint(run, LAST)
            raise Preempted(stop.received or 15, stopped_message(stop.name, run))


def optimizer_step(
    run: Run,
    epoch: int,
    images: Tensor,
    labels: Tensor | None,
    sample_ids: Tensor,
    stop: StopSignals,
) -> StepOutcome:
    """One optimizer step on the global batch, or none when the guard rejects it.

    Args:
        run: The run.
        epoch: The current epoch.
        images: ``(b·V, C, H, W)`` this rank's views, sample-major.
        labels: ``(b,)`` class ids, or ``None`` (``loss.use_labels: false``).
        sample_ids: ``(b,)`` dataset indices (named when a step is bad).
        stop: The run's signal handler.

    Returns:
        The step's loss, embeddings, gradient norm and whether to stop.
    """
    tc, optim, views = run.config.train, run.config.optim, run.views
    optimizer, scaler = run.optimizer, run.scaler
    optimizer.zero_grad(set_to_none=True)
    buffers = snapshot_buffers(run.watched) if tc.on_nonfinite == "skip" else None
    encode = partial(_head, run.train_model)
    loss_of = partial(guarded_loss, run, labels=labels)
    if run.micro >= images.shape[0] // views:
        with run.amp():
            embeddings = encode(images)
        loss = loss_of(embeddings)
        scaler.scale(loss).backward()
    else:  # exact large batch: GradCache over micro-batches of `micro` samples
        loss, embeddings = cached_backward(
            encode,
            images.split(run.micro * views),
            loss_of,
            autocast=run.amp,
            scale=scaler.scale,
            no_sync=run.ddp.no_sync if run.ddp is not None else None,
            buffers=run.model,
        )
    average_loss_gradients(run.loss_fn)
    grad_norm = None
    if optim.clip_grad_norm is not None:
        scaler.unscale_(optimizer)
        grad_norm = nn.utils.clip_grad_norm_(run.model.parameters(), optim.clip_grad_norm)
    problem = step_problem(loss, run.watched, check_grads=not scaler.is_enabled())
    bad, stopping = agree([problem is not None, stop.received is not None], run.device)
    if bad:  # no update: optimizer, scheduler and scaler stay as they were
        reason = problem or "a non-finite loss or gradient on another rank"
        message = run.guard.bad_step(reason, run.state.step + 1, sample_ids)
        if message is not None:
            raise diverged(run, message)
        run.state.skipped_steps += 1
        if buffers is not None:
            restore_buffers(run.watched, buffers)
        if scaler.is_enabled():  # forget an unscale_ of this step; keep the scale
            scaler._per_optimizer_states.clear()
    else:
        scaler.step(optimizer)
        scaler.update()
        run.scheduler.step()
        problem = nonfinite_state(run.watched, optimizer)
        if problem is not None:  # cannot be undone: stop before it is saved
            raise diverged(run, f"{problem} after step {run.state.step + 1}", False)
        run.guard.good_step()
        if run.memory is not None and epoch >= run.config.loss.memory_start_epoch:
            # after the step (XBM)
            run.memory.enqueue(embeddings.detach().view(-1, views, embeddings.shape[-1]), labels)
        run.probe = images[: min(8, images.shape[0])]
    return StepOutcome(loss, embeddings, grad_norm, stopping)


def guarded_loss(run: Run, embeddings: Tensor, labels: Tensor | None) -> Tensor:
    """:func:`step_loss` of the step; NaN (still in the graph) when the forward overflowed.

    The guard then decides what a non-finite value does.
    """
    if not bool(torch.isfinite(embeddings.detach()).all()):  # forward overflowed
        return (embeddings * float("nan")).sum()  # NaN loss, still in the graph
    use_memory = run.state.epoch >= run.config.loss.memory_start_epoch
    return step_loss(run.loss_fn, embeddings, labels, run.views, run.miner, run.memory, use_memory)


def log_step(
    run: Run,
    bar: Any,
    epoch: int,
    frozen: bool,
    outcome: StepOutcome,
    images_per_s: float,
    now: float,
) -> None:
    """One ``log.csv`` row (rank 0), with the loss averaged over ranks."""
    loss_value = mean_over_ranks(outcome.loss.detach().reshape(1))[0].item()
    rates = group_rates(run.optimizer)
    row = {
        "epoch": epoch,
        "step": run.state.step,
        "loss": loss_value,
        "lr": rates.get(HEAD, rates.get(HEAD_NO_DECAY, 0.0)),
        "backbone_lr": 0.0 if frozen else rates.get(BACKBONE, float("nan")),
        "images_per_s": images_per_s,
        "elapsed_s": now - run.started,
    }
    if outcome.grad_norm is not None:
        row["grad_norm"] = float(outcome.grad_norm)
    missing = anchors_without_positives(run.loss_fn)
    if missing is not None:
        row["anchors_without_positives"] = missing
    run.logs.train(row)
    bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{row['lr']:.2e}", img_s=f"{images_per_s:.0f}")


def wrap(model: nn.Module, device: torch.device, compile_model: bool) -> tuple[Any, Any]:
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
    train_model: Any = ddp if ddp is not None else model
    if compile_model:
        train_model = torch.compile(train_model)
    return train_model, ddp


def agree(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag raised on any rank (one small all-reduce under torchrun)."""
    if get_world_size() == 1:
        return flags
    values = torch.tensor([float(f) for f in flags], device=device)
    return [bool(v > 0) for v in mean_over_ranks(values)]


def _head(model: Any, images: Tensor) -> Tensor:
    """The model's L2-normalised projection of ``images``."""
    return model(images, output="head")
