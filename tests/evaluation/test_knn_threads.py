"""The threaded leave-one-out search never lets two threads write one block's heaps at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from supcon.evaluation import knn

BLOCK = 16


def _guarded(
    write: Callable[..., Any], block_of: Callable[..., int], clashes: list[int]
) -> Callable[..., Any]:
    """``write`` wrapped to mark its target row block busy while it runs (and to linger)."""
    busy: set[int] = set()
    guard = threading.Lock()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        block = block_of(*args)
        with guard:
            if block in busy:
                clashes.append(block)
            busy.add(block)
        try:
            time.sleep(0.002)  # widen the window a missing lock would leave open
            return write(*args, **kwargs)
        finally:
            with guard:
                busy.discard(block)

    return wrapper


def test_no_two_threads_update_the_same_heaps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pair (i, j) writes the heaps of row blocks i and j: both locks must be held.

    Along one diagonal, pairs (0, 1) and (1, 2) share block 1; with one lock per pair only,
    two threads would add to block 1's heaps together (faiss heaps are not thread-safe).
    """
    clashes: list[int] = []
    monkeypatch.setattr(
        knn._Heaps,
        "add",
        _guarded(knn._Heaps.add, lambda heaps, values, row0, col0: row0 // BLOCK, clashes),
    )
    monkeypatch.setattr(
        knn,
        "_add_columns",
        _guarded(knn._add_columns, lambda heaps, values, row0, col0: col0 // BLOCK, clashes),
    )
    x = np.random.default_rng(0).normal(size=(8 * BLOCK, 6)).astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        _, ids = knn.search_self(x, 5, block_size=BLOCK)
    finally:
        torch.set_num_threads(threads)
    assert clashes == []
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(ids, expected)
