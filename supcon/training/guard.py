"""The non-finite guard: no NaN or Inf update reaches the model, the optimizer or a checkpoint.

Before each optimizer step the loss (and, without a gradient scaler, the gradients) must be
finite; after it, every parameter, buffer and optimizer-state tensor must be. ``on_nonfinite``
decides what a bad step does: ``"stop"`` ends the run, ``"skip"`` drops the step (no update:
optimizer, scheduler and scaler state are untouched) and ends the run only after
``max_in_row`` bad steps in a row. Each bad step is reported with its batch's sample ids.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from supcon.eval_mode import eval_mode


def _tensors(value: object) -> Iterable[tuple[str, Tensor]]:
    """Every floating tensor inside nested dicts / lists, with a dotted name."""
    if isinstance(value, Tensor):
        if value.is_floating_point() or value.is_complex():
            yield "", value
    elif isinstance(value, dict):
        for key, item in value.items():
            for name, tensor in _tensors(item):
                yield f"{key}.{name}" if name else str(key), tensor
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            for name, tensor in _tensors(item):
                yield f"{i}.{name}" if name else str(i), tensor


def first_nonfinite(named: Iterable[tuple[str, Tensor]]) -> str | None:
    """The name of the first tensor holding a NaN or Inf, or ``None`` (one device sync).

    Screens with one sum per tensor (a NaN or Inf element makes the sum non-finite; no boolean
    copy of every tensor, about 12× faster than ``isfinite().all()`` on a ResNet-18's state),
    then confirms each flagged tensor element-wise, so a finite tensor whose sum overflows is
    not reported.
    """
    named = list(named)
    if not named:
        return None
    sums = torch.stack([_screen(t) for _, t in named])
    for index in (~sums.isfinite()).nonzero().flatten().tolist():
        if not bool(named[index][1].detach().isfinite().all()):
            return named[index][0]
    return None


def _screen(tensor: Tensor) -> Tensor:
    """A float32 CPU scalar that is finite when every element of ``tensor`` is."""
    total = tensor.detach().sum()
    total = total.abs() if total.is_complex() else total
    return total.float().to("cpu", non_blocking=True)


def nonfinite_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> str | None:
    """What in the model (parameters, buffers) or optimizer state is not finite, or ``None``.

    Args:
        model: Every module the optimizer updates (e.g. ``ModuleDict`` of model and loss).
        optimizer: Its optimizer.
    """
    state = optimizer.state_dict()["state"]
    names = {i: n for i, (n, _) in enumerate(model.named_parameters())}
    optimizer_tensors = (
        (f"optimizer state {key} of parameter {names.get(index, index)}", tensor)
        for index, slots in state.items()
        for key, tensor in _tensors(slots)
    )
    found = first_nonfinite(
        [*((f"{n}", t) for n, t in _tensors(model.state_dict())), *optimizer_tensors]
    )
    return None if found is None else f"{found} is not finite"


def step_problem(loss: Tensor, model: nn.Module, *, check_grads: bool) -> str | None:
    """Why this step must not update the model (non-finite loss, gradient or buffer), or ``None``.

    Args:
        loss: The step's loss (a scalar).
        model: The model whose ``.grad`` fields hold this step's gradients.
        check_grads: Check gradients too (not under a gradient scaler, which skips such steps
            itself and lowers its scale).
    """
    if not bool(torch.isfinite(loss.detach())):
        return f"loss became {loss.item()}"
    bad_buffer = first_nonfinite(
        (f"model buffer {n}", b) for n, b in _tensors(dict(model.named_buffers()))
    )
    if bad_buffer is not None:  # e.g. BatchNorm statistics overflowed in this forward pass
        return f"{bad_buffer} became non-finite"
    if check_grads:
        grads = ((f"gradient of {n}", p.grad) for n, p in model.named_parameters())
        bad = first_nonfinite((n, g) for n, g in grads if g is not None)
        if bad is not None:
            return f"{bad} became non-finite"
    return None


def snapshot_buffers(model: nn.Module) -> list[Tensor]:
    """Copies of the model's buffers (BatchNorm statistics), which a forward pass updates."""
    return [b.detach().clone() for b in model.buffers()]


@torch.no_grad()
def restore_buffers(model: nn.Module, snapshot: list[Tensor]) -> None:
    """Undo a skipped step's forward pass on the buffers."""
    for buffer, saved in zip(model.buffers(), snapshot, strict=True):
        buffer.copy_(saved)


@torch.no_grad()
def eval_problem(
    model: nn.Module, images: Tensor | None, autocast: Callable[[], AbstractContextManager]
) -> str | None:
    """Whether the model in eval mode (running BatchNorm statistics) embeds ``images`` finitely.

    Weights can grow huge (1e30) yet stay finite; the train-mode forward (batch statistics)
    may still work while every eval-mode embedding is NaN. A checkpoint is written only when
    this probe passes. The forward draws no random numbers and updates no buffer.

    Args:
        model: The (unwrapped) embedding model.
        images: ``(B, C, H, W)`` a few training images, or ``None`` to skip the probe.
        autocast: The run's autocast context factory.
    """
    if images is None:
        return None
    with eval_mode(model), autocast():
        embeddings = model(images)
    if not bool(torch.isfinite(embeddings).all()):
        return (
            "the model's eval-mode embeddings are not finite (its weights or BatchNorm "
            "statistics overflowed)"
        )
    return None


def describe_batch(sample_ids: Sequence[int] | Tensor, shown: int = 8) -> str:
    """``"samples 3, 17, 42, … (128 in all)"`` for a report."""
    ids = [int(i) for i in (sample_ids.tolist() if isinstance(sample_ids, Tensor) else sample_ids)]
    head = ", ".join(str(i) for i in ids[:shown])
    more = f", … ({len(ids)} in all)" if len(ids) > shown else ""
    return f"batch sample ids {head}{more}"


class NonFiniteGuard:
    """Counts bad steps and decides between skipping and stopping.

    Args:
        policy: ``"stop"`` or ``"skip"``.
        max_in_row: With ``"skip"``, stop at this many bad steps in a row.
        in_row: Bad steps in a row so far (restored on resume).
    """

    def __init__(self, policy: str, max_in_row: int, in_row: int = 0) -> None:
        self.policy, self.max_in_row, self.in_row = policy, max_in_row, in_row

    def bad_step(self, problem: str, step: int, sample_ids: Sequence[int] | Tensor) -> str | None:
        """Record a bad step; return the message to stop with, or ``None`` to skip it."""
        self.in_row += 1
        where = f"{problem} at step {step} ({describe_batch(sample_ids)})"
        if self.policy == "skip" and self.in_row < self.max_in_row:
            print(
                f"supcon train: warning: {where}; step skipped ({self.in_row} in a row, "
                f"stopping at train.max_nonfinite_steps={self.max_in_row})",
                file=sys.stderr,
            )
            return None
        if self.policy == "skip":
            where += f", {self.in_row} non-finite steps in a row (train.max_nonfinite_steps)"
        return where

    def good_step(self) -> None:
        """A finite step ends the run of bad ones."""
        self.in_row = 0
