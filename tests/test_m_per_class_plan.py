"""MPerClassSampler's plan in corner cases: every class forced in every step, the seed's
effect at each epoch, and the epoch argument."""

from __future__ import annotations

import numpy as np
import pytest

from supcon.samplers import MPerClassSampler


def test_as_many_classes_as_slots_fill_every_step_without_a_draw() -> None:
    """2 classes of 3 chunks, 2 slots a step: both classes are forced at every step (the
    weighted draw is never consulted), and the epoch uses every sample once."""
    labels = np.array([0] * 6 + [1] * 6)
    sampler = MPerClassSampler(labels, m=2, batch_size=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    for batch in batches:
        assert sorted(labels[batch].tolist()) == [0, 0, 1, 1]
    assert sorted(i for batch in batches for i in batch) == list(range(12))


@pytest.mark.parametrize("epoch", [0, 1, 4])
def test_the_seed_changes_the_plan_at_every_epoch(epoch: int) -> None:
    labels = np.repeat(np.arange(6), 8)
    plans = []
    for seed in (5, 6):
        sampler = MPerClassSampler(labels, m=2, batch_size=6, seed=seed)
        sampler.set_epoch(epoch)
        plans.append(sampler.global_plan())
    assert plans[0].shape == plans[1].shape and not np.array_equal(plans[0], plans[1])


@pytest.mark.parametrize("epoch", [2.5, 1.0, True, "1", -1])
def test_set_epoch_takes_only_non_negative_ints(epoch) -> None:
    sampler = MPerClassSampler([0, 0, 1, 1], 2, 4)
    with pytest.raises(ValueError) as info:
        sampler.set_epoch(epoch)
    assert str(info.value) == f"epoch must be an int >= 0, got {epoch!r}."
    assert sampler.epoch == 0


def test_set_epoch_takes_numpy_ints() -> None:
    sampler = MPerClassSampler([0, 0, 1, 1], 2, 4)
    sampler.set_epoch(np.int64(3))
    assert sampler.epoch == 3 and type(sampler.epoch) is int


_LABELS = [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize(
    ("labels", "m", "batch_size", "message"),
    [
        (
            _LABELS,
            0,
            4,
            "m must be a positive int, got 0. It is the number of samples per class in a batch.",
        ),
        (_LABELS, 2, 0, "batch_size must be a positive int, got 0."),
        (
            [3] * 6,
            2,
            4,
            "labels hold a single class, so no batch can hold a negative; an M-per-class "
            "sampler needs at least two classes (check that the labels were loaded).",
        ),
        (
            _LABELS,
            1,
            5,
            "impossible batch: each step needs 5 distinct classes (batch_size // m = 5 per rank "
            "× 1 rank(s)) but labels have only 4; lower batch_size, raise m, or use fewer ranks.",
        ),
    ],
)
def test_bad_arguments_in_full(labels, m: int, batch_size: int, message: str) -> None:
    with pytest.raises(ValueError) as info:
        MPerClassSampler(labels, m, batch_size)
    assert str(info.value) == message


def test_the_default_seed_is_0() -> None:
    labels = np.repeat(np.arange(5), 6)
    default = MPerClassSampler(labels, 2, 4)
    assert default.seed == 0
    assert list(default) == list(MPerClassSampler(labels, 2, 4, seed=0))
    assert list(default) != list(MPerClassSampler(labels, 2, 4, seed=1))


def _in_two_weighted_draws(weights: list[float], target: int) -> float:
    """P(target is among 2 draws without replacement, each proportional to ``weights``)."""
    total = sum(weights)
    first = weights[target] / total
    second = sum(
        w / total * weights[target] / (total - w) for i, w in enumerate(weights) if i != target
    )
    return first + second


def test_a_drawn_class_competes_with_its_unused_chunks_only() -> None:
    """Draws are weighted by *unused* chunks: once class 0 (4 chunks) is drawn at step 0, it
    enters step 1 with weight 3 against the 9 one-chunk classes left (no class is forced yet
    at steps 0 and 1 of 7). Frequencies over 3000 epochs against the weighted-draw rule."""
    labels = np.array([0] * 8 + [c for c in range(1, 11) for _ in range(2)])
    sampler = MPerClassSampler(labels, m=2, batch_size=4, seed=0)
    assert len(sampler) == 7
    first = again = 0
    epochs = 3000
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        steps = labels[sampler.global_plan()[:2, :, 0]]  # (2 steps, 2 classes)
        if 0 in steps[0]:
            first += 1
            again += 0 in steps[1]
    p_first = _in_two_weighted_draws([4.0] + [1.0] * 10, 0)  # 0.505
    p_again = _in_two_weighted_draws([3.0] + [1.0] * 9, 0)  # 0.455 (weight 5: 0.604)
    assert abs(first / epochs - p_first) < 0.03  # ±3.3 standard errors
    assert abs(again / first - p_again) < 0.05  # ±3.5 standard errors (~1500 epochs)
