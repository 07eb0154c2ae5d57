"""FAISS indexes: exactness, approximate recall, save / load, refusing mismatches."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from supcon.evaluation.index import IndexParams, SearchIndex, build_index
from supcon.evaluation.knn import search_blocks
from tests.evaluation.reference import clustered


@pytest.fixture(scope="module")
def gallery():
    emb, labels = clustered(3300, 32, 40, 1.0, seed=0)
    return emb[300:], labels[300:], emb[:300]


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_is_exact_with_ids(gallery) -> None:
    emb, labels, queries = gallery
    ids = np.arange(len(emb)) * 10 + 7
    index = build_index(emb, ids=ids, labels=labels)
    scores, found = index.search(queries, 10)
    ref_scores, ref_rows = search_blocks(unit(queries), unit(emb), 10)
    np.testing.assert_array_equal(found, ids[ref_rows])
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    np.testing.assert_array_equal(index.labels[index.rows(found)], labels[ref_rows])


MODEL = {"checkpoint": "run/checkpoints/last.pt", "fingerprint": "abc"}


@pytest.fixture(scope="module")
def built(gallery):
    """One index of each type over the gallery (approximate ones take seconds to train)."""
    emb, labels, _ = gallery
    paths = tuple(f"img/{i}.png" for i in range(len(emb)))
    return {
        kind: build_index(
            emb,
            labels=labels,
            paths=paths,
            class_names=("a", "b"),
            model=MODEL,
            params=IndexParams(kind),
        )
        for kind in ("flat", "ivf", "hnsw", "ivfpq")
    }


@pytest.mark.parametrize(("kind", "floor"), [("ivf", 0.9), ("hnsw", 0.95), ("ivfpq", 0.5)])
def test_approximate_indexes_reach_high_recall_on_clustered_data(
    gallery, built, kind, floor
) -> None:
    _, _, queries = gallery
    _, exact = built["flat"].search(queries, 10)
    _, approx = built[kind].search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx, exact, strict=True)])
    assert recall >= floor, recall


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_save_load_round_trip(gallery, built, tmp_path: Path, kind: str) -> None:
    _emb, labels, queries = gallery
    index = built[kind]
    index.save(tmp_path / "g.faiss")
    back = SearchIndex.load(tmp_path / "g.faiss")
    assert back.params == index.params and back.model == MODEL and back.paths == index.paths
    assert back.class_names == ("a", "b") and back.dim == 32
    np.testing.assert_array_equal(back.labels, labels)
    np.testing.assert_array_equal(back.search(queries, 5)[1], index.search(queries, 5)[1])
    meta = json.loads((tmp_path / "g.faiss.json").read_text())
    assert meta["dim"] == 32 and meta["metric"] == "cosine" and meta["params"]["kind"] == kind


def test_wrong_dimension_and_swapped_files_are_refused(gallery, tmp_path: Path) -> None:
    emb, _, _ = gallery
    index = build_index(emb, model={"checkpoint": "runs/a/checkpoints/last.pt"})
    with pytest.raises(ValueError, match=r"dimension 16 but the index holds 32.*runs/a"):
        index.search(np.ones((2, 16)), 3)
    index.save(tmp_path / "a.faiss")
    build_index(emb[:100]).save(tmp_path / "b.faiss")
    (tmp_path / "b.faiss").replace(tmp_path / "a.faiss")
    with pytest.raises(ValueError, match="does not match its metadata"):
        SearchIndex.load(tmp_path / "a.faiss")
    with pytest.raises(FileNotFoundError, match="both written by supcon index"):
        SearchIndex.load(tmp_path / "b.faiss")


def test_k_beyond_the_index_is_clipped_and_said(caplog: pytest.LogCaptureFixture) -> None:
    index = build_index(np.random.default_rng(0).normal(size=(5, 4)))
    with caplog.at_level(logging.WARNING, logger="supcon"):
        _scores, ids = index.search(np.ones((1, 4)), 9)
    assert ids.shape == (1, 5) and "k=9 is larger than the 5 items" in caplog.text


def test_gpu_requested_without_faiss_gpu_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    from supcon import messages
    from supcon.evaluation import backend

    if backend.faiss_gpu_count():
        pytest.skip("FAISS has a GPU here")
    messages._said.clear()
    with caplog.at_level(logging.WARNING, logger="supcon"):
        for _ in range(2):
            index = build_index(np.eye(4), device="cuda")
    assert caplog.text.count("FAISS has no GPU here") == 1
    assert index.search(np.eye(4)[:1], 1)[1].tolist() == [[0]]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"embeddings": np.zeros((0, 4))}, "non-empty"),
        ({"embeddings": np.array([[np.nan, 1.0]])}, "1 row"),
        ({"embeddings": np.ones((3, 4)), "ids": np.zeros(3)}, "unique"),
        ({"embeddings": np.ones((3, 4)), "labels": np.zeros(2)}, r"\(3,\)"),
        ({"embeddings": np.ones((30, 4)), "params": IndexParams("ivfpq")}, "at least 256"),
        ({"embeddings": np.ones((30, 4)), "params": IndexParams("annoy")}, "index type"),
    ],
)
def test_bad_input(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        build_index(**kwargs)


def test_configure_changes_search_settings_without_rebuilding(gallery, built) -> None:
    _, _, queries = gallery
    index = built["ivf"]
    _, exact = built["flat"].search(queries, 10)
    _, narrow = index.search(queries, 10)
    index.configure(nprobe=index.params.nlist)  # every cell: exact
    try:
        _, wide = index.search(queries, 10)
        np.testing.assert_array_equal(wide, exact)
        assert (narrow != exact).any()
    finally:
        index.configure(nprobe=16)
    with pytest.raises(ValueError, match="does not apply to a ivf index"):
        index.configure(ef_search=10)
