"""``gather_rows`` with two ranks simulated in one process.

The collectives are replaced by stand-ins that return the rank-major concatenation of what
each rank contributes: every rank runs once to record its contribution, then again against the
recorded contributions of all ranks (``gather_rows`` is deterministic). The two-process tests
in ``test_distributed.py`` check the same end to end, but only in spawned children.
"""

from __future__ import annotations

import pytest
import torch

import supcon.losses.gather as gather
from supcon.losses.rows import LocalRows

SIZES = [5, 3]  # rank 0 holds more distinct sample ids than rank 1 has rows


def _local(rank: int, kind: str) -> LocalRows:
    gen = torch.Generator().manual_seed(rank)
    n = SIZES[rank]
    flat = torch.randn(n, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    if kind == "labels":
        keys = torch.tensor([[7, 2, 7, 2, 9], [9, 7, 1]][rank])
        return LocalRows(flat, n, keys=keys, keys_are_labels=True)
    if kind == "sample_ids":  # both ranks use ids from 0: views of one sample, per rank
        keys = torch.tensor([[5, 0, 5, 2, 9], [0, 3, 0]][rank])
        return LocalRows(flat, n, keys=keys)
    pattern = [[[1, 0], [0, 1], [1, 1], [0, 1], [1, 0]], [[0, 1], [1, 1], [0, 1]]][rank]
    multi_hot = torch.tensor(pattern, dtype=torch.bool)
    return LocalRows(flat, n, multi_hot=multi_hot)


def _gather_all(kind: str, monkeypatch) -> list[tuple[LocalRows, int, bool, LocalRows]]:
    """Each rank's ``(gathered, offset, distributed, local)``."""
    state = {"rank": 0, "calls": 0}
    recorded: dict[tuple[int, int], torch.Tensor] = {}

    def collective(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        assert sizes == SIZES and tensor.shape[0] == SIZES[state["rank"]]
        call = state["calls"]
        state["calls"] += 1
        recorded[(state["rank"], call)] = tensor
        parts = [recorded.get((r, call), tensor.detach() * 0) for r in range(len(SIZES))]
        parts[state["rank"]] = tensor
        return torch.cat(parts)

    monkeypatch.setattr(gather, "is_distributed", lambda: True)
    monkeypatch.setattr(gather, "get_rank", lambda: state["rank"])

    def exchange_sizes(rows: int, device) -> list[int]:
        return [int(rows) if r == state["rank"] else n for r, n in enumerate(SIZES)]

    monkeypatch.setattr(gather, "gather_sizes", exchange_sizes)
    monkeypatch.setattr(gather, "all_gather_variable_with_grad", collective)
    monkeypatch.setattr(gather, "all_gather_variable_no_grad", collective)
    local = [_local(r, kind) for r in range(len(SIZES))]
    for rank in range(len(SIZES)):  # record every rank's contributions
        state.update(rank=rank, calls=0)
        gather.gather_rows(local[rank])
    out = []
    for rank in range(len(SIZES)):
        state.update(rank=rank, calls=0)
        out.append((*gather.gather_rows(local[rank]), local[rank]))
    return out


@pytest.mark.parametrize("kind", ["labels", "sample_ids", "multi_hot"])
def test_every_rank_sees_the_rank_major_batch(kind: str, monkeypatch) -> None:
    results = _gather_all(kind, monkeypatch)
    whole = torch.cat([local.flat for *_, local in results])
    for rank, (rows, offset, distributed, local) in enumerate(results):
        assert distributed and offset == sum(SIZES[:rank])
        assert torch.equal(rows.flat, whole)
        assert rows.num_anchors == local.num_anchors
        assert rows.keys_are_labels == (kind == "labels")
        assert rows.keys is None or rows.keys.dtype == torch.int64
    first = results[0][0]
    if kind == "labels":  # global: gathered as they are
        assert first.keys.tolist() == [7, 2, 7, 2, 9, 9, 7, 1] and first.multi_hot is None
    elif kind == "sample_ids":
        # Same id on one rank = same sample; equal ids on different ranks are different samples.
        rank_of = [0] * SIZES[0] + [1] * SIZES[1]
        ids = [5, 0, 5, 2, 9, 0, 3, 0]
        keys = first.keys.tolist()
        for i in range(8):
            for j in range(8):
                same = rank_of[i] == rank_of[j] and ids[i] == ids[j]
                assert (keys[i] == keys[j]) == same, (i, j)
        assert torch.equal(results[1][0].keys, first.keys)
    else:
        expected = torch.cat([local.multi_hot for *_, local in results])
        assert first.multi_hot.dtype == torch.bool and torch.equal(first.multi_hot, expected)
        assert first.keys is None


def test_the_gradient_of_a_gathered_row_reaches_its_rank(monkeypatch) -> None:
    rows, offset, _, local = _gather_all("labels", monkeypatch)[1]
    weights = torch.arange(8 * 4, dtype=torch.float64).reshape(8, 4)
    (rows.flat * weights).sum().backward()
    assert torch.equal(local.flat.grad, weights[offset : offset + SIZES[1]])


def test_a_mask_is_refused_under_a_gather(monkeypatch) -> None:
    monkeypatch.setattr(gather, "is_distributed", lambda: True)
    rows = LocalRows(torch.randn(3, 2), 3, dense_positive=torch.eye(3, dtype=torch.bool))
    with pytest.raises(ValueError) as info:
        gather.gather_rows(rows)
    assert str(info.value) == (
        "mask cannot be combined with gather_distributed=True (a per-rank mask does not "
        "describe pairs across ranks); pass labels or sample_ids instead."
    )


def test_no_gather_without_a_process_group() -> None:
    rows = _local(0, "labels")
    out = gather.gather_rows(rows)
    assert out[0] is rows and out[1:] == (0, False)
