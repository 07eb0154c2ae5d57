"""Fixtures of the export tests: untrained runs (a checkpoint is all ``load_run`` needs) of a
small CNN and a small ViT, and a folder of generated images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from supcon.builders import build_model
from supcon.config import config_from_dict, config_to_dict
from supcon.training.checkpoint import save_checkpoint
from tests.images import make_image_folder

CLASSES = ("class_0", "class_1", "class_2")


def make_run(root: Path, backbone: str, image_size: int | None, head: str = "mlp") -> Path:
    """``root/checkpoints/last.pt`` for a randomly initialised model on ``root/../images``."""
    config = config_from_dict(
        {
            "model": {"backbone": backbone, "embedding_dim": 16, "head": head},
            "data": {"dataset": "folder", "root": str(root.parent / "images"),
                     "image_size": image_size},
        }
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config.model, 3, pretrained=False).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    state = {
        "model": model.state_dict(),
        "config": config_to_dict(config),
        "in_chans": 3,
        "class_names": list(CLASSES),
    }
    save_checkpoint(root / "checkpoints" / "last.pt", state)
    return root


@pytest.fixture(scope="session")
def export_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``images/`` (3 classes × 6) with a ``cnn`` run (test_resnet, 32 px) and a ``vit`` run
    (test_vit at its own 160 px)."""
    root = tmp_path_factory.mktemp("export")
    make_image_folder(root / "images", classes=len(CLASSES), per_class=6)
    make_run(root / "cnn", "test_resnet", 32)
    make_run(root / "vit", "test_vit", None, head="linear")
    return root
