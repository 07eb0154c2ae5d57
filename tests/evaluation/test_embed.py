"""Embedding extraction (plain and DDP-sharded), fingerprints and embedding files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from supcon.evaluation.embed import (
    EmbeddingSet,
    extract_embeddings,
    load_embeddings,
    model_fingerprint,
    save_embeddings,
)


class Items(Dataset):
    """``(image, label, index)`` items of random 3×4×4 images."""

    def __init__(self, n: int = 23) -> None:
        gen = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 3, 4, 4, generator=gen)
        self.labels = torch.arange(n) % 3

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i]), i


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 6))


def test_extract_embeddings_is_the_model_output_in_order() -> None:
    items, model = Items(), tiny_model()
    model.train()
    emb, labels, ids = extract_embeddings(model, items, batch_size=5)
    with torch.no_grad():
        expected = model(items.images).numpy()
    np.testing.assert_allclose(emb, expected, rtol=1e-6)
    np.testing.assert_array_equal(labels, items.labels.numpy())
    np.testing.assert_array_equal(ids, np.arange(len(items)))
    assert model.training  # mode restored
    emb2, labels2, _ = extract_embeddings(model, items, batch_size=7)  # other batch boundaries
    np.testing.assert_allclose(emb2, emb, rtol=1e-6)
    np.testing.assert_array_equal(labels2, labels)


def test_extract_embeddings_leaves_a_frozen_submodule_in_eval_mode() -> None:
    """A frozen backbone (eval mode inside a training model) keeps its BatchNorm statistics."""
    items = Items()
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.BatchNorm2d(3), nn.Flatten())
    model = nn.Sequential(backbone, nn.Linear(48, 6))
    model.train()
    backbone.eval()  # what set_backbone_frozen does during freeze_backbone_epochs
    extract_embeddings(model, items, batch_size=5)
    assert model.training and model[1].training
    assert not backbone.training and not backbone[0].training
    running_mean = backbone[0].running_mean.clone()
    model(items.images)  # the next training step must not move the frozen statistics
    torch.testing.assert_close(backbone[0].running_mean, running_mean, rtol=0, atol=0)


def _ddp_worker(rank: int, world: int, port: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        emb, labels, ids = extract_embeddings(tiny_model(), Items(), batch_size=4)
        np.savez(f"{out}/rank{rank}.npz", emb=emb, labels=labels, ids=ids)
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_ddp_shards_are_gathered_back_in_dataset_order(tmp_path: Path) -> None:
    port = str(29500 + os.getpid() % 1000)
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    single = extract_embeddings(tiny_model(), Items(), batch_size=4)
    for rank in range(2):
        got = np.load(tmp_path / f"rank{rank}.npz")
        np.testing.assert_allclose(got["emb"], single[0], rtol=1e-6)
        np.testing.assert_array_equal(got["labels"], single[1])
        np.testing.assert_array_equal(got["ids"], single[2])


def test_fingerprint_follows_the_weights() -> None:
    a, b = tiny_model(), tiny_model()
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b[1].bias[0] += 1e-3
    assert model_fingerprint(a) != model_fingerprint(b)


def sample_set(flags: bool = True) -> EmbeddingSet:
    rng = np.random.default_rng(0)
    return EmbeddingSet(
        embeddings=rng.normal(size=(10, 4)).astype(np.float32),
        labels=np.arange(10) % 3,
        ids=np.arange(10) + 100,
        paths=tuple(f"/data/{i}.png" for i in range(10)),
        class_names=("a", "b", "c"),
        is_query=np.arange(10) < 3 if flags else None,
        is_gallery=np.arange(10) >= 3 if flags else None,
        model={"checkpoint": "/runs/x/checkpoints/last.pt", "fingerprint": "f00"},
    )


@pytest.mark.parametrize("name", ["emb.npy", "emb.safetensors"])
def test_save_load_round_trip(tmp_path: Path, name: str) -> None:
    data = sample_set()
    save_embeddings(tmp_path / name, data)
    back = load_embeddings(tmp_path / name)
    for field in ("embeddings", "labels", "ids", "is_query", "is_gallery"):
        np.testing.assert_array_equal(getattr(back, field), getattr(data, field))
    assert back.paths == data.paths and back.class_names == data.class_names
    assert back.model == data.model and back.dim == 4
    assert (tmp_path / f"{name}.json").is_file()


def test_bare_npy_loads_with_unknown_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "raw.npy", np.ones((3, 2), dtype=np.float32))
    back = load_embeddings(tmp_path / "raw.npy")
    assert back.labels.tolist() == [-1, -1, -1] and back.ids.tolist() == [0, 1, 2]
    assert back.is_query is None and back.paths is None


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=".npy or .safetensors"):
        save_embeddings(tmp_path / "emb.txt", sample_set())
    with pytest.raises(FileNotFoundError, match="not found"):
        load_embeddings(tmp_path / "nope.npy")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read"):
        load_embeddings(tmp_path / "bad.safetensors")
    save_embeddings(tmp_path / "emb.npy", sample_set())
    (tmp_path / "emb.labels.npy").unlink()
    with pytest.raises(FileNotFoundError, match="emb.labels.npy"):
        load_embeddings(tmp_path / "emb.npy")
    with pytest.raises(ValueError, match=r"labels must be \(10,\)"):
        EmbeddingSet(np.ones((10, 2)), np.zeros(9), np.arange(10))
