"""Load a trained model back from a run directory or a checkpoint file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from supcon.builders import build_model
from supcon.config import Config, config_from_dict
from supcon.data import build_transforms
from supcon.data.transforms import Transform
from supcon.errors import MissingFileError
from supcon.messages import say
from supcon.models import EmbeddingModel
from supcon.training.checkpoint import PREVIOUS, CheckpointError, load_checkpoint, problem_of

CHECKPOINT_NAMES = ("best.pt", "last.pt")
# What a run directory falls back to, in order, when a checkpoint cannot be loaded.
FALLBACK_NAMES = ("best.pt", "last.pt", PREVIOUS)


@dataclass
class LoadedRun:
    """A trained model with what is needed to embed new images the way it was trained.

    Attributes:
        config: The run's resolved config.
        model: The embedding model in eval mode.
        eval_transform: The deterministic image transform (``eval.resize`` of the run).
        class_names: Class names of the training data, by id.
        checkpoint: The checkpoint file that was loaded.
    """

    config: Config
    model: EmbeddingModel
    eval_transform: Transform | None
    class_names: tuple[str, ...]
    checkpoint: Path


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself if it is a file, else ``best.pt`` or ``last.pt`` of a run directory.

    Raises:
        FileNotFoundError: saying what was looked for.
    """
    path = Path(path)
    if path.is_file():
        return path
    for name in CHECKPOINT_NAMES:
        for candidate in (path / "checkpoints" / name, path / name):
            if candidate.is_file():
                return candidate
    raise MissingFileError(
        f"no checkpoint at {str(path)!r}: pass a run directory (with checkpoints/best.pt or "
        "checkpoints/last.pt) or a .pt file written by supcon train"
    )


def load_run(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the model of a run and load its weights (``weights_only=True``).

    Args:
        path: A run directory or a checkpoint file.
        device: Where to put the model.

    Returns:
        The loaded run.
    """
    checkpoint_path = find_checkpoint(path)
    state, checkpoint_path = _load_or_fall_back(checkpoint_path)
    for key in ("model", "config", "in_chans"):
        if key not in state:
            raise CheckpointError(
                f"{str(checkpoint_path)!r} is not a supcon checkpoint (no {key!r})"
            )
    config = config_from_dict(state["config"], source=str(checkpoint_path))
    model = build_model(config.model, int(state["in_chans"]), pretrained=False)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    _, eval_tf = build_transforms(
        config.data,
        model.backbone,
        config.augment,
        use_labels=config.loss.use_labels,
        resize=config.eval.resize,
    )
    return LoadedRun(config, model, eval_tf, tuple(state.get("class_names", ())), checkpoint_path)


def _load_or_fall_back(path: Path) -> tuple[dict, Path]:
    """Load ``path``; if it is unloadable, the next good checkpoint of its run, with a notice.

    ``best.pt`` falls back to ``last.pt`` then ``prev.pt``; ``last.pt`` to ``prev.pt``.

    Raises:
        CheckpointError: of ``path`` when no later candidate loads either.
    """
    try:
        return load_checkpoint(path, map_location="cpu"), path
    except CheckpointError as exc:
        names = (
            FALLBACK_NAMES[FALLBACK_NAMES.index(path.name) + 1 :]
            if path.name in FALLBACK_NAMES
            else ()
        )
        for name in names:
            candidate = path.with_name(name)
            if not candidate.is_file():
                continue
            try:
                state = load_checkpoint(candidate, map_location="cpu")
            except CheckpointError:
                continue
            say(f"supcon: {problem_of(exc)}; falling back to {str(candidate)!r}")
            return state, candidate
        raise
