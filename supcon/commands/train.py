"""``supcon train RECIPE [section.key=value ...] [--out DIR]`` and ``supcon train --resume DIR``.

Under ``torchrun`` every process runs this command; they join one process group, agree on the
run directory, and only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

from supcon.errors import UserError

# Overrides a resumed run accepts: they change how the run is executed or logged, not what it
# computes. ``train.epochs`` may grow: the cosine schedule is then stretched from the current
# step (documented: such a run is no longer identical to one planned with that length).
RESUME_OVERRIDES = frozenset(
    {
        "train.epochs",
        "train.device",
        "train.threads",
        "train.checkpoint_every",
        "train.eval_every",
        "train.log_every",
        "train.diagnostics_every",
        "train.tensorboard",
        "train.loggers",
        "train.mlflow_uri",
        "train.wandb_project",
        "data.num_workers",
        "eval.batch_size",
        "train.best_metric",  # a typo'd best metric can be fixed; best.pt is then re-chosen
        "train.on_nonfinite",
        "train.max_nonfinite_steps",
    }
)


def _default_run_dir(recipe: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(recipe).stem}-{stamp}"


def _resume_config(run_dir: Path, overrides: list[str]):
    """The saved config of ``run_dir`` with the allowed ``overrides`` applied."""
    from supcon.config import apply_overrides, config_from_dict, parse_override, read_recipe

    if not any((run_dir / "checkpoints" / n).is_file() for n in ("last.pt", "prev.pt")):
        raise UserError(
            f"nothing to resume in {str(run_dir)!r}: no checkpoints/last.pt (start the run "
            "with supcon train RECIPE --out DIR; it writes one every epoch)"
        )
    refused = []
    for text in overrides:
        section, key, _ = parse_override(text)
        if f"{section}.{key}" not in RESUME_OVERRIDES:
            refused.append(f"{section}.{key}")
    if refused:
        raise UserError(
            f"cannot change {', '.join(refused)} when resuming: it would change what the run "
            f"computes. Allowed: {', '.join(sorted(RESUME_OVERRIDES))}; start a new run "
            "(--out) for anything else"
        )
    raw = read_recipe(run_dir / "config.yaml")
    return config_from_dict(apply_overrides(raw, overrides), source=str(run_dir / "config.yaml"))


def _check_resume_epochs(run_dir: Path, epochs: int, finished: bool) -> None:
    """Refuse a ``train.epochs`` that the run has already passed (it would end early)."""
    from supcon.training.checkpoint import load_checkpoint_or_previous

    with contextlib.redirect_stderr(io.StringIO()):  # train() reports a fallback itself
        saved, _ = load_checkpoint_or_previous(run_dir / "checkpoints" / "last.pt")
    progress = saved["progress"]
    done, batch = progress["epoch"], progress["batch"]
    if finished and done >= epochs:
        raise UserError(
            f"the run in {str(run_dir)!r} already finished its {done} epochs; pass "
            f"train.epochs=N with N > {done} to train it longer"
        )
    if epochs < done or (epochs == done and batch > 0):
        started = done + (batch > 0)
        raise UserError(
            f"train.epochs={epochs} is fewer than the {started} epoch(s) the run in "
            f"{str(run_dir)!r} has already started; pass train.epochs=N with N ≥ {started}"
        )


def run(args: argparse.Namespace) -> int:
    """Train (or resume) from a recipe, print the held-out metrics table on rank 0."""
    from supcon.config import load_config
    from supcon.distributed import broadcast_object, get_rank
    from supcon.outputs import check_run_folder
    from supcon.reporting import escape, metrics_table
    from supcon.training import distributed_session, train
    from supcon.training.lock import run_lock
    from supcon.training.preempt import Preempted

    overrides = list(args.overrides)
    if args.resume:
        if args.out:
            raise UserError("--resume DIR continues the run in DIR; drop --out")
        if args.recipe and "=" not in args.recipe:
            raise UserError(
                "--resume DIR uses the config saved in DIR; pass no recipe (only overrides)"
            )
        if args.recipe:  # argparse took the first override for the optional recipe
            overrides.insert(0, args.recipe)
        run_dir = Path(args.resume)
        config = _resume_config(run_dir, overrides)
    else:
        if not args.recipe:
            raise UserError("pass a recipe (e.g. recipes/digits.yaml) or --resume DIR")
        config = load_config(args.recipe, overrides)
        run_dir = Path(args.out) if args.out else None

    with distributed_session(config.train.device), ExitStack() as held:
        if run_dir is None:  # rank 0's clock names the run for every rank
            run_dir = Path(str(broadcast_object(str(_default_run_dir(args.recipe)))))
        if not args.resume:
            check_run_folder(run_dir)
        held.enter_context(run_lock(run_dir))  # one writer; train() re-enters it
        finished = (run_dir / "metrics.json").exists()
        if finished and not args.resume:
            raise UserError(
                f"run directory {str(run_dir)!r} already holds a finished run; pass another --out"
            )
        if not args.resume and (run_dir / "checkpoints" / "last.pt").exists():
            raise UserError(
                f"run directory {str(run_dir)!r} holds an unfinished run; continue it with "
                f"supcon train --resume {run_dir}, or pass another --out"
            )
        if args.resume:
            _check_resume_epochs(run_dir, config.train.epochs, finished)
        started = time.perf_counter()
        try:
            metrics = train(
                config,
                run_dir,
                progress=not args.no_progress,
                resume=bool(args.resume),
                allow_data_change=args.allow_data_change,
            )
        except Preempted as exc:
            if get_rank() == 0:
                print(f"supcon train: {exc}", file=sys.stderr)
            return exc.exit_code
        elapsed = time.perf_counter() - started
        if get_rank() == 0:
            if metrics:
                print(metrics_table(metrics))
            else:
                print("the held-out split has no labels, so no retrieval metrics were computed")
            print(f"run directory: {escape(run_dir)}  ({elapsed:.1f} s)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the CLI."""
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description=(
            "Train from a YAML recipe, then evaluate retrieval on the held-out split. "
            "Several GPUs: torchrun --nproc_per_node=N -m supcon train RECIPE ..."
        ),
    )
    parser.add_argument("recipe", nargs="?", help="YAML recipe, e.g. recipes/digits.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="override recipe values, e.g. train.epochs=2 loss.temperature=0.2",
    )
    parser.add_argument("--out", help="run directory (default: runs/<recipe>-<time>)")
    parser.add_argument(
        "--resume",
        metavar="DIR",
        help=(
            "continue the run in DIR from checkpoints/last.pt with its saved config; only "
            "execution settings (e.g. train.device, train.epochs) may be overridden"
        ),
    )
    parser.add_argument(
        "--allow-data-change",
        action="store_true",
        help="with --resume: continue even if the training files or labels changed",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)
