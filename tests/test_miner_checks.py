"""TopKNegativeMiner's argument checks word for word, its working precision, and the
positive-pair helper against brute force."""

from __future__ import annotations

import math

import pytest
import torch

from supcon.miners import TopKNegativeMiner, create_miner, flatten_views, positive_pairs


def _rand(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: TopKNegativeMiner(4)(torch.arange(8).reshape(4, 2), torch.arange(4)),
            "embeddings must be a floating-point torch.Tensor.",
        ),
        (
            lambda: TopKNegativeMiner(4)(_rand(4, 2), torch.tensor([0.0, 1.5, 2.0, 3.0])),
            "labels must be integer class ids, got non-integer floats; map your labels to ints "
            "first (e.g. with numpy.unique(..., return_inverse=True)).",
        ),
        (
            lambda: TopKNegativeMiner(4)(_rand(4, 2)[:0], torch.arange(4)[:0]),
            "embeddings is empty; pass a non-empty batch.",
        ),
        (
            # (B, V, D) references with (B, 1) labels: named as ref_* by the miner's own check.
            lambda: TopKNegativeMiner(4)(
                _rand(4, 2), torch.arange(4), _rand(3, 2, 2), torch.arange(3)[:, None]
            ),
            "ref_labels must be (B,) = (3,) for (B, V, D) ref_emb, got shape (3, 1).",
        ),
        (
            lambda: TopKNegativeMiner(0),
            "k must be a positive int (negatives kept per anchor), got 0; typical values are "
            "8-64, or use no miner to keep every negative.",
        ),
        (
            lambda: TopKNegativeMiner(4, block_rows=2.5),
            "block_rows must be a positive int or None, got 2.5.",
        ),
        (
            lambda: flatten_views(_rand(4, 3), torch.arange(4)),
            "flatten_views needs (B, V, D) embeddings, got shape (4, 3).",
        ),
        (
            lambda: flatten_views(_rand(4, 2, 3), torch.arange(5)),
            "labels must be (B,) = (4,) for (B, V, D) embeddings, got shape (5,).",
        ),
        (
            lambda: create_miner("none", k=3),
            "miner 'none' takes no arguments, got ['k'].",
        ),
    ],
)
def test_bad_input_messages_in_full(call, message: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_a_single_anchor_against_references_is_mined() -> None:
    """One row is a batch (only an empty one is refused); brute force by hand."""
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    a1, p, a2, n = TopKNegativeMiner(2)(
        torch.tensor([[1.0, 0.1]]), torch.tensor([5]), ref, torch.tensor([5, 1, 2, 5])
    )
    assert a1.tolist() == [0, 0] and p.tolist() == [0, 3]
    assert a2.tolist() == [0, 0] and n.tolist() == [2, 1]  # cos 0.65 then 0.10


def test_block_rows_of_one_gives_the_pairs_of_one_block() -> None:
    emb, labels = _rand(12, 5, seed=1), torch.arange(12) % 3
    one = TopKNegativeMiner(3, block_rows=1)(emb, labels)
    whole = TopKNegativeMiner(3, block_rows=12)(emb, labels)
    assert all(torch.equal(x, y) for x, y in zip(one, whole, strict=True))


def test_defaults_in_repr() -> None:
    miner = TopKNegativeMiner(3)
    assert miner.extra_repr() == "k=3, semi_hard=False, gather_distributed=False"


def test_float64_input_is_mined_in_float64() -> None:
    """Two negatives 1e-9 rad apart: float64 ranks them, float32 cannot."""
    t, t2 = 0.6, 0.6 - 1e-9
    emb = torch.tensor(
        [
            [1.0, 0.0, 0.0],
            [0.99, 0.01, 0.0],
            [math.cos(t), math.sin(t), 0.0],
            [math.cos(t2), 0.0, math.sin(t2)],  # the harder negative of anchor 0
            [0.0, -1.0, 0.0],
            [0.0, -0.99, 0.01],
        ],
        dtype=torch.float64,
    )
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    _, _, a2, n = TopKNegativeMiner(1)(emb, labels)
    assert a2[0].item() == 0 and n[0].item() == 3
    # In float32 the two tie (so the comparison above can fail).
    _, _, _, n32 = TopKNegativeMiner(1)(emb.float(), labels)
    assert n32[0].item() == 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_input_is_mined_in_float32(dtype: torch.dtype) -> None:
    """Exactly the pairs of the same values in float32 (half-precision similarities reorder
    near-ties in this batch)."""
    gen = torch.Generator().manual_seed(0 if dtype == torch.float16 else 1)
    emb = torch.randn(48, 16, generator=gen).to(dtype)
    labels = torch.randint(0, 4, (48,), generator=gen)
    got = TopKNegativeMiner(4)(emb, labels)
    expected = TopKNegativeMiner(4)(emb.float(), labels)
    assert all(torch.equal(x, y) for x, y in zip(got, expected, strict=True))


def test_positive_pairs_exclude_self_by_default_against_brute_force() -> None:
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 1])
    a1, p = positive_pairs(labels, labels)
    expected = [(i, j) for i in range(7) for j in range(7) if i != j and labels[i] == labels[j]]
    assert list(zip(a1.tolist(), p.tolist(), strict=True)) == expected
    # Against references (self_offset=None): every equal label, including the same index.
    a1, p = positive_pairs(labels[:3], labels, self_offset=None)
    expected = [(i, j) for i in range(3) for j in range(7) if labels[i] == labels[j]]
    assert list(zip(a1.tolist(), p.tolist(), strict=True)) == expected


