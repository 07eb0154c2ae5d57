"""The training loop: data → views → model → (miner) → SupCon loss → optimizer, then evaluation.

:func:`train` reads top to bottom; each piece it calls can be opened on its own:
:func:`~supcon.training.setup.setup` (data, model, loss, optimizer, resume, run files),
:func:`~supcon.training.epoch.train_one_epoch` (one optimizer step per batch),
:func:`~supcon.training.evaluate.evaluate_run` and :func:`~supcon.training.saving.checkpoint`.
One process or many (``torchrun``): ``train.batch_size`` is the global batch, each rank embeds
its share, the loss contrasts the whole batch and only rank 0 writes to the run directory.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from supcon.config import Config
from supcon.io import atomic_write_json
from supcon.rundir import LAST, RunDir
from supcon.training.epoch import agree, train_one_epoch
from supcon.training.errors import TrainingError
from supcon.training.evaluate import evaluate_run
from supcon.training.lock import run_lock
from supcon.training.preempt import Preempted, StopSignals
from supcon.training.saving import checkpoint, keep_best, stopped_message
from supcon.training.setup import prepare, seed_everything, setup

__all__ = ["TrainingError", "seed_everything", "train"]


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
    ``metrics.json`` into ``run_dir`` (see :class:`supcon.rundir.RunDir`); under torchrun every
    rank evaluates (so the evaluator can shard the embedding) but only rank 0 writes, and the
    process group must already be initialised
    (:func:`supcon.distributed.distributed_session`).

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
    config = prepare(config)  # checks that need no data; seeds every RNG
    paths = RunDir(Path(run_dir))
    with run_lock(paths.root):  # rank 0 holds it; every rank raises if it is taken
        run = setup(
            config, paths, progress=progress, resume=resume, allow_data_change=allow_data_change
        )
        tc = config.train
        with closing(run.logs), StopSignals() as stop:
            for epoch in range(run.state.epoch, tc.epochs):
                train_one_epoch(run, epoch, stop)
                run.state.epoch, run.state.batch = epoch + 1, 0
                done = run.state.epoch
                if tc.eval_every and done % tc.eval_every == 0 and done < tc.epochs:
                    keep_best(run, evaluate_run(run))  # the final evaluation follows anyway
                checkpoint(run, LAST)

            if agree([stop.received is not None], run.device)[0]:  # last.pt is up to date
                raise Preempted(stop.received or 15, stopped_message(stop.name, run))
            metrics = keep_best(run, evaluate_run(run))
            if run.is_main:
                atomic_write_json(paths.metrics, metrics)
                run.logs.summary(metrics)
    return metrics
