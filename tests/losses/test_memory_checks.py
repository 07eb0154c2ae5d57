"""Targeted checks of losses/memory.py (kill mutation-testing survivors).

Error messages are checked in full; the queue's contents against a plain Python FIFO.
"""

from __future__ import annotations

import re

import pytest
import torch

from supcon.losses.memory import UNLABELLED_ID_BASE, CrossBatchMemory


def _full(message: str) -> str:
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize(
    ("size", "dim", "message"),
    [
        (0, 4, "size must be a positive int, got 0."),
        (4, 0, "dim must be a positive int, got 0."),
        (True, 4, "size must be a positive int, got True."),
        (4, 2.0, "dim must be a positive int, got 2.0."),
    ],
)
def test_bad_size_or_dim_message(size: object, dim: object, message: str) -> None:
    with pytest.raises(ValueError, match=_full(message)):
        CrossBatchMemory(size, dim)  # type: ignore[arg-type]


def test_non_callable_filter_message() -> None:
    message = "enqueue_filter must be a callable (embeddings, labels) -> bool mask, got int."
    with pytest.raises(ValueError, match=_full(message)):
        CrossBatchMemory(4, 2, enqueue_filter=3)  # type: ignore[arg-type]


def test_integer_dtype_message() -> None:
    message = "dtype must be a floating-point dtype, got torch.int64."
    with pytest.raises(ValueError, match=_full(message)):
        CrossBatchMemory(4, 2, dtype=torch.int64)


def test_gather_distributed_is_kept_and_defaults_to_true() -> None:
    assert CrossBatchMemory(4, 2).gather_distributed is True
    assert CrossBatchMemory(4, 2, gather_distributed=False).gather_distributed is False


def test_storage_dtype_and_integer_counters() -> None:
    memory = CrossBatchMemory(4, 2, dtype=torch.float64)
    memory.enqueue(torch.randn(3, 2))
    assert memory.embeddings.dtype == torch.float64
    state = memory.state_dict()
    for name in ("queue_labels", "pointer", "filled", "unlabelled_seen"):
        assert state[name].dtype == torch.long, name


def test_unlabelled_ids_continue_exactly_after_resume() -> None:
    # 2**24 + 1 is not representable in float32: the counter must stay an integer.
    memory = CrossBatchMemory(2, 2)
    state = memory.state_dict()
    state["unlabelled_seen"] = torch.tensor(2**24 + 1)
    memory.load_state_dict(state)
    memory.enqueue(torch.randn(1, 2))
    assert int(memory.labels[0]) == UNLABELLED_ID_BASE + 2**24 + 1
    assert int(memory.unlabelled_seen) == 2**24 + 2


def test_size_one_and_dim_one_are_valid() -> None:
    memory = CrossBatchMemory(1, 1)
    memory.enqueue(torch.tensor([[-2.0]]), torch.tensor([5]))
    memory.enqueue(torch.tensor([[3.0]]), torch.tensor([6]))
    assert memory.embeddings.tolist() == [[1.0]]
    assert memory.labels.tolist() == [6]


def test_single_row_batches_follow_a_fifo_reference() -> None:
    size, fifo = 3, []
    memory = CrossBatchMemory(size, 2)
    for step, count in enumerate([1, 1, 2, 1, 1, 4, 1]):
        labels = torch.arange(count) + 10 * step
        assert memory.enqueue(torch.randn(count, 2), labels) == count
        fifo = (fifo + labels.tolist())[-size:]
        assert sorted(memory.labels.tolist()) == sorted(fifo)
        assert len(memory) == len(fifo)
