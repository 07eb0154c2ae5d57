"""TopKNegativeMiner against brute force; miners + SupConLoss against the float64 reference."""

from __future__ import annotations

import os
import socket
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from supcon import SupConLoss
from supcon.miners import MINERS as MINERS_BY_NAME
from supcon.miners import TopKNegativeMiner, create_miner, flatten_views
from tests.reference import pair_masks_from_indices, reference_supcon


def _batch(n: int, dim: int, classes: int, seed: int, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, dim, generator=gen, dtype=dtype)
    labels = torch.randint(0, classes, (n,), generator=gen)
    return emb, labels


def brute_force_topk(
    emb: np.ndarray,
    labels: np.ndarray,
    k: int,
    semi_hard: bool,
    ref: np.ndarray | None = None,
    ref_labels: np.ndarray | None = None,
) -> tuple[set, set, np.ndarray]:
    """The miner's definition, by loops in float64: (positive pairs, negative pairs, sims)."""
    same_rows = ref is None
    ref = emb if ref is None else ref
    ref_labels = labels if ref_labels is None else ref_labels
    z = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    sim = z @ r.T
    positives, negatives = set(), set()
    for i in range(len(z)):
        pos = [
            j for j in range(len(r)) if labels[i] == ref_labels[j] and not (same_rows and i == j)
        ]
        if not pos:
            continue
        positives |= {(i, j) for j in pos}
        neg = [j for j in range(len(r)) if labels[i] != ref_labels[j]]
        if semi_hard:
            hardest = min(sim[i, j] for j in pos)
            neg = [j for j in neg if sim[i, j] < hardest]
        neg.sort(key=lambda j: -sim[i, j])
        negatives |= {(i, j) for j in neg[:k]}
    return positives, negatives, sim


def _check_against_brute_force(pairs, emb, labels, k, semi_hard, ref=None, ref_labels=None):
    a1, p, a2, n = pairs
    for t in pairs:
        assert t.dtype == torch.int64 and t.dim() == 1
    pos, neg, sim = brute_force_topk(
        emb.numpy(),
        labels.numpy(),
        k,
        semi_hard,
        None if ref is None else ref.numpy(),
        None if ref_labels is None else ref_labels.numpy(),
    )
    assert set(zip(a1.tolist(), p.tolist(), strict=True)) == pos
    assert set(zip(a2.tolist(), n.tolist(), strict=True)) == neg
    assert len(a1) == len(pos) and len(a2) == len(neg)  # no duplicates
    # Sorted by anchor; positives ascending and negatives hardest-first within an anchor.
    assert bool((a1[1:] >= a1[:-1]).all()) and bool((a2[1:] >= a2[:-1]).all())
    same_anchor = a1[1:] == a1[:-1]
    assert bool((p[1:][same_anchor] > p[:-1][same_anchor]).all())
    same_anchor = a2[1:] == a2[:-1]
    s = torch.from_numpy(sim[a2.numpy(), n.numpy()])
    assert bool((s[1:][same_anchor] <= s[:-1][same_anchor]).all())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 40),
    classes=st.integers(1, 8),
    k=st.integers(1, 12),
    semi_hard=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_topk_matches_brute_force(n: int, classes: int, k: int, semi_hard: bool, seed: int) -> None:
    emb, labels = _batch(n, 6, classes, seed)
    if bool((labels == labels[0]).all()):
        labels[0] = labels[0] + 1  # one class is rejected; tested separately
    pairs = TopKNegativeMiner(k, semi_hard=semi_hard)(emb, labels)
    _check_against_brute_force(pairs, emb, labels, k, semi_hard)


@pytest.mark.parametrize("semi_hard", [False, True])
def test_topk_with_ref_emb_follows_pml_convention(semi_hard: bool) -> None:
    emb, labels = _batch(15, 8, 4, seed=1)
    ref, ref_labels = _batch(22, 8, 5, seed=2)
    pairs = TopKNegativeMiner(3, semi_hard=semi_hard)(emb, labels, ref, ref_labels)
    _check_against_brute_force(pairs, emb, labels, 3, semi_hard, ref, ref_labels)


def test_blocks_give_the_same_pairs_as_one_block() -> None:
    emb, labels = _batch(53, 8, 6, seed=3, dtype=torch.float32)
    for semi_hard in (False, True):
        whole = TopKNegativeMiner(5, semi_hard=semi_hard)(emb, labels)
        blocked = TopKNegativeMiner(5, semi_hard=semi_hard, block_rows=7)(emb, labels)
        for a, b in zip(whole, blocked, strict=True):
            assert torch.equal(a, b)


