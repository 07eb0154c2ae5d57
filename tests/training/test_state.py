"""RNG capture / restore and the batch order a resumed run relies on."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from supcon.config import config_from_dict
from supcon.data import MultiViewDataset, load_splits
from supcon.data.transforms import digit_augmentation
from supcon.training.sampling import RandomBatchSampler, SkipBatches
from supcon.training.state import capture_rng, restore_rng


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_round_trip_through_a_weights_only_checkpoint() -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    buffer = io.BytesIO()
    torch.save(capture_rng(), buffer)
    expected = draws()
    buffer.seek(0)
    restore_rng(torch.load(buffer, weights_only=True))
    assert draws() == expected


def test_random_batches_split_the_global_batch_across_ranks() -> None:
    single = RandomBatchSampler(50, 8, seed=3)
    ranks = [RandomBatchSampler(50, 8, num_replicas=2, rank=r, seed=3) for r in range(2)]
    for sampler in (single, *ranks):
        sampler.set_epoch(2)
    for whole, first, second in zip(single, *ranks, strict=True):
        assert whole == first + second and len(first) == 4
    assert len(single) == 6  # the last partial batch is dropped
    single.set_epoch(3)
    assert list(single) != list(RandomBatchSampler(50, 8, seed=3))  # epochs reshuffle


def test_skip_batches_resumes_the_same_order() -> None:
    sampler = RandomBatchSampler(40, 4, seed=0)
    sampler.set_epoch(1)
    assert list(SkipBatches(sampler, 3)) == list(sampler)[3:]
    assert len(SkipBatches(sampler, 3)) == 7


def test_views_do_not_depend_on_loading_order() -> None:
    config = config_from_dict({"data": {"image_size": 12}})
    train, _ = load_splits(config.data, 0)
    dataset = MultiViewDataset(train, digit_augmentation(12), 2, seed=0)
    dataset.set_epoch(4)
    first = dataset[7][0]
    torch.rand(100)  # the global RNG moves; item 7 of epoch 4 does not
    assert torch.equal(dataset[3][0], dataset[3][0]) and torch.equal(dataset[7][0], first)
    dataset.set_epoch(5)
    assert not torch.equal(dataset[7][0], first)


def test_numpy_keys_are_int64_so_torch_before_2_3_can_hold_them() -> None:
    """pyproject allows torch >= 2.1, which has no uint32 tensors: the MT19937 keys go as int64."""
    np.random.seed(7)
    keys = capture_rng()["numpy"]["keys"]
    assert keys.dtype == torch.int64
    expected = np.random.get_state()[1]
    assert np.array_equal(keys.numpy(), expected.astype(np.int64))
    assert int(keys.max()) > 2**31  # a key an int32 could not hold survives unchanged


def test_progress_to_dict_round_trips() -> None:
    from supcon.training.state import Progress

    progress = Progress(epoch=2, batch=5, step=17, best_value=0.5, best_step=12, skipped_steps=1)
    as_dict = progress.to_dict()
    assert as_dict == {
        "epoch": 2,
        "batch": 5,
        "step": 17,
        "best_value": 0.5,
        "best_step": 12,
        "skipped_steps": 1,
        "nonfinite_in_row": 0,
    }
    assert Progress(**as_dict) == progress
