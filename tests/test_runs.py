"""Training on image files and loading the trained model back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from supcon.config import config_from_dict
from supcon.data import EvalDataset, load_splits
from supcon.evaluation import extract_embeddings, retrieval_metrics
from supcon.runs import find_checkpoint, load_run
from supcon.training import TrainingError, train
from tests.images import make_csv_manifest, make_image_folder

TINY = {
    "model": {"backbone": "test_resnet", "embedding_dim": 16},
    "train": {"epochs": 1, "batch_size": 16, "threads": 1},
    "optim": {"warmup_epochs": 0},
}


def tiny_config(**data):
    return config_from_dict({**TINY, "data": {"image_size": 32, **data}})


def test_train_on_image_folder_then_reload_gives_the_same_metrics(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "images", classes=4, per_class=12)
    config = tiny_config(dataset="folder", root=str(tmp_path / "images"))
    metrics = train(config, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == pytest.approx(metrics)

    run = load_run(tmp_path / "run")
    assert run.class_names == ("class_0", "class_1", "class_2", "class_3")
    assert run.checkpoint == find_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    _, test = load_splits(run.config.data, run.config.train.seed)
    embeddings, labels, _ = extract_embeddings(run.model, EvalDataset(test, run.eval_transform))
    assert embeddings.shape == (len(test), 16)
    assert retrieval_metrics(embeddings, labels) == pytest.approx(metrics)


def test_unlabeled_csv_trains_ntxent_without_metrics(tmp_path: Path) -> None:
    manifest = make_csv_manifest(tmp_path, labels=False)
    with pytest.raises(TrainingError, match="no labels; set loss.use_labels=false"):
        train(tiny_config(dataset="csv", manifest=str(manifest)), tmp_path / "a", progress=False)
    config = config_from_dict(
        {
            **TINY,
            "data": {"dataset": "csv", "manifest": str(manifest), "image_size": 32},
            "loss": {"use_labels": False},
        }
    )
    assert train(config, tmp_path / "b", progress=False) == {}
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["step"] > 0


def test_csv_query_gallery_flags_drive_the_evaluation(tmp_path: Path) -> None:
    manifest = make_csv_manifest(tmp_path, split=True, query_gallery=True)
    metrics = train(
        tiny_config(dataset="csv", manifest=str(manifest)), tmp_path / "run", progress=False
    )
    # Held-out rows are i % 4 == 0 (3 per class); queries are i % 8 == 0 (2 per class).
    assert metrics["num_queries"] == 8


def test_find_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        find_checkpoint(tmp_path)
    bogus = tmp_path / "x.pt"
    torch.save({"weights": 1}, bogus)
    with pytest.raises(ValueError, match="not a supcon checkpoint"):
        load_run(bogus)
