"""Safe numbers: scale-free normalisation, non-finite rows refused, half-precision inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon import retrieval_metrics
from supcon.evaluation import build_index
from supcon.evaluation.unit import unit_rows
from tests.evaluation.reference import brute_force, clustered

EXTRA = {"precision_ks": (1, 3), "map_ks": (5,)}


def _same(got: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("scale", [1e30, 1e-30, 1e300])
def test_metrics_do_not_depend_on_the_scale_of_rows(scale: float) -> None:
    emb, labels = clustered(200, 12, 6, 1.0, seed=3)
    reference = brute_force(emb, labels, **EXTRA)
    scaled = emb.astype(np.float64) * scale
    _same(retrieval_metrics(scaled, labels, **EXTRA), reference)
    _same(retrieval_metrics(torch.from_numpy(scaled), labels, **EXTRA), reference)


def test_each_row_may_have_its_own_scale() -> None:
    emb, labels = clustered(200, 12, 6, 1.0, seed=4)
    scales = 10.0 ** np.random.default_rng(0).uniform(-35, 35, size=(200, 1))
    _same(retrieval_metrics(emb * scales, labels), brute_force(emb, labels))


def test_unit_rows_matches_float64_and_keeps_zero_rows() -> None:
    x = np.array([[3e30, 4e30], [0.0, 0.0], [1e-40, 0.0], [-2.0, 0.0]])
    np.testing.assert_allclose(
        unit_rows(x, "x"), [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], rtol=1e-7
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors_are_accepted(dtype: torch.dtype) -> None:
    emb, labels = clustered(150, 8, 5, 0.8, seed=5)
    half = torch.from_numpy(emb).to(dtype)
    expected = brute_force(half.double().numpy(), labels)
    _same(retrieval_metrics(half, torch.from_numpy(labels)), expected)
    index = build_index(half)
    scores, ids = index.search(half[:5], 3)
    assert ids[:, 0].tolist() == list(range(5)) and np.isfinite(scores).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_refused_everywhere(bad: float) -> None:
    emb, labels = clustered(50, 8, 5, 1.0, seed=6)
    emb[[3, 9]] = bad
    with pytest.raises(ValueError, match=r"2 row\(s\) with NaN or inf \(rows 3, 9\)"):
        retrieval_metrics(emb, labels)
    with pytest.raises(ValueError, match=r"NaN or inf \(rows 3, 9\)"):
        build_index(emb)
    good = build_index(clustered(50, 8, 5, 1.0, seed=6)[0])
    with pytest.raises(ValueError, match=r"query has 2 row\(s\) with NaN or inf"):
        good.search(emb, 3)


def test_float64_overflow_is_not_taken_for_inf() -> None:
    """Finite float64 rows beyond float32's range are fine (the old float32 cast made them inf)."""
    emb, labels = clustered(80, 8, 4, 1.0, seed=7)
    _same(retrieval_metrics(emb.astype(np.float64) * 1e200, labels), brute_force(emb, labels))
