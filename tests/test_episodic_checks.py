"""``EpisodicSampler``'s argument checks, messages, warning and defaults, one at a time."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from supcon.samplers import EpisodicSampler

LABELS = np.repeat(np.arange(4), 5)  # 4 classes x 5 samples


def test_default_seed_is_0() -> None:
    default = list(EpisodicSampler(LABELS, 2, 1, 1, episodes=6))
    assert default == list(EpisodicSampler(LABELS, 2, 1, 1, episodes=6, seed=0))
    assert default != list(EpisodicSampler(LABELS, 2, 1, 1, episodes=6, seed=1))


@pytest.mark.parametrize("bad", [True, 1.5, -1, "2"])
def test_n_query_must_be_an_int_at_least_0(bad) -> None:
    with pytest.raises(ValueError) as info:
        EpisodicSampler(LABELS, 2, 1, bad, episodes=3)
    assert str(info.value) == f"n_query must be an int >= 0, got {bad!r}."


def test_n_query_0_gives_supports_only() -> None:
    sampler = EpisodicSampler(LABELS, 3, 2, 0, episodes=2)
    episode = sampler.episode(0)
    assert len(episode) == 6 and len(set(episode)) == 6
    assert [int(LABELS[i]) for i in episode[::2]] == [int(LABELS[i]) for i in episode[1::2]]


def test_single_class_message() -> None:
    with pytest.raises(ValueError) as info:
        EpisodicSampler(np.zeros(10, dtype=np.int64), 2, 1, 1, episodes=3)
    assert str(info.value) == (
        "labels hold a single class; an episode needs n_way >= 2 classes (check that "
        "the labels were loaded)."
    )


def test_too_few_full_classes_message() -> None:
    labels = np.array([0] * 5 + [1] * 5 + [2] * 2)
    with pytest.raises(ValueError) as info:
        EpisodicSampler(labels, 3, 2, 2, episodes=3)
    assert str(info.value) == (
        "only 2 of 3 classes have k_shot + n_query = 4 samples, fewer than n_way=3; lower "
        "n_way, k_shot or n_query."
    )


def test_small_classes_warning_points_at_the_caller() -> None:
    labels = np.array([0] * 5 + [1] * 5 + [2] * 5 + [3] * 2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sampler = EpisodicSampler(labels, 2, 2, 2, episodes=4)
    assert len(record) == 1
    assert record[0].category is UserWarning
    assert str(record[0].message) == (
        "EpisodicSampler: 1 of 4 classes have fewer than k_shot + n_query = 4 samples and are "
        "left out of every episode."
    )
    filename = record[0].filename
    assert not filename.endswith(os.path.join("samplers", "episodic.py"))
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampoline adds one frame
        assert filename == __file__
    used = {int(labels[i]) for episode in sampler for i in episode}
    assert 3 not in used


@pytest.mark.parametrize("bad", [-1, True, 1.5, "1"])
def test_set_epoch_rejects_non_ints_and_negatives(bad) -> None:
    sampler = EpisodicSampler(LABELS, 2, 1, 1, episodes=3)
    with pytest.raises(ValueError) as info:
        sampler.set_epoch(bad)
    assert str(info.value) == f"epoch must be an int >= 0, got {bad!r}."
    assert sampler.epoch == 0


def test_set_epoch_0_returns_to_the_first_epoch() -> None:
    sampler = EpisodicSampler(LABELS, 2, 1, 1, episodes=5, seed=3)
    first = list(sampler)
    sampler.set_epoch(np.int64(2))
    assert sampler.epoch == 2 and list(sampler) != first
    sampler.set_epoch(0)
    assert sampler.epoch == 0 and list(sampler) == first
