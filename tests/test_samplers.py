"""MPerClassSampler and EpisodicSampler: batch invariants, epochs, ranks, errors, builder."""

from __future__ import annotations

import math
import os
import socket
import tempfile
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from supcon.samplers import EpisodicSampler, MPerClassSampler, create_sampler


def _labels_from_sizes(sizes: list[int], seed: int = 0) -> np.ndarray:
    """Labels with class ``c`` holding ``sizes[c]`` items, in a shuffled dataset order."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(labels)


def _all_ranks(labels, m, batch_size, world, seed=0, epoch=0):
    samplers = [
        MPerClassSampler(labels, m, batch_size, num_replicas=world, rank=r, seed=seed)
        for r in range(world)
    ]
    for s in samplers:
        s.set_epoch(epoch)
    return samplers, [list(s) for s in samplers]


def _check_m_per_class_epoch(labels: np.ndarray, m: int, batch_size: int, world: int) -> None:
    """Every invariant the docstring promises, for one epoch on every rank."""
    samplers, per_rank = _all_ranks(labels, m, batch_size, world, seed=3, epoch=1)
    sizes = np.bincount(labels)
    group = batch_size // m * world
    total_chunks = int(sum(math.ceil(n / m) for n in sizes))
    steps = math.ceil(total_chunks / group)
    # Identical length on every rank, and it is what __len__ says.
    assert [len(b) for b in per_rank] == [steps] * world
    assert all(len(s) == steps for s in samplers)
    seen = Counter()
    for step in range(steps):
        step_classes = []
        for rank in range(world):
            batch = per_rank[rank][step]
            assert len(batch) == batch_size
            counts = Counter(labels[batch].tolist())
            # m samples of each of batch_size // m classes.
            assert len(counts) == batch_size // m and set(counts.values()) == {m}
            # Duplicates only inside classes smaller than m (the with-replacement rule).
            for idx, n in Counter(batch).items():
                if n > 1:
                    assert sizes[labels[idx]] < m
            for c in counts:
                small = sizes[c] < m
                got = {i for i in batch if labels[i] == c}
                assert len(got) == (sizes[c] if small else m)
            step_classes += list(counts)
            seen.update(batch)
        # Disjoint classes across ranks: the union is one global batch of G classes.
        assert len(step_classes) == len(set(step_classes)) == group
    # Coverage: every sample appears, except surplus of classes with more than `steps` chunks.
    for c, n in enumerate(sizes):
        covered = sum(1 for i in np.flatnonzero(labels == c) if seen[i])
        if math.ceil(n / m) <= steps:
            assert covered == n, f"class {c}: {covered} of {n} samples in the epoch"
        else:
            assert covered >= steps * m - (m - 1)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 15), min_size=2, max_size=12),
    m=st.integers(1, 4),
    classes_per_batch=st.integers(1, 3),
    world=st.integers(1, 3),
)
def test_m_per_class_invariants_or_a_clear_error(sizes, m, classes_per_batch, world) -> None:
    labels = _labels_from_sizes(sizes)
    batch_size = m * classes_per_batch
    group = classes_per_batch * world
    if group < 2:
        with pytest.raises(ValueError, match="single class"):
            MPerClassSampler(labels, m, batch_size, num_replicas=world, rank=0)
    elif group > len(sizes):
        with pytest.raises(ValueError, match=f"needs {group} distinct classes"):
            MPerClassSampler(labels, m, batch_size, num_replicas=world, rank=0)
    else:
        _check_m_per_class_epoch(labels, m, batch_size, world)


def test_m_per_class_with_a_dominant_class_leaves_only_its_surplus() -> None:
    labels = _labels_from_sizes([400, 8, 8, 8, 8, 8])  # 100 chunks of 4 vs 2 each
    _check_m_per_class_epoch(labels, m=4, batch_size=8, world=1)
    sampler = MPerClassSampler(labels, 4, 8)
    assert len(sampler) == math.ceil((100 + 5 * 2) / 2)


def test_m_per_class_is_deterministic_per_seed_and_epoch() -> None:
    labels = _labels_from_sizes([7, 9, 12, 5, 30, 3, 8], seed=1)
    a = MPerClassSampler(labels, 3, 6, seed=5)
    b = MPerClassSampler(torch.from_numpy(labels), 3, 6, seed=5)
    assert list(a) == list(a) == list(b)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != list(b)
    b.set_epoch(1)
    assert epoch1 == list(b)
    assert list(MPerClassSampler(labels, 3, 6, seed=6)) != list(b)


def test_ranks_partition_the_global_plan() -> None:
    labels = _labels_from_sizes([11, 6, 9, 14, 4, 8, 10, 7], seed=2)
    samplers, per_rank = _all_ranks(labels, 2, 4, world=3, seed=1, epoch=2)
    plan = samplers[0].global_plan()
    for sampler in samplers[1:]:
        assert np.array_equal(sampler.global_plan(), plan)  # every rank plans the same
    for rank, batches in enumerate(per_rank):
        assert batches == plan[:, rank * 2 : (rank + 1) * 2].reshape(len(plan), -1).tolist()


def test_large_classes_are_spread_over_the_epoch_not_front_loaded() -> None:
    # 10 classes of 12 chunks and 30 of 2; a largest-first schedule would use the big classes
    # almost only in the first half of the epoch.
    labels = _labels_from_sizes([48] * 10 + [8] * 30, seed=4)
    sampler = MPerClassSampler(labels, 4, 16, seed=0)
    batches = list(sampler)
    half = len(batches) // 2
    big = [sum(labels[i] < 10 for i in b) for b in batches]
    share = sum(big[:half]) / sum(big)
    assert 0.35 < share < 0.65, share


def test_small_classes_repeat_their_samples_with_replacement() -> None:
    labels = np.array([0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])  # class 0 has 1 sample, m = 3
    sampler = MPerClassSampler(labels, 3, 6)
    batches = list(sampler)
    with_zero = [b for b in batches if 0 in b]
    assert with_zero, "the one-sample class must be drawn in the epoch"
    assert all(b.count(0) == 3 for b in with_zero)


def test_plugs_into_dataloader_as_batch_sampler() -> None:
    labels = _labels_from_sizes([6, 6, 6, 6, 6], seed=5)
    dataset = TensorDataset(torch.arange(len(labels)), torch.from_numpy(labels))
    sampler = MPerClassSampler(labels, 2, 6)
    loaded = [(idx.tolist(), lab) for idx, lab in DataLoader(dataset, batch_sampler=sampler)]
    assert [idx for idx, _ in loaded] == list(sampler)
    for idx, lab in loaded:
        assert torch.equal(lab, torch.from_numpy(labels[idx]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": None}, "labels is missing"),
        ({"labels": []}, "labels is empty"),
        ({"labels": [0.5, 1.0, 2.0, 1.0]}, "integer class ids"),
        ({"labels": [[0, 1], [1, 0]]}, "1-D"),
        ({"labels": [3] * 10}, "single class"),
        ({"m": 0}, "m must be a positive int"),
        ({"m": 9, "batch_size": 8}, "m=9 is larger than batch_size=8"),
        ({"m": 3, "batch_size": 8}, "batch_size=6 or 9"),
        ({"m": 4, "batch_size": 4}, "batch_size >= 8"),
        ({"m": 1, "batch_size": 5}, r"needs 5 distinct classes .* only 4"),
        ({"batch_size": 4, "num_replicas": 3, "rank": 0}, r"needs 6 distinct classes"),
        ({"num_replicas": 2, "rank": 2}, r"rank must be an int in \[0, num_replicas=2\)"),
        ({"num_replicas": 0, "rank": 0}, "num_replicas must be a positive int"),
        ({"seed": -1}, "seed must be an int >= 0"),
    ],
)
def test_m_per_class_bad_input_says_what_to_change(kwargs: dict, match: str) -> None:
    args = {"labels": [0, 0, 1, 1, 2, 2, 3, 3], "m": 2, "batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        MPerClassSampler(args.pop("labels"), args.pop("m"), args.pop("batch_size"), **args)


def test_set_epoch_rejects_negative_epochs() -> None:
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        MPerClassSampler([0, 0, 1, 1], 2, 4).set_epoch(-1)


# --------------------------------------------------------------------------- episodic


def _check_episode(episode: list[int], labels: np.ndarray, n_way, k_shot, n_query) -> None:
    assert len(episode) == n_way * (k_shot + n_query)
    assert len(set(episode)) == len(episode)  # never with replacement
    support = labels[episode[: n_way * k_shot]].reshape(n_way, k_shot)
    query = labels[episode[n_way * k_shot :]].reshape(n_way, n_query)
    classes = support[:, 0]
    assert len(set(classes.tolist())) == n_way
    assert (support == classes[:, None]).all()
    assert (query == classes[:, None]).all()  # same class order as the support


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=2, max_size=10),
    n_way=st.integers(2, 5),
    k_shot=st.integers(1, 3),
    n_query=st.integers(0, 4),
)
def test_episodes_have_n_way_k_shot_plus_queries(sizes, n_way, k_shot, n_query) -> None:
    labels = _labels_from_sizes(sizes)
    eligible = sum(n >= k_shot + n_query for n in sizes)
    if eligible < n_way:
        with pytest.raises(ValueError, match=f"fewer than n_way={n_way}"):
            EpisodicSampler(labels, n_way, k_shot, n_query, episodes=5)
        return
    if eligible < len(sizes):
        with pytest.warns(UserWarning, match="left out of every episode"):
            sampler = EpisodicSampler(labels, n_way, k_shot, n_query, episodes=7)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing left out, nothing to warn about
            sampler = EpisodicSampler(labels, n_way, k_shot, n_query, episodes=7)
    episodes = list(sampler)
    assert len(episodes) == 7
    for episode in episodes:
        _check_episode(episode, labels, n_way, k_shot, n_query)
        assert all(sizes[labels[i]] >= k_shot + n_query for i in episode)


def test_episodes_are_deterministic_per_seed_and_epoch() -> None:
    labels = _labels_from_sizes([10] * 8, seed=6)
    a = EpisodicSampler(labels, 5, 1, 3, episodes=20, seed=1)
    b = EpisodicSampler(labels.tolist(), 5, 1, 3, episodes=20, seed=1)
    assert list(a) == list(b)
    assert list(a) != list(EpisodicSampler(labels, 5, 1, 3, episodes=20, seed=2))
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    episodes = list(a)
    assert len({tuple(e) for e in episodes}) == 20


@pytest.mark.parametrize("world", [2, 3])
def test_episodes_split_across_ranks_like_one_process(world: int) -> None:
    labels = _labels_from_sizes([9] * 7, seed=7)
    single = list(EpisodicSampler(labels, 3, 2, 2, episodes=10, seed=4))
    ranks = [
        list(EpisodicSampler(labels, 3, 2, 2, episodes=10, num_replicas=world, rank=r, seed=4))
        for r in range(world)
    ]
    per_rank = math.ceil(10 / world)
    assert [len(r) for r in ranks] == [per_rank] * world
    interleaved = [ranks[i % world][i // world] for i in range(per_rank * world)]
    assert interleaved[:10] == single  # the same 10 episodes, plus padding ones


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": None}, "labels is missing"),
        ({"labels": [1] * 12}, "single class"),
        ({"n_way": 1}, "n_way must be >= 2"),
        ({"n_way": 0}, "n_way must be a positive int"),
        ({"k_shot": 0}, "k_shot must be a positive int"),
        ({"n_query": -1}, "n_query must be an int >= 0"),
        ({"episodes": 0}, "episodes must be a positive int"),
        ({"n_way": 4}, r"only 3 of 3 classes .* fewer than n_way=4"),
        ({"k_shot": 3, "n_query": 2}, r"only 0 of 3 classes have k_shot \+ n_query = 5"),
    ],
)
def test_episodic_bad_input_says_what_to_change(kwargs: dict, match: str) -> None:
    args = {"labels": [0] * 4 + [1] * 4 + [2] * 4, "n_way": 2, "k_shot": 1, "n_query": 2}
    args = {**args, "episodes": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        EpisodicSampler(
            args["labels"], args["n_way"], args["k_shot"], args["n_query"], args["episodes"]
        )


def test_episodic_warns_about_classes_it_leaves_out() -> None:
    labels = [0] * 5 + [1] * 5 + [2] * 2
    with pytest.warns(UserWarning, match="1 of 3 classes have fewer than"):
        sampler = EpisodicSampler(labels, 2, 2, 1, episodes=4)
    assert all(2 not in [labels[i] for i in e] for e in sampler)


# --------------------------------------------------------------------------- builder


def test_create_sampler_by_name() -> None:
    labels = [0, 0, 1, 1, 2, 2, 3, 3] * 2
    assert create_sampler(None, labels, batch_size=4) is None
    assert create_sampler("random", labels, batch_size=4) is None
    s = create_sampler("m_per_class", labels, batch_size=4, m=2, num_replicas=2, rank=1, seed=3)
    assert isinstance(s, MPerClassSampler)
    assert (s.m, s.batch_size, s.num_replicas, s.rank, s.seed) == (2, 4, 2, 1, 3)
    e = create_sampler(
        "episodic", labels, batch_size=6, n_way=2, k_shot=1, n_query=2, episodes=3, seed=9
    )
    assert isinstance(e, EpisodicSampler) and e.seed == 9 and len(e) == 3
    assert (
        create_sampler(
            "episodic", labels, batch_size=None, n_way=2, k_shot=1, n_query=2, episodes=3
        )
        is not None
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("m_per_clas", {"m": 2}, r"unknown sampler 'm_per_clas'; choose one of \['episodic', "),
        ("m_per_class", {}, r"missing argument\(s\) \['m'\]"),
        ("m_per_class", {"m": 2, "k": 1}, r"unknown argument\(s\) \['k'\]; its arguments are"),
        ("episodic", {"n_way": 2, "k_shot": 1}, r"missing argument\(s\) \['n_query', 'episodes'\]"),
        ("episodic", {"n_way": 2, "k_shot": 1, "n_query": 2, "episodes": 2}, "set batch_size to 6"),
        ("random", {"m": 2}, "takes no arguments"),
        ("m_per_class", {"m": 3}, "not divisible by m=3"),
    ],
)
def test_create_sampler_rejects_unknown_names_and_arguments(name, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        create_sampler(name, [0, 0, 1, 1, 2, 2] * 2, batch_size=4, **kwargs)


# --------------------------------------------------------------------------- distributed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LABELS = _labels_from_sizes([5, 9, 3, 12, 7, 8, 6, 10], seed=8).tolist()


def _dist_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        sampler = MPerClassSampler(LABELS, 2, 4, seed=7)  # replicas and rank from the group
        sampler.set_epoch(3)
        dataset = TensorDataset(torch.arange(len(LABELS)))
        batches = [b[0].tolist() for b in DataLoader(dataset, batch_sampler=sampler)]
        torch.save(
            {"world": sampler.num_replicas, "rank": sampler.rank, "batches": batches},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_sampler_takes_replicas_and_rank_from_the_process_group() -> None:
    world = 2
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_dist_worker, args=(world, _free_port(), out_dir), nprocs=world, join=True)
        got = [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(world)]
    assert [(g["world"], g["rank"]) for g in got] == [(2, 0), (2, 1)]
    _, expected = _all_ranks(np.array(LABELS), 2, 4, world=2, seed=7, epoch=3)
    assert [g["batches"] for g in got] == expected
    labels = np.array(LABELS)
    for b0, b1 in zip(got[0]["batches"], got[1]["batches"], strict=True):
        assert not set(labels[b0]) & set(labels[b1])


def test_m_per_class_fills_classes_smaller_than_m_with_their_own_samples() -> None:
    """Classes of 1, 2 and 3 items with m = 4: each batch slot of such a class holds all its
    items plus m - n_c more of its own, drawn uniformly with replacement; no other class ever
    repeats an index, and every item appears in every epoch."""
    sizes = {0: 1, 1: 2, 2: 3, 3: 4, 4: 7, 5: 9}
    labels = np.concatenate([np.full(n, c) for c, n in sizes.items()])
    members = {c: set(np.flatnonzero(labels == c).tolist()) for c in sizes}
    sampler = MPerClassSampler(labels, 4, 8, num_replicas=1, rank=0, seed=3)
    extras = {c: np.zeros(len(labels), dtype=np.int64) for c in (1, 2)}
    for epoch in range(200):
        sampler.set_epoch(epoch)
        seen = set()
        for batch in sampler:
            assert len(batch) == 8
            seen.update(batch)
            for c in {int(labels[i]) for i in batch}:
                rows = [i for i in batch if labels[i] == c]
                assert len(rows) == 4, (epoch, c)
                if sizes[c] < 4:
                    assert set(rows) == members[c]  # all of them, nothing from elsewhere
                    if c in extras:
                        counts = np.bincount(rows, minlength=len(labels))
                        extras[c] += counts - 1 * np.isin(np.arange(len(labels)), rows)
                else:
                    assert len(set(rows)) == 4  # no duplicate outside the small classes
        assert seen == set(range(len(labels)))
    # The m - n_c extra draws are uniform over the class (margin: 5 binomial standard
    # deviations of each item's share).
    for c, counts in extras.items():
        draws, p = counts.sum(), 1 / sizes[c]
        share = counts[sorted(members[c])] / draws
        assert draws > 200
        assert np.all(np.abs(share - p) < 5 * np.sqrt(p * (1 - p) / draws)), (c, share)


def test_m_per_class_filler_chunks_of_small_classes_draw_uniform_extras() -> None:
    """The fresh chunks that complete a step follow the same with-replacement rule."""
    sampler = MPerClassSampler(np.repeat(np.arange(4), 5), 4, 8, num_replicas=1, rank=0)
    rng = np.random.default_rng(0)
    members = np.array([11, 12, 13])
    counts = np.zeros(14, dtype=np.int64)
    for _ in range(3000):
        chunk = sampler._fresh_chunk(members, rng)
        assert len(chunk) == 4 and set(chunk.tolist()) == {11, 12, 13}
        counts += np.bincount(chunk, minlength=14)
    extra_share = (counts[members] - 3000) / 3000  # one extra per chunk
    assert np.all(np.abs(extra_share - 1 / 3) < 5 * np.sqrt(2 / 9 / 3000)), extra_share
