"""retrieval_metrics against a brute-force reference and against PML's AccuracyCalculator."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from supcon import blocks, retrieval_metrics
from tests.evaluation.reference import assert_close, brute_force, clustered

EXTRA = {"precision_ks": (1, 3, 5), "map_ks": (1, 5, 10)}


@pytest.mark.parametrize("noise", [0.3, 1.0, 3.0])
def test_leave_one_out_matches_brute_force(noise: float) -> None:
    emb, labels = clustered(300, 16, 7, noise, seed=int(noise * 10))
    got = retrieval_metrics(emb, labels, chunk_size=64, **EXTRA)
    assert_close(got, brute_force(emb, labels, **EXTRA))
    assert got["num_queries"] == 300


def test_query_gallery_matches_brute_force_and_skips_unmatched_queries() -> None:
    q, ql = clustered(120, 8, 6, 1.0, seed=1)
    g, gl = clustered(200, 8, 5, 1.0, seed=1)  # class 5 absent from the gallery
    kwargs = {"ks": (1, 3, 10), **EXTRA}
    got = retrieval_metrics(q, ql, g, gl, **kwargs)
    assert_close(got, brute_force(q, ql, g, gl, **kwargs))
    assert got["num_queries_without_positives"] == int((ql == 5).sum())


def test_source_ids_exclude_same_source_items_leave_one_out() -> None:
    emb, labels = clustered(240, 12, 6, 1.0, seed=3)
    sources = np.random.default_rng(3).integers(0, 40, size=240)  # ~6 items per source
    got = retrieval_metrics(emb, labels, source_ids=sources, chunk_size=50, **EXTRA)
    expected = brute_force(emb, labels, q_sources=sources, **EXTRA)
    assert_close(got, expected)
    assert got != retrieval_metrics(emb, labels, **EXTRA)


def test_source_ids_exclude_same_source_items_query_gallery() -> None:
    q, ql = clustered(90, 8, 5, 1.0, seed=4)
    g, gl = clustered(150, 8, 5, 1.0, seed=5)
    rng = np.random.default_rng(4)
    qs, gs = rng.integers(0, 12, size=90), rng.integers(0, 12, size=150)
    got = retrieval_metrics(q, ql, g, gl, source_ids=qs, gallery_source_ids=gs, **EXTRA)
    assert_close(got, brute_force(q, ql, g, gl, q_sources=qs, g_sources=gs, **EXTRA))


def test_is_query_is_gallery_flags_never_retrieve_the_query_itself() -> None:
    emb, labels = clustered(200, 8, 5, 1.0, seed=6)
    rng = np.random.default_rng(6)
    is_query = rng.random(200) < 0.4
    is_gallery = ~is_query | (rng.random(200) < 0.5)  # some items are both
    got = retrieval_metrics(emb, labels, is_query=is_query, is_gallery=is_gallery, **EXTRA)
    # Reference: an item is its own source, so it never retrieves itself.
    ids = np.arange(200)
    expected = brute_force(
        emb[is_query],
        labels[is_query],
        emb[is_gallery],
        labels[is_gallery],
        q_sources=ids[is_query],
        g_sources=ids[is_gallery],
        **EXTRA,
    )
    assert_close(got, expected)
    everything = np.ones(200, bool)
    assert retrieval_metrics(emb, labels, is_query=everything, is_gallery=everything) == (
        retrieval_metrics(emb, labels)
    )


def test_per_class_matches_brute_force() -> None:
    emb, labels = clustered(150, 8, 4, 1.5, seed=7)
    got = retrieval_metrics(emb, labels, per_class=True, **EXTRA)
    assert_close(got, brute_force(emb, labels, per_class=True, **EXTRA))
    assert sum(row["num_queries"] for row in got["per_class"].values()) == 150


@pytest.mark.parametrize("source_ids", [False, True])
def test_any_chunk_size_and_either_search_layout_give_identical_results(
    monkeypatch: pytest.MonkeyPatch, source_ids: bool
) -> None:
    emb, labels = clustered(500, 16, 9, 1.5, seed=8)
    sources = np.arange(500) // 3 if source_ids else None
    kwargs = {"source_ids": sources, "per_class": True, **EXTRA}
    reference = retrieval_metrics(emb, labels, chunk_size=2048, **kwargs)
    for chunk in (3, 64, 333):
        assert retrieval_metrics(emb, labels, chunk_size=chunk, **kwargs) == reference
    monkeypatch.setattr(blocks, "SYMMETRIC_BUDGET_BYTES", 0)  # leave-one-out by query chunks
    for chunk in (7, 500):
        assert retrieval_metrics(emb, labels, chunk_size=chunk, **kwargs) == reference


def pml_accuracy(query, q_labels, gallery=None, g_labels=None, **kwargs) -> dict:
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
        **kwargs,
    )
    normalise = lambda x: torch.nn.functional.normalize(torch.from_numpy(x), dim=1)  # noqa: E731
    if gallery is None:
        return calc.get_accuracy(normalise(query), torch.from_numpy(q_labels))
    return calc.get_accuracy(
        normalise(query), torch.from_numpy(q_labels), normalise(gallery), torch.from_numpy(g_labels)
    )


PML_KEYS = {
    "precision@1": "precision_at_1",
    "r_precision": "r_precision",
    "map@r": "mean_average_precision_at_r",
}


@pytest.mark.parametrize("noise", [0.5, 2.0])
def test_leave_one_out_matches_pml_accuracy_calculator(noise: float) -> None:
    emb, labels = clustered(400, 32, 10, noise, seed=9)
    labels[:1] = 99  # a singleton: PML's "lone" query, excluded by both
    ours = retrieval_metrics(emb, labels)
    pml = pml_accuracy(emb, labels)
    for key, pml_key in PML_KEYS.items():
        assert ours[key] == pytest.approx(pml[pml_key], abs=1e-9), key
    assert ours["num_queries_without_positives"] == 1


def test_query_gallery_matches_pml_including_labels_absent_from_the_gallery() -> None:
    q, ql = clustered(150, 16, 6, 1.0, seed=10)
    g, gl = clustered(300, 16, 5, 1.0, seed=11)  # class 5 only among the queries
    ours = retrieval_metrics(q, ql, g, gl)
    pml = pml_accuracy(q, ql, g, gl)
    for key, pml_key in PML_KEYS.items():
        assert ours[key] == pytest.approx(pml[pml_key], abs=1e-9), key


def test_per_class_matches_pml_return_per_class() -> None:
    emb, labels = clustered(300, 16, 5, 1.5, seed=12)
    ours = retrieval_metrics(emb, labels, per_class=True)["per_class"]
    pml = pml_accuracy(emb, labels, return_per_class=True)
    for key, pml_key in PML_KEYS.items():
        got = [ours[label][key] for label in sorted(ours)]
        assert got == pytest.approx(pml[pml_key], abs=1e-9), key


def test_map_at_k_equals_pml_mean_average_precision_when_k_covers_every_positive() -> None:
    # PML divides by R even when k < R; we divide by min(k, R). With k ≥ R both agree.
    emb, labels = clustered(200, 16, 5, 1.5, seed=13)
    ours = retrieval_metrics(emb, labels, map_ks=(199,))
    calc = AccuracyCalculator(
        include=("mean_average_precision",), k=None, device=torch.device("cpu")
    )
    pml = calc.get_accuracy(torch.nn.functional.normalize(torch.from_numpy(emb)), labels)
    assert ours["map@199"] == pytest.approx(pml["mean_average_precision"], abs=1e-9)


def test_accepts_torch_tensors_string_labels_and_is_scale_invariant() -> None:
    emb, labels = clustered(100, 8, 4, 1.0, seed=2)
    a = retrieval_metrics(torch.from_numpy(emb), torch.from_numpy(labels))
    b = retrieval_metrics(emb * 7.5, labels)
    c = retrieval_metrics(emb, np.array([f"class-{v}" for v in labels]))
    assert a == b == c


def test_perfect_and_random_embeddings() -> None:
    labels = np.repeat(np.arange(10), 20)
    rng = np.random.default_rng(0)
    perfect = np.eye(10, dtype=np.float32)[labels] + 1e-3 * rng.normal(size=(200, 10))
    m = retrieval_metrics(perfect, labels, precision_ks=(1, 19), map_ks=(19,))
    assert m["recall@1"] == 1.0 and m["map@r"] == pytest.approx(1.0)
    assert m["precision@19"] == pytest.approx(1.0) and m["map@19"] == pytest.approx(1.0)
    rand = rng.normal(size=(200, 32)).astype(np.float32)
    assert retrieval_metrics(rand, labels)["precision@1"] < 0.3


def test_k_larger_than_the_gallery_is_clipped_and_said(caplog: pytest.LogCaptureFixture) -> None:
    emb, labels = clustered(30, 4, 3, 1.0, seed=14)
    with caplog.at_level(logging.WARNING, logger="supcon"):
        m = retrieval_metrics(emb, labels, ks=(1, 100), precision_ks=(100,))
    assert "k=100 is larger than the 29 gallery items" in caplog.text
    assert m["recall@100"] == 1.0
    expected = np.mean([(np.sum(labels == lab) - 1) / 29 for lab in labels])
    assert m["precision@100"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.zeros((0, 4)), np.zeros(0)), {}, "non-empty"),
        ((np.ones((4, 4)), np.zeros(3)), {}, r"query_labels must be \(4,\)"),
        ((np.array([[np.nan, 1.0], [1.0, 1.0], [np.inf, 0]]), np.zeros(3)), {}, "2 row"),
        ((np.ones((4, 4)), np.zeros(4), np.ones((3, 5)), np.zeros(3)), {}, "dimension"),
        ((np.ones((4, 4)), np.zeros(4), np.zeros((0, 4)), np.zeros(0)), {}, "gallery must"),
        ((np.ones((4, 4)), np.zeros(4), np.ones((3, 4))), {}, "gallery_labels"),
        ((np.ones((4, 4)), np.zeros(4), np.ones((3, 4)), np.zeros(2)), {}, "gallery_labels"),
        ((np.ones((4, 4)), np.zeros(4)), {"ks": (0,)}, "ks"),
        ((np.ones((4, 4)), np.arange(4)), {}, "no query label"),
        ((np.ones((1, 4)), np.zeros(1)), {}, "at least 2"),
        ((np.ones((4, 4)), np.zeros(4)), {"is_query": np.zeros(4, bool)}, "at least one"),
        ((np.ones((4, 4)), np.zeros(4)), {"source_ids": np.zeros(3)}, "source_ids"),
    ],
)
def test_bad_input(args, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(*args, **kwargs)


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    emb, labels = clustered(3000, 32, 30, 1.5, seed=15)
    cpu = retrieval_metrics(emb, labels, per_class=True, **EXTRA)
    gpu = retrieval_metrics(torch.from_numpy(emb).cuda(), labels, per_class=True, **EXTRA)
    assert_close(gpu, cpu)
    q = retrieval_metrics(emb[:500], labels[:500], emb[500:], labels[500:], device="cuda")
    assert_close(q, retrieval_metrics(emb[:500], labels[:500], emb[500:], labels[500:]))


def test_large_classes_with_small_chunks_match_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:

    emb, labels = clustered(300, 8, 2, 2.0, seed=16)  # R ≈ 150 per query
    monkeypatch.setattr(blocks, "SYMMETRIC_BUDGET_BYTES", 0)
    monkeypatch.setattr(blocks, "CHUNK_ELEMENTS", 400)  # 2 rows per chunk
    assert_close(retrieval_metrics(emb, labels, **EXTRA), brute_force(emb, labels, **EXTRA))


def test_source_ids_with_k_past_a_shortened_list_count_no_padding_as_hits() -> None:
    """Queries of a big source keep 4 candidates; k = 8 and 10 reach past them.

    The knn lists are padded with -1 there; a padding slot must never count as a hit, even
    though gallery row 0 (what -1 would index) shares those queries' label.
    """
    emb, _ = clustered(12, 6, 3, 1.0, seed=11)
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1])
    sources = np.array([0] * 8 + [1, 2, 3, 4])  # queries 0..7 only see items 8..11
    kwargs = {"ks": (1, 8), "precision_ks": (1, 8), "map_ks": (8, 10)}
    got = retrieval_metrics(emb, labels, source_ids=sources, **kwargs)
    expected = brute_force(emb, labels, q_sources=sources, **kwargs)
    assert_close(got, expected)
    # Hand count for query 1 (label 0): its list holds items 8..11, two of them label 0, so
    # at most 2 of its first 8 slots are hits; the mean precision@8 stays below 0.5.
    assert got["precision@8"] < 0.5


def test_per_class_keys_are_python_ints_so_the_result_is_json() -> None:
    import json

    emb, labels = clustered(60, 6, 3, 1.0, seed=12)
    got = retrieval_metrics(emb, labels.astype(np.int64), per_class=True)
    assert all(type(key) is int for key in got["per_class"])
    assert json.loads(json.dumps(got))["per_class"].keys() == {"0", "1", "2"}


def test_a_gallery_of_one_class_and_one_source_matches_brute_force() -> None:
    """One-entry count tables (a single gallery label, a single gallery source) still count."""
    q, ql = clustered(40, 8, 3, 1.0, seed=6)
    g, _ = clustered(60, 8, 3, 1.0, seed=7)
    gl = np.zeros(60, dtype=np.int64)
    got = retrieval_metrics(q, ql, g, gl, **EXTRA)
    assert_close(got, brute_force(q, ql, g, gl, **EXTRA))
    assert got["num_queries"] == int((ql == 0).sum())
    qs, gs = np.arange(40) % 2, np.full(60, 1)  # every gallery item from source 1
    got = retrieval_metrics(q, ql, g, gl, source_ids=qs, gallery_source_ids=gs, **EXTRA)
    assert_close(got, brute_force(q, ql, g, gl, q_sources=qs, g_sources=gs, **EXTRA))
    assert got["num_queries"] == int(((ql == 0) & (qs == 0)).sum())


_ONES, _ZEROS = np.ones, np.zeros
_G = (_ONES((3, 4)), _ZEROS(3))  # a valid gallery and its labels


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            (_ZEROS((0, 4)), _ZEROS(0)),
            {},
            "query must be a non-empty (N, D) array, got shape (0, 4).",
        ),
        (
            (_ONES((4, 4)), _ZEROS(3)),
            {},
            "query_labels must be (4,) to match query, got shape (3,).",
        ),
        (
            (np.array([[np.nan, 1.0], [1.0, 1.0], [np.inf, 0]]), _ZEROS(3)),
            {},
            "query has 2 row(s) with NaN or inf (rows 0, 2); drop or fix them before evaluating.",
        ),
        (
            (_ONES((4, 4)), _ZEROS(4)),
            {"source_ids": _ZEROS(3)},
            "source_ids must be (4,) to match query, got shape (3,).",
        ),
        (
            (_ONES((4, 4)), _ZEROS(4)),
            {"gallery_labels": _ZEROS(4)},
            "gallery_labels was given without gallery.",
        ),
        (
            (_ONES((4, 4)), _ZEROS(4)),
            {"gallery_source_ids": _ZEROS(4)},
            "gallery_source_ids was given without gallery; use source_ids.",
        ),
        (
            (_ONES((4, 4)), _ZEROS(4)),
            {"is_query": _ZEROS(3, bool)},
            "is_query must be (4,) to match query, got shape (3,).",
        ),
        (
            (_ONES((4, 4)), _ZEROS(4)),
            {"is_gallery": _ZEROS(3, bool)},
            "is_gallery must be (4,) to match query, got shape (3,).",
        ),
        (
            (_ONES((4, 4)), _ZEROS(4)),
            {"is_gallery": _ZEROS(4, bool)},
            "is_query and is_gallery must each select at least one item, got 4 queries and 0 "
            "gallery items.",
        ),
        (
            (_ONES((4, 4)), _ZEROS(4), *_G),
            {"is_query": _ONES(4, bool)},
            "is_query / is_gallery select from one set; do not pass gallery too.",
        ),
        ((_ONES((4, 4)), _ZEROS(4), _G[0]), {}, "gallery needs gallery_labels."),
        (
            (_ONES((4, 4)), _ZEROS(4), _ZEROS((0, 4)), _ZEROS(0)),
            {},
            "gallery must be a non-empty (N, D) array, got shape (0, 4).",
        ),
        (
            (_ONES((4, 4)), _ZEROS(4), _G[0], _ZEROS(2)),
            {},
            "gallery_labels must be (3,) to match gallery, got shape (2,).",
        ),
        (
            (_ONES((4, 4)), _ZEROS(4), _ONES((3, 5)), _ZEROS(3)),
            {},
            "query has dimension 4 but gallery has 5; embed both with the same model.",
        ),
        (
            (_ONES((4, 4)), _ZEROS(4), *_G),
            {"source_ids": _ZEROS(4)},
            "pass both source_ids and gallery_source_ids, or neither.",
        ),
        (
            (_ONES((4, 4)), _ZEROS(4), *_G),
            {"source_ids": _ZEROS(4), "gallery_source_ids": _ZEROS(2)},
            "gallery_source_ids must be (3,) to match gallery, got shape (2,).",
        ),
        ((_ONES((1, 4)), _ZEROS(1)), {}, "leave-one-out needs at least 2 items; got 1."),
        ((_ONES((4, 4)), _ZEROS(4)), {"ks": (0,)}, "ks must be positive integers, got [0]."),
        ((_ONES((4, 4)), _ZEROS(4)), {"chunk_size": 0}, "chunk_size must be ≥ 1, got 0."),
        (
            (_ONES((4, 4)), np.arange(4), _G[0], np.arange(4, 7)),
            {},
            "no query label occurs in the gallery, so no retrieval metric is defined; check "
            "that query and gallery labels use the same ids.",
        ),
    ],
)
def test_bad_input_messages_name_the_argument_and_the_fix(args, kwargs, message: str) -> None:
    with pytest.raises(ValueError) as info:
        retrieval_metrics(*args, **kwargs)
    assert str(info.value) == message


def test_k_past_lists_shortened_by_gallery_sources_is_clipped_to_their_length(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every query shares source 0 with 2 of the 5 gallery items: lists hold 3, not 5."""
    q, ql = clustered(6, 4, 2, 1.0, seed=15)
    g, gl = clustered(5, 4, 2, 1.0, seed=16)
    qs, gs = np.zeros(6, dtype=np.int64), np.array([0, 0, 1, 2, 3])
    kwargs = {"source_ids": qs, "gallery_source_ids": gs}
    with caplog.at_level(logging.WARNING, logger="supcon"):
        got = retrieval_metrics(q, ql, g, gl, ks=(5,), precision_ks=(5,), **kwargs)
    assert "k=5 is larger than the 3 gallery items a query can retrieve" in caplog.text
    expected = brute_force(q, ql, g, gl, ks=(3,), precision_ks=(3,), q_sources=qs, g_sources=gs)
    assert got["precision@5"] == pytest.approx(expected["precision@3"], abs=1e-12)
    assert got["recall@5"] == pytest.approx(expected["recall@3"], abs=1e-12)
