"""Fixtures of the command tests: an in-process CLI caller and a tiny trained run."""

from __future__ import annotations

from pathlib import Path

import pytest

from supcon.config import config_from_dict
from supcon.training import train
from tests.images import make_image_folder


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with 4 classes × 12 images and a 1-epoch run trained on them (shared by the
    command tests; each writes its own file names)."""
    root = tmp_path_factory.mktemp("search")
    make_image_folder(root / "images", classes=4, per_class=12)
    config = config_from_dict(
        {
            "model": {"backbone": "test_resnet", "embedding_dim": 16},
            "train": {"epochs": 1, "batch_size": 16, "threads": 1},
            "optim": {"warmup_epochs": 0},
            "data": {"dataset": "folder", "root": str(root / "images"), "image_size": 32},
        }
    )
    train(config, root / "run", progress=False)
    return root