def test_pair_counts_start_at_zero_and_follow_each_call() -> None:
    miner = TopKNegativeMiner(2)
    assert (miner.num_pos_pairs, miner.num_neg_pairs) == (0, 0)
    a1, _, a2, _ = miner(_rand(9, 4, seed=2), torch.arange(9) % 3)
    assert (miner.num_pos_pairs, miner.num_neg_pairs) == (len(a1), len(a2)) == (18, 18)


def test_block_rows_reaches_the_mining(monkeypatch) -> None:
    import supcon.miners as miners

    seen: list[int | None] = []
    real = miners.mine_topk_negatives

    def spy(*args, **kwargs):
        seen.append(kwargs["block_rows"])
        return real(*args, **kwargs)

    monkeypatch.setattr(miners, "mine_topk_negatives", spy)
    TopKNegativeMiner(2, block_rows=5)(_rand(9, 4), torch.arange(9) % 3)
    TopKNegativeMiner(2)(_rand(9, 4), torch.arange(9) % 3)
    assert seen == [5, None]


def test_gathered_mining_of_two_simulated_ranks_equals_mining_the_whole_batch(
    monkeypatch,
) -> None:
    """Each "rank" mines its own anchors against the rank-major concatenation (the gather is
    replaced by the whole batch); the union over ranks is single-process mining of it."""
    import supcon.miners as miners

    whole, labels = _rand(11, 4, seed=3), torch.tensor([0, 0, 2, 1, 1, 2, 3, 3, 0, 2, 1])
    sizes, offsets = [5, 6], [0, 5]
    rank = 0

    def exchange_sizes(rows: int, device=None) -> list[int]:
        return [int(rows) if r == rank else n for r, n in enumerate(sizes)]

    def gather(tensor: torch.Tensor, got_sizes: list[int] | None = None) -> torch.Tensor:
        """Rank-major rows, each rank's cut to its exchanged size (as the real gather does)."""
        got_sizes = exchange_sizes(tensor.shape[0]) if got_sizes is None else got_sizes
        full = whole if tensor.is_floating_point() else labels
        pieces = [full[o : o + n] for o, n in zip(offsets, got_sizes, strict=True)]
        pieces[rank] = tensor[: got_sizes[rank]]
        return torch.cat(pieces)

    monkeypatch.setattr(miners, "is_distributed", lambda: True)
    monkeypatch.setattr(miners, "gather_sizes", exchange_sizes)
    monkeypatch.setattr(miners, "all_gather_variable_no_grad", gather)
    monkeypatch.setattr(miners, "get_rank", lambda: rank)
    parts = []
    for rank in (0, 1):
        lo, hi = offsets[rank], offsets[rank] + sizes[rank]
        parts.append(TopKNegativeMiner(3, gather_distributed=True)(whole[lo:hi], labels[lo:hi]))
    monkeypatch.setattr(miners, "is_distributed", lambda: False)
    expected = TopKNegativeMiner(3)(whole, labels)
    for i in range(4):
        assert torch.equal(torch.cat([parts[0][i], parts[1][i]]), expected[i])


def test_gathered_mining_in_one_process_matches_the_whole_batch(monkeypatch) -> None:
    """gather_distributed=True with three ranks simulated in one process (stand-in gathers):
    each rank's pairs are the whole batch's pairs of its anchors, in global indices. The
    two-process version runs in tests/test_miners.py (marked dist)."""
    import supcon.miners as miners

    sizes = [5, 7, 4]
    emb, labels = _rand(sum(sizes), 6, seed=3), torch.arange(sum(sizes)) % 4
    parts = torch.split(emb, sizes), torch.split(labels, sizes)
    whole = TopKNegativeMiner(3)(emb, labels)
    monkeypatch.setattr(miners, "is_distributed", lambda: True)
    monkeypatch.setattr(miners, "gather_sizes", lambda n, device="cpu": list(sizes))
    for rank in range(len(sizes)):
        monkeypatch.setattr(miners, "get_rank", lambda rank=rank: rank)

        def gather(local, counts=None, rank=rank):
            assert counts in (None, sizes)  # None: the real collective exchanges sizes itself
            pieces = parts[0] if local.is_floating_point() else parts[1]
            assert torch.equal(local, pieces[rank])
            return torch.cat(pieces)

        monkeypatch.setattr(miners, "all_gather_variable_no_grad", gather)
        lo = sum(sizes[:rank])
        hi = lo + sizes[rank]
        got = TopKNegativeMiner(3, gather_distributed=True)(parts[0][rank], parts[1][rank])
        a1, p, a2, n = whole
        pos, neg = (a1 >= lo) & (a1 < hi), (a2 >= lo) & (a2 < hi)
        for mine, single in zip(got, (a1[pos], p[pos], a2[neg], n[neg]), strict=True):
            assert torch.equal(mine, single)
        assert len(got[0]) > 0 and len(got[2]) > 0
