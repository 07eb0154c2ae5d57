"""retrieval_metrics' options and edge layouts against the brute-force reference: which
metrics each option turns on, the smallest problems, pairs and singletons, one-sided flags,
per-class keys, the k-means seed, and the messages naming each cut-off list."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from supcon import retrieval_metrics
from tests.evaluation.reference import assert_close, brute_force, clustered

EMB, LABELS = clustered(40, 6, 4, 1.0, seed=21)


def test_nothing_to_compute_is_refused_in_full() -> None:
    with pytest.raises(ValueError) as info:
        retrieval_metrics(EMB, LABELS, ks=(), precision_ks=(), map_ks=(), at_r=False)
    assert str(info.value) == ("nothing to compute: give ks, precision_ks or map_ks, or at_r=True.")


@pytest.mark.parametrize(
    ("option", "keys"),
    [
        ({"ks": (2,)}, {"recall@2"}),
        ({"precision_ks": (3,)}, {"precision@3"}),
        ({"map_ks": (5,)}, {"map@5"}),
        ({"at_r": True}, {"map@r", "r_precision"}),
    ],
)
def test_any_one_option_alone_is_enough(option: dict, keys: set[str]) -> None:
    kwargs = {"ks": (), "precision_ks": (), "map_ks": (), "at_r": False} | option
    got = retrieval_metrics(EMB, LABELS, **kwargs)
    assert set(got) == keys | {"num_queries", "num_queries_without_positives"}
    expected = brute_force(EMB, LABELS, ks=(2,), precision_ks=(3,), map_ks=(5,))
    for key in keys:
        assert got[key] == pytest.approx(expected[key], abs=1e-12)


@pytest.mark.parametrize("name", ["precision_ks", "map_ks"])
def test_bad_cut_offs_are_named(name: str) -> None:
    with pytest.raises(ValueError) as info:
        retrieval_metrics(EMB, LABELS, **{name: (3, 0)})
    assert str(info.value) == f"{name} must be positive integers, got [3, 0]."


def test_chunks_of_one_row_are_allowed() -> None:
    assert retrieval_metrics(EMB, LABELS, chunk_size=1) == retrieval_metrics(EMB, LABELS)


def test_nmi_is_off_by_default_and_seeded_with_zero() -> None:
    emb, labels = clustered(120, 8, 6, 2.5, seed=22)  # overlapping blobs: k-means varies
    assert "nmi" not in retrieval_metrics(emb, labels)
    default = retrieval_metrics(emb, labels, nmi=True)
    assert default == retrieval_metrics(emb, labels, nmi=True, seed=0)
    others = [retrieval_metrics(emb, labels, nmi=True, seed=s)["nmi"] for s in (1, 2, 3)]
    assert any(nmi != default["nmi"] for nmi in others)  # so the seed is what matched


def test_two_items_leave_one_out() -> None:
    emb = np.array([[1.0, 0.0], [0.8, 0.6]], dtype=np.float32)
    got = retrieval_metrics(emb, [3, 3], ks=(1,))
    assert got["recall@1"] == 1.0 and got["map@r"] == 1.0 and got["num_queries"] == 2


@pytest.mark.filterwarnings("error::RuntimeWarning")  # singletons are not scored at all
@pytest.mark.parametrize("symmetric", [True, False])
def test_pairs_and_singletons_match_brute_force(symmetric: bool, monkeypatch) -> None:
    """Classes of 2 (one relevant item per query) and of 1 (none: left out), in either
    search layout."""
    from supcon import blocks

    if not symmetric:
        monkeypatch.setattr(blocks, "SYMMETRIC_BUDGET_BYTES", 0)
    emb, _ = clustered(30, 6, 5, 1.0, seed=23)
    labels = np.concatenate([np.repeat(np.arange(12), 2), np.arange(100, 106)])
    got = retrieval_metrics(emb, labels, precision_ks=(1, 3), map_ks=(2,), per_class=True)
    expected = brute_force(emb, labels, precision_ks=(1, 3), map_ks=(2,), per_class=True)
    assert_close(got, expected, same_keys=True)
    assert got["num_queries"] == 24 and got["num_queries_without_positives"] == 6


def test_a_cut_off_equal_to_the_longest_list_is_not_clipped(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="supcon"):
        got = retrieval_metrics(EMB, LABELS, ks=(39,), precision_ks=(39,))
        retrieval_metrics(EMB[:2], [0, 0], ks=(), precision_ks=(), at_r=True)
    assert caplog.text == ""
    assert got["recall@39"] == 1.0


def test_every_item_a_query_some_in_the_gallery() -> None:
    """is_query for all, is_gallery for half: not leave-one-out over everything."""
    is_gallery = np.arange(40) % 2 == 0
    got = retrieval_metrics(EMB, LABELS, is_gallery=is_gallery, map_ks=(3,))
    ids = np.arange(40)
    expected = brute_force(
        EMB, LABELS, EMB[is_gallery], LABELS[is_gallery], map_ks=(3,),
        q_sources=ids, g_sources=ids[is_gallery],
    )  # fmt: skip
    assert_close(got, expected, same_keys=True)


@pytest.mark.parametrize("layout", ["leave-one-out", "flags", "query-gallery"])
def test_per_class_is_keyed_by_the_original_labels(layout: str) -> None:
    names = np.array(["cat", "dog", "emu", "fox"])[LABELS]
    if layout == "leave-one-out":
        got = retrieval_metrics(EMB, names, per_class=True)
        expected = brute_force(EMB, names, per_class=True)
    elif layout == "flags":
        is_query, ids = np.arange(40) < 15, np.arange(40)
        got = retrieval_metrics(EMB, names, is_query=is_query, per_class=True)
        expected = brute_force(
            EMB[:15], names[:15], EMB, names, q_sources=ids[:15], g_sources=ids, per_class=True
        )
    else:
        got = retrieval_metrics(EMB[:15], names[:15], EMB[15:], names[15:], per_class=True)
        expected = brute_force(EMB[:15], names[:15], EMB[15:], names[15:], per_class=True)
    assert set(got["per_class"]) <= {"cat", "dog", "emu", "fox"}
    assert_close(got, expected, same_keys=True)
