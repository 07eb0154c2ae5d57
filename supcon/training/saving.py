"""Checkpoints of a run: ``last.pt`` (rotated to ``prev.pt``), ``best.pt`` by evaluation, and
the messages that point at them when a run stops.

Only rank 0 writes, and never a diverged state: a checkpoint whose tensors are not finite, or
whose model's output on the latest batch is not, is refused so the previous ones stay usable.
"""

from __future__ import annotations

from typing import Any

from supcon.config import config_to_dict
from supcon.rundir import BEST, LAST
from supcon.training.checkpoint import save_checkpoint, save_rotating
from supcon.training.errors import TrainingError
from supcon.training.guard import eval_problem, nonfinite_state
from supcon.training.run import Run
from supcon.training.state import capture_rng


def checkpoint(run: Run, name: str, metrics: dict[str, float] | None = None) -> None:
    """Write ``checkpoints/<name>`` on rank 0 (``last.pt`` rotates the previous to ``prev.pt``).

    Args:
        run: The run.
        name: :data:`supcon.rundir.LAST` or :data:`supcon.rundir.BEST`.
        metrics: The evaluation saved with ``best.pt``.

    Raises:
        TrainingError: when the state to save is not finite (nothing is written).
    """
    if not run.is_main:
        return
    bad = nonfinite_state(run.watched, run.optimizer) or eval_problem(run.model, run.probe, run.amp)
    if bad is not None:  # diverged: keep the previous checkpoints as they are
        raise diverged(run, f"{bad} at step {run.state.step}; not saving {name}", False)
    run.state.nonfinite_in_row = run.guard.in_row
    content = checkpoint_content(run)
    if metrics is not None:
        content["metrics"] = metrics
    write = save_rotating if name == LAST else save_checkpoint
    write(run.paths.checkpoint(name), content)


def checkpoint_content(run: Run) -> dict[str, Any]:
    """Everything ``--resume`` needs, plus what :func:`supcon.runs.load_run` reads."""
    return {
        **{name: part.state_dict() for name, part in run.stateful().items()},
        "rng": capture_rng(),
        "progress": run.state.to_dict(),
        "epoch": run.state.epoch,
        "step": run.state.step,
        "world_size": run.world,
        "config": config_to_dict(run.config),
        "in_chans": run.in_chans,
        "class_names": list(run.train_split.class_names),
        "data_fingerprint": run.fingerprint,
    }


def keep_best(run: Run, metrics: dict[str, float]) -> dict[str, float]:
    """Save ``best.pt`` when ``metrics`` beat the best so far (``train.eval_every`` only).

    Returns:
        ``metrics``, unchanged.
    """
    if metrics and run.config.train.eval_every:
        value = metrics[run.config.train.best_metric]
        if run.state.best_value is None or value > run.state.best_value:
            run.state.best_value, run.state.best_step = value, run.state.step
            checkpoint(run, BEST, metrics)
    return metrics


def diverged(run: Run, problem: str, skippable: bool = True) -> TrainingError:
    """The error for a non-finite step or state: what to change and the last good checkpoint."""
    last = run.paths.last
    kept = f"The last good checkpoint is {last}" if last.exists() else "No checkpoint kept"
    on_nonfinite = run.config.train.on_nonfinite
    skip = " (or set train.on_nonfinite=skip)" if skippable and on_nonfinite == "stop" else ""
    return TrainingError(
        f"{problem}; lower optim.lr, set optim.clip_grad_norm or raise loss.temperature"
        f"{skip}. {kept}"
    )


def stopped_message(signal_name: str, run: Run) -> str:
    """What :class:`~supcon.training.preempt.Preempted` says: where the run is and how to go on."""
    return (
        f"stopped by {signal_name or 'a signal on another rank'} after step {run.state.step}; "
        f"{run.paths.last} holds it. Continue with: "
        f"supcon train --resume {run.paths.root}"
    )
