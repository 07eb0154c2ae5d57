"""Tiny training configs on synthetic image folders, shared by the training tests."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

from supcon.config import Config, config_from_dict


def tiny(images: Path, **sections: dict) -> Config:
    """A 2-epoch ``test_resnet`` run on ``images`` (an image folder), one thread, 24 px."""
    raw: dict[str, dict] = {
        "data": {"dataset": "folder", "root": str(images), "image_size": 24},
        "model": {"backbone": "test_resnet", "embedding_dim": 16},
        "train": {"epochs": 2, "batch_size": 10, "threads": 1, "tensorboard": False},
        "optim": {"warmup_epochs": 0},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return config_from_dict(raw)


def rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV log."""
    with path.open() as handle:
        return list(csv.DictReader(handle))


# TensorBoard is optional (the `tensorboard` extra): tests check whichever branch applies.
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
TENSORBOARD_MISSING = "tensorboard is not installed"