def test_multi_view_input_is_flattened_view_major_like_the_loss() -> None:
    gen = torch.Generator().manual_seed(4)
    emb = torch.randn(10, 3, 8, generator=gen)
    labels = torch.arange(10) % 4
    flat, flat_labels = flatten_views(emb, labels)
    assert torch.equal(flat[2 * 10 + 7], emb[7, 2])  # row v * B + b
    assert torch.equal(flat_labels, labels.repeat(3))
    miner = TopKNegativeMiner(4)
    for a, b in zip(miner(emb, labels), miner(flat, flat_labels), strict=True):
        assert torch.equal(a, b)


def test_k_larger_than_the_negatives_keeps_all_of_them() -> None:
    emb, labels = _batch(12, 4, 3, seed=5)
    a1, _, a2, _ = TopKNegativeMiner(100)(emb, labels)
    same = labels[:, None] == labels[None, :]
    assert len(a2) == int((~same).sum())
    assert len(a1) == int(same.sum()) - 12
    assert torch.equal(torch.bincount(a2, minlength=12), (~same).sum(1))


def test_anchors_without_positive_get_no_pairs() -> None:
    emb, _ = _batch(6, 4, 1, seed=6)
    labels = torch.tensor([0, 0, 1, 2, 2, 3])
    miner = TopKNegativeMiner(2)
    a1, _, a2, _ = miner(emb, labels)
    assert set(a1.tolist()) == set(a2.tolist()) == {0, 1, 3, 4}
    assert (miner.num_pos_pairs, miner.num_neg_pairs) == (4, 8)


def test_half_precision_input_mines_in_float32() -> None:
    emb, labels = _batch(30, 8, 4, seed=7, dtype=torch.float32)
    full = TopKNegativeMiner(3)(emb, labels)
    half = TopKNegativeMiner(3)(emb.to(torch.bfloat16), labels)
    # bf16 rounding may reorder near-ties, not the positives.
    assert torch.equal(full[0], half[0]) and torch.equal(full[1], half[1])
    assert len(half[2]) == len(full[2])


def _restricted_reference(emb: torch.Tensor, pairs, temperature: float) -> float:
    """The float64 reference with positives = mined pos pairs, denominator = pos ∪ neg pairs."""
    a1, p, a2, n = (t.numpy() for t in pairs)
    m = len(emb)
    pos = np.zeros((m, m), dtype=bool)
    keep = np.zeros((m, m), dtype=bool)
    pos[a1, p] = True
    keep[a2, n] = True
    expected, _ = reference_supcon(emb.numpy(), pos, keep | pos, temperature)
    return expected


def _triplets_to_pairs(pairs):
    return pairs if len(pairs) == 4 else (pairs[0], pairs[1], pairs[0], pairs[2])


MINERS = {
    "topk": lambda: TopKNegativeMiner(4),
    "topk_semi_hard": lambda: TopKNegativeMiner(4, semi_hard=True),
    "batch_hard": pml_miners.BatchHardMiner,
    "batch_easy_hard": pml_miners.BatchEasyHardMiner,
    "batch_hard_pos_all_neg": lambda: pml_miners.BatchEasyHardMiner("hard", "all"),
    "multi_similarity": lambda: pml_miners.MultiSimilarityMiner(epsilon=0.1),
    "triplet_all": lambda: pml_miners.TripletMarginMiner(0.2, type_of_triplets="all"),
    "triplet_hard": lambda: pml_miners.TripletMarginMiner(0.2, type_of_triplets="hard"),
    "triplet_semihard": lambda: pml_miners.TripletMarginMiner(0.2, type_of_triplets="semihard"),
    "triplet_easy": lambda: pml_miners.TripletMarginMiner(0.2, type_of_triplets="easy"),
    "pair_margin": lambda: pml_miners.PairMarginMiner(pos_margin=0.2, neg_margin=1.2),
}


@pytest.mark.parametrize("name", sorted(MINERS))
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supcon_with_mined_pairs_matches_reference_and_pml(name: str, temperature: float) -> None:
    emb, labels = _batch(32, 8, 5, seed=8, dtype=torch.float32)
    pairs = MINERS[name]()(emb, labels)
    assert all(len(t) > 0 for t in pairs), "the test batch must give the miner something"
    ours = SupConLoss(temperature)(emb, labels, indices_tuple=pairs)
    # Float64 loops over exactly the mined pairs.
    expected = _restricted_reference(emb.double(), _triplets_to_pairs(pairs), temperature)
    assert ours.item() == pytest.approx(expected, rel=1e-5)
    # PML's SupConLoss with the same indices_tuple. Its mean skips anchors whose loss is exactly
    # 0 (one mined positive and no mined negative); these miners never produce such an anchor
    # on this batch, which the first assertion checks.
    a1, _, a2, _ = _triplets_to_pairs(pairs)
    single = torch.bincount(a1, minlength=32) == 1
    assert not bool((single & (torch.bincount(a2, minlength=32) == 0)).any())
    theirs = pml_losses.SupConLoss(temperature)(emb, labels, indices_tuple=pairs)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_topk_denominator_holds_exactly_the_k_hardest_negatives() -> None:
    """The loss with top-k pairs equals a direct per-anchor computation of that definition."""
    emb, labels = _batch(24, 8, 4, seed=9)
    k, tau = 3, 0.1
    loss = SupConLoss(tau)(emb, labels, indices_tuple=TopKNegativeMiner(k)(emb, labels))
    z = torch.nn.functional.normalize(emb, dim=1)
    sim = z @ z.T
    terms = []
    for i in range(24):
        pos = [j for j in range(24) if j != i and labels[j] == labels[i]]
        if not pos:
            continue
        neg = torch.tensor([j for j in range(24) if labels[j] != labels[i]])
        hard = neg[sim[i, neg].argsort(descending=True)[:k]].tolist()
        log_den = torch.logsumexp(sim[i, pos + hard] / tau, 0)
        terms.append(float(log_den - (sim[i, pos] / tau).mean()))
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-10)


