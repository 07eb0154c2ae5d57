"""Targeted checks of losses/diagnostics.py (kill mutation-testing survivors).

References are independent: a float64 SVD for the effective rank, a brute-force maximum over
``k = 0..P`` for the loss upper bound, and error messages in full.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from supcon.losses.diagnostics import effective_rank, loss_bounds


def _reference_effective_rank(z: torch.Tensor) -> float:
    sigma = torch.linalg.svdvals(z.double())
    p = sigma / sigma.sum()
    p = p[p > 1e-300]
    return math.exp(-sum(float(x) * math.log(float(x)) for x in p))


def test_effective_rank_of_zero_rows_is_zero() -> None:
    assert effective_rank(torch.zeros(3, 4)) == 0.0


def test_effective_rank_of_one_unit_row_is_one() -> None:
    # Σσ = 1 exactly: the zero-total guard must not fire.
    assert effective_rank(torch.tensor([[1.0, 0.0, 0.0]])) == pytest.approx(1.0, abs=1e-12)


def test_effective_rank_with_exact_zero_singular_values() -> None:
    # Two orthogonal directions of lengths 3 and 1 plus a zero column: σ = (3, 1, 0).
    z = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    p = (0.75, 0.25)
    expected = math.exp(-sum(x * math.log(x) for x in p))
    assert effective_rank(z) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("shape", [(7, 3), (3, 7), (5, 5)])
def test_effective_rank_matches_svd_reference(shape: tuple[int, int]) -> None:
    """The smaller Gram matrix: the larger one adds rank-deficient rounding noise (~1e-7)."""
    z = torch.randn(*shape, generator=torch.Generator().manual_seed(3)) * 2.5
    assert effective_rank(z) == pytest.approx(_reference_effective_rank(z), rel=1e-9)


_BOUNDS_MESSAGE = (
    "num_positives must be >= 1 and num_negatives >= 0 for every anchor; drop the anchors "
    "without positives first."
)


@pytest.mark.parametrize(("p", "q"), [([1, 0], [3, 3]), ([2, 2], [4, -1])])
def test_loss_bounds_rejects_bad_counts_with_full_message(p: list[int], q: list[int]) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(_BOUNDS_MESSAGE)}$"):
        loss_bounds(torch.tensor(p), torch.tensor(q), 0.1)


def _brute_force_upper(p: int, q: int, tau: float) -> float:
    a = 1.0 / tau
    best = -math.inf
    for k in range(p + 1):
        # k positives at +a, p - k at -a, q negatives at +a.
        logits = [a] * k + [-a] * (p - k) + [a] * q
        lse = math.log(sum(math.exp(x) for x in logits))
        best = max(best, lse - (k * a - (p - k) * a) / p)
    return best


@pytest.mark.parametrize("dtype", [torch.long, torch.float32])
def test_loss_bounds_upper_is_float64_exact_for_interior_maximum(dtype: torch.dtype) -> None:
    # Large τ and few negatives put the maximising k strictly inside (0, P).
    p_counts, q_counts, tau = [20, 7, 3], [0, 1, 2], 10.0
    lower, upper = loss_bounds(
        torch.tensor(p_counts, dtype=dtype), torch.tensor(q_counts, dtype=dtype), tau
    )
    assert lower.dtype == torch.float64 and upper.dtype == torch.float64
    for i, (p, q) in enumerate(zip(p_counts, q_counts, strict=True)):
        assert float(upper[i]) == pytest.approx(_brute_force_upper(p, q, tau), abs=1e-13)
        assert float(lower[i]) == pytest.approx(math.log(p + q * math.exp(-2.0 / tau)), abs=1e-13)
