"""DDP: exact full-batch gradients over 2 gloo processes, and ``supcon train`` under torchrun."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pytorch_metric_learning import miners
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from supcon import CrossBatchMemory, SupConLoss
from supcon.builders import build_loss
from supcon.config import LossConfig
from supcon.data import load_digits_splits
from supcon.miners import TopKNegativeMiner
from supcon.samplers import MPerClassSampler
from supcon.training.contrast import batch_loss
from supcon.training.criterion import average_loss_gradients, step_loss
from supcon.training.gradcache import cached_backward
from tests.training.helpers import HAS_TENSORBOARD, TENSORBOARD_MISSING

ROOT = Path(__file__).resolve().parents[2]
VIEWS, SAMPLES, WORLD = 2, 12, 2


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 24), nn.LayerNorm(24), nn.GELU(), nn.Linear(24, 6)).double()


def make_batch() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(SAMPLES * VIEWS, 10, generator=generator, dtype=torch.float64)
    return images, torch.arange(SAMPLES) % 3


def full_batch_gradients(labels_used: bool, mined: str | None) -> dict[str, Tensor]:
    model = make_model()
    images, labels = make_batch()
    used = labels if labels_used else None
    loss = batch_loss(SupConLoss(0.2), model(images), used, VIEWS, miner_for(mined))
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


SCENARIOS = {
    "labels": (True, None, None),
    "views_only": (False, None, None),
    "gradcache": (True, 2, None),
    "topk_miner": (True, None, "topk"),
    "pml_miner": (True, None, "pml"),
    "gradcache_topk": (True, 2, "topk"),
}


def miner_for(mined: str | None, distributed: bool = False) -> nn.Module | None:
    if mined == "topk":
        return TopKNegativeMiner(k=4, gather_distributed=distributed)
    if mined == "pml":  # knows nothing of DDP: batch_loss mines the gathered batch
        return miners.MultiSimilarityMiner(epsilon=0.2)
    return None


def _step(rank: int, labels_used: bool, micro: int | None, mined: str | None) -> dict:
    model = make_model()
    ddp = DistributedDataParallel(model)
    images, labels = make_batch()
    per_rank = SAMPLES // WORLD  # rank r holds samples [r·b, (r+1)·b), all their views
    mine = images.view(SAMPLES, VIEWS, -1)[rank * per_rank : (rank + 1) * per_rank]
    mine_labels = labels[rank * per_rank : (rank + 1) * per_rank] if labels_used else None
    flat = mine.flatten(0, 1)
    loss_fn = SupConLoss(0.2, gather_distributed=True)
    miner = miner_for(mined, distributed=True)
    if micro is None:
        loss = batch_loss(loss_fn, ddp(flat), mine_labels, VIEWS, miner)
        loss.backward()
    else:
        loss, _ = cached_backward(
            ddp,
            flat.split(micro * VIEWS),
            lambda e: batch_loss(loss_fn, e, mine_labels, VIEWS, miner),
            no_sync=ddp.no_sync,
            buffers=model,
        )
    return {"loss": loss.detach(), "grads": {n: p.grad for n, p in model.named_parameters()}}


# PML losses through the training step: (loss name, GradCache micro-batch, miner).
PML_SCENARIOS = {
    "pml_pair_loss_pml_miner": ("multi_similarity", None, "pml"),
    "pml_pair_loss_topk_miner": ("triplet_margin", None, "topk"),
    "proxy_loss": ("proxy_anchor", None, None),
    "proxy_loss_gradcache": ("proxy_anchor", 2, None),
}


def make_pml_loss(name: str) -> nn.Module:
    torch.manual_seed(2)  # the same proxies in every process
    return build_loss(LossConfig(name=name), num_classes=3, embedding_size=6).double()


def pml_full_batch_gradients(name: str, mined: str | None) -> dict[str, Tensor]:
    model, loss_fn = make_model(), make_pml_loss(name)
    images, labels = make_batch()
    loss = step_loss(loss_fn, model(images), labels, VIEWS, miner_for(mined))
    loss.backward()
    params = [*model.named_parameters(), *(("loss." + n, p) for n, p in loss_fn.named_parameters())]
    return {name: p.grad for name, p in params}


def _pml_step(rank: int, name: str, micro: int | None, mined: str | None) -> dict:
    """Each rank embeds its share; the PML loss sees the gathered batch (miner too)."""
    model, loss_fn = make_model(), make_pml_loss(name)
    ddp = DistributedDataParallel(model)
    images, labels = make_batch()
    per_rank = SAMPLES // WORLD
    flat = images.view(SAMPLES, VIEWS, -1)[rank * per_rank : (rank + 1) * per_rank].flatten(0, 1)
    mine_labels = labels[rank * per_rank : (rank + 1) * per_rank]
    miner = miner_for(mined)  # not gathering itself: it mines the gathered batch

    def loss_of(e: Tensor) -> Tensor:
        return step_loss(loss_fn, e, mine_labels, VIEWS, miner)

    if micro is None:
        loss = loss_of(ddp(flat))
        loss.backward()
    else:
        loss, _ = cached_backward(
            ddp, flat.split(micro * VIEWS), loss_of, no_sync=ddp.no_sync, buffers=model
        )
    average_loss_gradients(loss_fn)
    params = [*model.named_parameters(), *(("loss." + n, p) for n, p in loss_fn.named_parameters())]
    return {"loss": loss.detach(), "grads": {n: p.grad for n, p in params}}


def memory_rows() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(4)
    return torch.randn(8, 6, generator=generator, dtype=torch.float64), torch.arange(8) % 3


def memory_full_batch() -> dict:
    """SupCon against a filled memory, then the whole batch enqueued."""
    model, memory = make_model(), CrossBatchMemory(16, 6, dtype=torch.float64)
    memory.enqueue(*memory_rows())
    images, labels = make_batch()
    embeddings = model(images)
    batch_loss(SupConLoss(0.2), embeddings, labels, VIEWS, refs=memory.as_refs()).backward()
    memory.enqueue(embeddings.detach().view(SAMPLES, VIEWS, -1), labels)
    grads = {n: p.grad for n, p in model.named_parameters()}
    return {"grads": grads, "memory": memory.state_dict()}


def _memory_step(rank: int) -> dict:
    """Each rank fills its share; ``enqueue`` gathers, so every rank holds every row."""
    model, memory = make_model(), CrossBatchMemory(16, 6, dtype=torch.float64)
    ddp = DistributedDataParallel(model)
    rows, row_labels = memory_rows()
    memory.enqueue(rows[rank * 4 : (rank + 1) * 4], row_labels[rank * 4 : (rank + 1) * 4])
    images, labels = make_batch()
    per_rank = SAMPLES // WORLD
    flat = images.view(SAMPLES, VIEWS, -1)[rank * per_rank : (rank + 1) * per_rank].flatten(0, 1)
    mine_labels = labels[rank * per_rank : (rank + 1) * per_rank]
    loss_fn = SupConLoss(0.2, gather_distributed=True)
    embeddings = ddp(flat)
    step_loss(loss_fn, embeddings, mine_labels, VIEWS, memory=memory).backward()
    memory.enqueue(embeddings.detach().view(per_rank, VIEWS, -1), mine_labels)
    grads = {n: p.grad for n, p in model.named_parameters()}
    return {"grads": grads, "memory": memory.state_dict()}


def _worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        results = {name: _step(rank, *args) for name, args in SCENARIOS.items()}
        results |= {name: _pml_step(rank, *args) for name, args in PML_SCENARIOS.items()}
        results["memory"] = _memory_step(rank)
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_ddp_gradients_equal_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    """Labels, views only (NT-Xent), GradCache micro-batches with ``no_sync``, a miner."""
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for name, (labels_used, _, mined) in SCENARIOS.items():
        expected = full_batch_gradients(labels_used, mined)
        losses = [ranks[r][name]["loss"] for r in range(WORLD)]
        torch.testing.assert_close(losses[0], losses[1], atol=0, rtol=0)
        for result in ranks:
            for param, grad in expected.items():
                torch.testing.assert_close(
                    result[name]["grads"][param], grad, atol=1e-12, rtol=1e-9, msg=name
                )
    for name, (loss_name, _, mined) in PML_SCENARIOS.items():
        expected = pml_full_batch_gradients(loss_name, mined)
        assert any(p.startswith("loss.") for p in expected) == ("proxy" in name)
        losses = [ranks[r][name]["loss"] for r in range(WORLD)]
        torch.testing.assert_close(losses[0], losses[1], atol=0, rtol=0)
        for result in ranks:
            assert result[name]["grads"].keys() == expected.keys()
            for param, grad in expected.items():
                torch.testing.assert_close(
                    result[name]["grads"][param], grad, atol=1e-12, rtol=1e-9, msg=name
                )
    # Cross-batch memory: exact gradients, and every rank holds the same queue (the one a
    # single process holds after the whole batch).
    expected = memory_full_batch()
    for result in ranks:
        for param, grad in expected["grads"].items():
            torch.testing.assert_close(
                result["memory"]["grads"][param], grad, atol=1e-12, rtol=1e-9
            )
    queues = [r["memory"]["memory"] for r in ranks]
    for key, value in queues[0].items():
        assert torch.equal(value, queues[1][key]), key
    single = expected["memory"]
    assert int(queues[0]["filled"]) == int(single["filled"]) == 16
    assert torch.equal(queues[0]["queue_labels"], single["queue_labels"])
    torch.testing.assert_close(queues[0]["queue_embeddings"], single["queue_embeddings"])


@pytest.mark.dist
def test_torchrun_two_cpu_processes_train_digits(tmp_path: Path) -> None:
    """Digits under torchrun with the DDP-aware M-per-class sampler and the top-k miner."""
    train, _ = load_digits_splits(16, 0.25, 0)
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "supcon",
            "train",
            str(ROOT / "recipes" / "digits.yaml"),
            "train.epochs=2",
            "train.threads=1",
            "sampler.name=m_per_class",
            "sampler.args={m: 32}",
            "miner.name=topk",
            "miner.args={k: 64}",
            "train.device=cpu",
            "--out",
            str(out),
            "--no-progress",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("recall@1") == 1  # only rank 0 prints
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_queries"] == 450 and metrics["recall@1"] > 0.5  # random: ~0.1
    assert json.loads((out / "meta.json").read_text())["world_size"] == 2
    with (out / "log.csv").open() as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    # Each rank draws 4 classes × 32 of the global 256; every global step is logged once.
    per_epoch = len(MPerClassSampler(train.labels, m=32, batch_size=128, num_replicas=2, rank=0))
    assert steps == list(range(1, 2 * per_epoch + 1))
    if HAS_TENSORBOARD:
        assert len(list((out / "tensorboard").iterdir())) == 1
    else:
        assert not (out / "tensorboard").exists()
        assert result.stderr.count(TENSORBOARD_MISSING) == 1  # rank 0 only
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt", "prev.pt"]


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc; Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers in /proc")
def test_torchrun_sigterm_to_one_rank_stops_both_after_the_same_step(tmp_path: Path) -> None:
    """Only one worker gets SIGTERM: the per-step all-reduce stops both ranks, no deadlock."""
    import signal
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "supcon", "train", str(ROOT / "recipes" / "digits.yaml"), "train.epochs=3"]
    command += ["train.threads=1", "train.device=cpu", "train.tensorboard=false"]
    command += ["--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    agent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not (out / "log.csv").exists() or len((out / "log.csv").read_text().splitlines()) < 3:
        assert agent.poll() is None and time.monotonic() < deadline, "ended too early"
        time.sleep(0.05)
    workers = sorted(_children(agent.pid))
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGTERM)  # one rank only (which one is rank 0 does not matter)
    _, err = agent.communicate(timeout=300)  # a deadlock would hang here
    from supcon.training.checkpoint import load_checkpoint

    saved = load_checkpoint(out / "checkpoints" / "last.pt")
    assert 2 <= saved["step"] < 3 * 5 and not (out / "metrics.json").exists()
    assert not (out / ".lock").exists()
    assert f"supcon train --resume {out}" in err.decode()
    assert "exitcode  : 143" in err.decode() or agent.returncode != 0
    resumed = subprocess.run(
        [*command[:5], "-m", "supcon", "train", "--resume", str(out), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["num_queries"] == 450