def test_gradient_flows_through_the_loss_not_the_miner() -> None:
    emb, labels = _batch(16, 8, 4, seed=10, dtype=torch.float32)
    emb.requires_grad_()
    pairs = TopKNegativeMiner(2)(emb, labels)
    assert not any(t.requires_grad for t in pairs)
    SupConLoss()(emb, labels, indices_tuple=pairs).backward()
    assert emb.grad is not None and bool(emb.grad.abs().sum() > 0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: TopKNegativeMiner(0), "k must be a positive int"),
        (lambda: TopKNegativeMiner(-3), "k must be a positive int"),
        (lambda: TopKNegativeMiner(2.5), "k must be a positive int"),
        (lambda: TopKNegativeMiner(True), "k must be a positive int"),
        (lambda: TopKNegativeMiner(4, block_rows=0), "block_rows"),
        (lambda: TopKNegativeMiner(4)(torch.randn(6, 3), None), "labels is missing"),
        (lambda: TopKNegativeMiner(4)(torch.randn(6, 3), torch.zeros(6)), "same label"),
        (lambda: TopKNegativeMiner(4)(torch.randn(6, 3), torch.ones(6).bool()), "dtype torch.bool"),
        (lambda: TopKNegativeMiner(4)(torch.randn(6, 3), torch.arange(5)), r"\(N,\) with N=6"),
        (lambda: TopKNegativeMiner(4)(torch.randn(6, 3), torch.rand(6)), "integer class ids"),
        (lambda: TopKNegativeMiner(4)(torch.randn(6), torch.arange(6)), r"\(N, D\) or"),
        (lambda: TopKNegativeMiner(4)(torch.randn(3, 2, 4), torch.arange(6)), r"\(B,\) = \(3,\)"),
        (
            lambda: TopKNegativeMiner(4)(torch.full((4, 2), float("nan")), torch.arange(4)),
            "NaN",
        ),
        (
            lambda: TopKNegativeMiner(4)(torch.randn(4, 2), torch.arange(4), torch.randn(3, 5)),
            "ref_labels is missing",
        ),
        (
            lambda: TopKNegativeMiner(4)(
                torch.randn(4, 2), torch.arange(4), torch.randn(3, 5), torch.arange(3)
            ),
            "dimension 5",
        ),
    ],
)
def test_bad_input_raises_value_error_saying_what_to_change(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_create_miner_by_name() -> None:
    assert create_miner("none") is None and create_miner(None) is None
    topk = create_miner("topk", k=8, semi_hard=True)
    assert isinstance(topk, TopKNegativeMiner) and topk.k == 8 and topk.semi_hard
    ms = create_miner("multi_similarity", epsilon=0.3)
    assert isinstance(ms, pml_miners.MultiSimilarityMiner) and ms.epsilon == 0.3
    tm = create_miner("triplet_margin", margin=0.1, type_of_triplets="semihard")
    assert isinstance(tm, pml_miners.TripletMarginMiner) and tm.type_of_triplets == "semihard"
    assert isinstance(create_miner("batch_hard"), pml_miners.BatchHardMiner)
    assert isinstance(create_miner("pair_margin", neg_margin=0.5), pml_miners.PairMarginMiner)
    assert isinstance(create_miner("batch_easy_hard"), pml_miners.BatchEasyHardMiner)


@pytest.mark.parametrize(
    "name",
    sorted(MINERS_BY_NAME),
)
def test_every_registered_miner_feeds_the_loss(name: str) -> None:
    """The loss on each miner's pairs equals the float64 reference restricted to those pairs."""
    emb, labels = _batch(32, 8, 4, seed=11, dtype=torch.float64)
    miner = create_miner(name, **({"k": 4} if name == "topk" else {}))
    indices = miner(emb, labels)
    pos, keep = pair_masks_from_indices(tuple(t.numpy() for t in indices), len(emb))
    expected, without = reference_supcon(emb.numpy(), pos, keep, 0.1)
    loss_fn = SupConLoss()
    loss = loss_fn(emb, labels, indices_tuple=indices)
    assert expected > 0.0  # the miner found something to contrast
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    assert loss_fn.last_stats.num_anchors_without_positives == without


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("topk_hard", {}, r"unknown miner 'topk_hard'; choose one of \['angular'"),
        ("topk", {"kk": 3}, r"unknown argument\(s\) \['kk'\]; valid arguments are \["),
        ("topk", {}, "missing 1 required positional argument: 'k'"),
        ("topk", {"k": 0}, "k must be a positive int"),
        ("multi_similarity", {"margin": 0.1}, r"valid arguments are \[.*'epsilon'"),
        ("none", {"k": 3}, "takes no arguments"),
    ],
)
def test_create_miner_rejects_unknown_names_and_arguments(name, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        create_miner(name, **kwargs)


# --------------------------------------------------------------------------- distributed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ROWS = (13, 19)  # ranks hold different batch sizes


def _global_batch(views: int | None):
    gen = torch.Generator().manual_seed(12)
    n = sum(ROWS)
    labels = torch.randint(0, 6, (n,), generator=gen)
    shape = (n, 8) if views is None else (n, views, 8)
    return torch.randn(*shape, generator=gen), labels


def _dist_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        start = sum(ROWS[:rank])
        results = {}
        for views in (None, 2):
            for semi_hard in (False, True):
                emb, labels = _global_batch(views)
                local = slice(start, start + ROWS[rank])
                miner = TopKNegativeMiner(4, semi_hard=semi_hard, gather_distributed=True)
                results[(views, semi_hard)] = miner(emb[local], labels[local])
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_gathered_mining_equals_single_process_mining_of_the_concatenated_batch() -> None:
    world = len(ROWS)
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_dist_worker, args=(world, _free_port(), out_dir), nprocs=world, join=True)
        per_rank = [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(world)]
    for views in (None, 2):
        emb, labels = _global_batch(views)
        # The global flattened batch: rank-major concatenation of each rank's flattened rows.
        if views is None:
            flat, flat_labels = emb, labels
        else:
            parts = [
                flatten_views(
                    emb[sum(ROWS[:r]) : sum(ROWS[: r + 1])],
                    labels[sum(ROWS[:r]) : sum(ROWS[: r + 1])],
                )
                for r in range(world)
            ]
            flat = torch.cat([f for f, _ in parts])
            flat_labels = torch.cat([lab for _, lab in parts])
        rows_per_rank = [r * (views or 1) for r in ROWS]
        for semi_hard in (False, True):
            a1, p, a2, n = TopKNegativeMiner(4, semi_hard=semi_hard)(flat, flat_labels)
            for rank in range(world):
                lo = sum(rows_per_rank[:rank])
                hi = lo + rows_per_rank[rank]
                got = per_rank[rank][(views, semi_hard)]
                pos = (a1 >= lo) & (a1 < hi)
                neg = (a2 >= lo) & (a2 < hi)
                for mine, single in zip(got, (a1[pos], p[pos], a2[neg], n[neg]), strict=True):
                    assert torch.equal(mine, single)
                assert len(got[0]) > 0 and len(got[2]) > 0


