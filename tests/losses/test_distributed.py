"""gather_distributed: a 2-process gloo DDP run equals one process seeing the whole batch.

Every scenario builds the same full batch from a seed and a tiny float64 model. With a process
group, rank r takes its share of the samples (unequal shares), wraps the model in DDP and calls
the loss with ``gather_distributed=True``; without one, the single process takes everything.
Loss values (on every rank) and DDP-averaged parameter gradients must match the single-process
ones. All scenarios run in one spawn of two processes to keep the test fast.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pytorch_metric_learning import miners

from supcon import CrossBatchMemory, SupConLoss
from supcon.distributed import get_rank, get_world_size, is_distributed

pytestmark = pytest.mark.dist

IN_DIM, OUT_DIM = 6, 5
SHARES = (0.6, 0.4)  # rank 0 holds more samples than rank 1


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(IN_DIM, OUT_DIM, dtype=torch.float64)


def _share(num: int) -> slice:
    """This process's slice of ``num`` samples (everything when not distributed)."""
    if not is_distributed():
        return slice(0, num)
    cut = round(num * SHARES[0])
    return slice(0, cut) if get_rank() == 0 else slice(cut, num)


def _wrap(model: torch.nn.Module) -> torch.nn.Module:
    if is_distributed():
        return torch.nn.parallel.DistributedDataParallel(model)
    return model


def _result(loss: torch.Tensor, model: torch.nn.Module, **extra) -> dict:
    return {
        "loss": loss.item(),
        "grads": [p.grad.detach().clone() for p in model.parameters()],
        **extra,
    }


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _labelled(tiled: bool, **loss_kwargs) -> Callable[[], dict]:
    def run() -> dict:
        x = torch.randn(23, IN_DIM, generator=_gen(1), dtype=torch.float64)
        labels = torch.randint(0, 4, (23,), generator=_gen(2))
        model = _model()
        net = _wrap(model)
        part = _share(23)
        loss_fn = SupConLoss(0.2, tiled=tiled, block_size=4, gather_distributed=True, **loss_kwargs)
        loss = loss_fn(net(x[part]), labels[part])
        loss.backward()
        return _result(loss, model, anchors=loss_fn.last_stats.num_anchors)

    return run


def _views(tiled: bool, views: int, with_labels: bool, contrast_mode: str = "all") -> Callable:
    def run() -> dict:
        x = torch.randn(11, views, IN_DIM, generator=_gen(3), dtype=torch.float64)
        labels = torch.randint(0, 3, (11,), generator=_gen(4))
        model = _model()
        net = _wrap(model)
        part = _share(11)
        loss_fn = SupConLoss(
            0.3, contrast_mode=contrast_mode, tiled=tiled, block_size=3, gather_distributed=True
        )
        loss = loss_fn(net(x[part]), labels[part] if with_labels else None)
        loss.backward()
        return _result(loss, model)

    return run


def _multi_hot(tiled: bool) -> Callable[[], dict]:
    def run() -> dict:
        x = torch.randn(17, IN_DIM, generator=_gen(5), dtype=torch.float64)
        hot = (torch.rand(17, 4, generator=_gen(6)) < 0.35).long()
        model = _model()
        net = _wrap(model)
        part = _share(17)
        loss = SupConLoss(0.1, tiled=tiled, gather_distributed=True)(net(x[part]), hot[part])
        loss.backward()
        return _result(loss, model)

    return run


def _sample_ids(tiled: bool) -> Callable[[], dict]:
    def run() -> dict:
        # Rows of one sample must stay on one rank: ids are per rank (the full-batch reference
        # offsets rank 1's ids so they stay distinct).
        x = torch.randn(20, IN_DIM, generator=_gen(7), dtype=torch.float64)
        ids = torch.arange(20) // 2
        model = _model()
        net = _wrap(model)
        part = _share(10)
        rows = slice(2 * part.start, 2 * part.stop)
        local_ids = ids[rows] - (ids[rows].min() if is_distributed() else 0)
        loss_fn = SupConLoss(0.2, tiled=tiled, gather_distributed=True)
        loss = loss_fn(net(x[rows]), sample_ids=local_ids)
        loss.backward()
        return _result(loss, model)

    return run


def _mined(tiled: bool | None, miner_name: str, force_sparse: bool = False) -> Callable[[], dict]:
    def run() -> dict:
        import supcon.losses.functional as functional

        saved = functional.SPARSE_MAX_DENSITY
        if force_sparse:
            functional.SPARSE_MAX_DENSITY = 2.0
        try:
            return _mined_run(tiled, miner_name)
        finally:
            functional.SPARSE_MAX_DENSITY = saved

    return run


def _mined_run(tiled: bool | None, miner_name: str) -> dict:
    x = torch.randn(24, IN_DIM, generator=_gen(8), dtype=torch.float64)
    labels = torch.randint(0, 4, (24,), generator=_gen(9))
    model = _model()
    net = _wrap(model)
    # A gathered miner sees the whole batch and returns global indices.
    with torch.no_grad():
        full = model(x)
    miner = {
        "ms": miners.MultiSimilarityMiner(0.1),
        "hard": miners.BatchHardMiner(),
    }[miner_name]
    indices_tuple = miner(full, labels)
    part = _share(24)
    loss_fn = SupConLoss(0.1, tiled=tiled, block_size=5, gather_distributed=True)
    loss = loss_fn(net(x[part]), labels[part], indices_tuple=indices_tuple)
    loss.backward()
    return _result(loss, model, path=loss_fn.last_stats.path)


