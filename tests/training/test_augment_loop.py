"""Augmentation settings in training runs: grayscale stems, the recorded pipeline, persistent
workers that keep per-sample augmentation (and resume) exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from safetensors.torch import save_file

import supcon.training.saving as saving
from supcon.builders import build_model
from supcon.cli import main
from supcon.data import MultiViewDataset, build_augmentation, load_splits
from supcon.runs import load_run
from supcon.training import train
from supcon.training.checkpoint import load_checkpoint
from supcon.training.sampling import EpochBatches, RandomBatchSampler
from tests.training.helpers import rows, tiny


def test_grayscale_run_trains_a_one_channel_stem_and_embeds_files(
    images: Path, tmp_path: Path
) -> None:
    config = tiny(images, data={"channels": 1}, train={"epochs": 1})
    train(config, tmp_path / "run", progress=False)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["channels"] == 1 and saved["augment"]["preset"] == "retrieval"
    assert saved["eval"]["resize"] == "crop"
    pipeline = (tmp_path / "run" / "augment.txt").read_text()
    assert "RandomResizedCrop" in pipeline and "CenterCrop" in pipeline
    run = load_run(tmp_path / "run")
    assert run.model.backbone.conv1[0].in_channels == 1
    out = tmp_path / "emb.npy"
    assert main(["embed", str(tmp_path / "run"), "--data", str(images), "--out", str(out)]) == 0
    assert np.load(out).shape == (40, run.model.embedding_dim)


def test_three_channel_weights_file_adapts_to_a_grayscale_stem(
    images: Path, tmp_path: Path
) -> None:
    source = timm.create_model("test_resnet", num_classes=0)
    path = tmp_path / "rgb.safetensors"
    save_file(source.state_dict(), str(path))
    config = tiny(images, data={"channels": 1}, model={"weights": str(path)}, train={"epochs": 1})
    model = build_model(config.model, 1)
    stem = model.backbone.conv1[0].weight
    assert stem.shape[1] == 1
    # timm's adapt_input_conv sums the RGB filters for one channel.
    torch.testing.assert_close(stem, source.conv1[0].weight.sum(dim=1, keepdim=True))
    train(config, tmp_path / "run", progress=False)  # and trains
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["in_chans"] == 1


def test_epoch_pairs_give_the_views_of_set_epoch(images: Path) -> None:
    config = tiny(images)
    split, _ = load_splits(config.data, 0)
    dataset = MultiViewDataset(split, build_augmentation("simclr", 16), views=2, seed=5)
    batches = EpochBatches(RandomBatchSampler(len(split), 10, seed=0))
    batches.set_epoch(3, skip=1)
    pairs = list(batches)
    assert len(pairs) == len(batches) == 2 and all(e == 3 for b in pairs for e, _ in b)
    dataset.set_epoch(0)  # ignored: the pair carries the epoch
    first = [dataset[p][0] for p in pairs[0]]
    dataset.set_epoch(3)
    for (_, index), views in zip(pairs[0], first, strict=True):
        assert torch.equal(dataset[index][0], views)


class CrashError(Exception):
    pass


def test_persistent_workers_resume_like_an_uninterrupted_run(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3 steps per epoch; the "crash" comes right after the mid-epoch checkpoint of step 4.
    settings = {"train": {"epochs": 2, "checkpoint_every": 1}, "augment": {"preset": "simclr"}}
    straight = tiny(images, **settings, data={"num_workers": 0})
    train(straight, tmp_path / "straight", progress=False)

    workers = tiny(images, **settings, data={"num_workers": 2})
    real_save = saving.save_rotating  # how last.pt is written

    def save_then_crash(path: Path, content: dict) -> Path:
        saved = real_save(path, content)
        if content["step"] == 4:
            raise CrashError
        return saved

    monkeypatch.setattr(saving, "save_rotating", save_then_crash)
    with pytest.raises(CrashError):
        train(workers, tmp_path / "killed", progress=False)
    monkeypatch.setattr(saving, "save_rotating", real_save)
    train(workers, tmp_path / "killed", progress=False, resume=True)

    runs = tmp_path / "straight", tmp_path / "killed"
    logged = [[(r["step"], r["loss"]) for r in rows(run / "log.csv")] for run in runs]
    assert len(logged[0]) == 6 and logged[0] == logged[1]  # every step once, same losses
    metrics = [(run / "metrics.json").read_text() for run in runs]
    assert metrics[0] == metrics[1]
    final = [load_checkpoint(run / "checkpoints" / "last.pt")["model"] for run in runs]
    for name, tensor in final[0].items():
        assert torch.equal(final[1][name], tensor), name
