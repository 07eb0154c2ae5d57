"""The argument checks every sampler shares (``supcon.samplers._common``), one at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon.samplers._common import (
    as_label_array,
    check_positive_int,
    check_seed,
    indices_by_class,
    resolve_replicas,
)


@pytest.mark.parametrize(
    "labels",
    [[2.0, 0.0, 1.0, 2.0], np.array([2, 0, 1, 2], np.uint8), torch.tensor([2.0, 0.0, 1.0, 2.0])],
)
def test_integer_valued_labels_of_any_dtype_become_int64(labels) -> None:
    array = as_label_array(labels)
    assert array.dtype == np.int64
    assert array.tolist() == [2, 0, 1, 2]


@pytest.mark.parametrize("bad", [[0.0, 1.5], [0.0, float("nan")], [0.0, float("inf")], [True]])
def test_non_integer_labels_are_rejected_with_the_fix(bad) -> None:
    with pytest.raises(ValueError) as info:
        as_label_array(bad)
    dtype = np.asarray(bad).dtype
    assert str(info.value) == (
        f"labels must be integer class ids, got dtype {dtype}; map them to ints first "
        "(e.g. numpy.unique(labels, return_inverse=True)[1])."
    )


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            None,
            "labels is missing: pass one class id per dataset item, e.g. dataset.targets or "
            "[label for _, label in dataset.samples].",
        ),
        ([], "labels is empty; the dataset has no items to sample."),
    ],
)
def test_missing_or_empty_labels_say_what_to_pass(labels, message: str) -> None:
    with pytest.raises(ValueError) as info:
        as_label_array(labels)
    assert str(info.value) == message


def test_indices_by_class_are_ascending_within_each_class() -> None:
    labels = np.random.default_rng(0).integers(0, 3, size=5000)
    groups = indices_by_class(labels)
    for cls, group in enumerate(groups):  # the brute-force grouping, indices ascending
        assert group.tolist() == np.flatnonzero(labels == cls).tolist()


@pytest.mark.parametrize("value", [True, 2.0, "3", 0, -1])
def test_positive_int_rejects_bools_floats_strings_and_non_positive(value) -> None:
    with pytest.raises(ValueError) as info:
        check_positive_int(value, "m")
    assert str(info.value) == f"m must be a positive int, got {value!r}."


@pytest.mark.parametrize("value", [True, 1.0, "1", -1])
def test_seed_rejects_bools_floats_strings_and_negatives(value) -> None:
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        check_seed(value)


@pytest.mark.parametrize("rank", [True, 0.0, "0", 2])
def test_rank_rejects_bools_floats_strings_and_out_of_range(rank) -> None:
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, num_replicas=2\)"):
        resolve_replicas(2, rank)


def test_numpy_ints_are_accepted_and_returned_as_python_ints() -> None:
    assert check_positive_int(np.int32(3), "m") == 3 and type(check_seed(np.int64(0))) is int
    assert resolve_replicas(np.int64(4), np.int64(3)) == (4, 3)