@pytest.mark.slow
def test_mining_65536_rows_stays_within_block_memory() -> None:
    """B = 65,536: a dense (B, B) float32 similarity would be 16 GiB; blocks keep it ~1 GiB."""
    import subprocess
    import sys

    code = (
        "import resource, torch\n"
        "from supcon.miners import TopKNegativeMiner\n"
        "g = torch.Generator().manual_seed(0)\n"
        "emb = torch.randn(65536, 16, generator=g)\n"
        "labels = torch.randint(0, 16384, (65536,), generator=g)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "a1, p, a2, n = TopKNegativeMiner(8)(emb, labels)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "assert len(a2) == 8 * len(set(a1.tolist())), len(a2)\n"
        "print((after - before) // 1024)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    grown_mib = int(out.stdout.strip().splitlines()[-1])
    assert grown_mib < 2048, f"mining grew the peak RSS by {grown_mib} MiB"


@pytest.mark.gpu
@pytest.mark.parametrize("semi_hard", [False, True])
def test_cuda_mining_equals_cpu_mining(semi_hard: bool) -> None:
    emb, labels = _batch(300, 16, 40, seed=13, dtype=torch.float64)
    miner = TopKNegativeMiner(6, semi_hard=semi_hard, block_rows=64)
    on_cpu = miner(emb, labels)
    on_gpu = miner(emb.cuda(), labels.cuda())
    for a, b in zip(on_cpu, on_gpu, strict=True):
        assert b.device.type == "cuda" and torch.equal(a, b.cpu())