def _memory(tiled: bool) -> Callable[[], dict]:
    def run() -> dict:
        model = _model()
        net = _wrap(model)
        memory = CrossBatchMemory(size=20, dim=OUT_DIM, dtype=torch.float64)
        loss_fn = SupConLoss(0.2, tiled=tiled, block_size=4, gather_distributed=True)
        losses = []
        for step in range(3):
            x = torch.randn(9, IN_DIM, generator=_gen(20 + step), dtype=torch.float64)
            labels = torch.randint(0, 3, (9,), generator=_gen(30 + step))
            part = _share(9)
            model.zero_grad()
            z = net(x[part])
            loss = loss_fn(z, labels[part], **memory.as_refs())
            loss.backward()
            losses.append(loss.item())
            memory.enqueue(z, labels[part])
        order = torch.argsort(memory.labels * 1000 + torch.arange(len(memory)))
        return _result(
            loss,
            model,
            losses=losses,
            queue=memory.embeddings[order].clone(),
            queue_labels=memory.labels[order].clone(),
        )

    return run


def _no_positives() -> dict:
    import warnings

    x = torch.randn(6, IN_DIM, generator=_gen(10), dtype=torch.float64)
    model = _model()
    net = _wrap(model)
    part = _share(6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = SupConLoss(gather_distributed=True)(net(x[part]), torch.arange(6)[part])
    loss.backward()  # must not hang: every rank goes through the gather's backward
    return _result(loss, model)


def _mask_is_refused() -> dict:
    x = torch.randn(4, OUT_DIM, dtype=torch.float64)
    try:
        SupConLoss(gather_distributed=True)(x, mask=torch.eye(4, dtype=torch.bool))
    except ValueError as error:
        return {"error": str(error)}
    return {"error": ""}


SCENARIOS: dict[str, Callable[[], dict]] = {
    "labels-dense": _labelled(False),
    "labels-tiled": _labelled(True),
    "labels-hcl-tiled": _labelled(True, hcl_beta=1.0),
    "labels-hcl-dense": _labelled(False, hcl_beta=1.0),
    "views2-dense": _views(False, 2, False),
    "views2-tiled": _views(True, 2, False),
    "views3-labels-tiled": _views(True, 3, True),
    "views3-one-tiled": _views(True, 3, True, contrast_mode="one"),
    "views2-one-dense": _views(False, 2, False, contrast_mode="one"),
    "multi_hot-tiled": _multi_hot(True),
    "sample_ids-tiled": _sample_ids(True),
    "sample_ids-dense": _sample_ids(False),
    "mined-ms-tiled": _mined(True, "ms"),
    "mined-ms-dense": _mined(False, "ms"),
    "mined-hard-tiled": _mined(True, "hard"),
    "mined-hard-sparse": _mined(None, "hard", force_sparse=True),
    "mined-ms-sparse": _mined(None, "ms", force_sparse=True),
    "memory-tiled": _memory(True),
    "memory-dense": _memory(False),
    "no-positives": _no_positives,
}


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = {name: run() for name, run in SCENARIOS.items()}
        results["mask"] = _mask_is_refused()
        results["world"] = get_world_size()
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results() -> list[dict]:
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(
            _worker, args=(2, _free_port(), out_dir), nprocs=2, join=True, start_method="spawn"
        )
        return [torch.load(Path(out_dir) / f"rank{r}.pt") for r in range(2)]


@pytest.fixture(scope="module")
def single_results() -> dict[str, dict]:
    assert not is_distributed()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: run() for name, run in SCENARIOS.items()}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_two_ranks_equal_one_process(name: str, ddp_results, single_results) -> None:
    expected = single_results[name]
    for rank, results in enumerate(ddp_results):
        assert results["world"] == 2
        got = results[name]
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-10, abs=1e-12), rank
        for g, e in zip(got["grads"], expected["grads"], strict=True):
            torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-12)
        for key in ("losses", "queue", "queue_labels", "anchors", "path"):
            if key in expected:
                if isinstance(expected[key], torch.Tensor):
                    torch.testing.assert_close(got[key], expected[key])
                elif key == "losses":
                    assert got[key] == pytest.approx(expected[key], rel=1e-10)
                else:
                    assert got[key] == expected[key]
    if name == "no-positives":
        assert expected["loss"] == 0.0


def test_scenarios_are_not_trivial(single_results) -> None:
    # Guard against a vacuous comparison: real losses and non-zero gradients.
    for name, result in single_results.items():
        if name != "no-positives":
            assert result["loss"] > 0.0, name
            assert any(g.abs().sum() > 0 for g in result["grads"]), name


def test_sparse_scenarios_took_the_sparse_path(single_results) -> None:
    assert single_results["mined-hard-sparse"]["path"] == "sparse"
    assert single_results["mined-ms-tiled"]["path"] == "tiled"


def test_labels_anchor_counts_are_global(ddp_results) -> None:
    assert all(r["labels-tiled"]["anchors"] == 23 for r in ddp_results)


def test_mask_with_gather_is_refused(ddp_results) -> None:
    assert all(
        "mask cannot be combined with gather_distributed" in r["mask"]["error"] for r in ddp_results
    )
