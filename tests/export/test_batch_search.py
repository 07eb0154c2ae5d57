"""``supcon search --queries DIR_OR_CSV --out hits.csv|json`` with refine and αQE; bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from supcon.evaluation.embed import load_embeddings
from supcon.evaluation.postprocess import query_expansion
from tests.evaluation.helpers import ok, one_line_error
from tests.images import make_image


@pytest.fixture(scope="module")
def gallery(export_work: Path) -> Path:
    """``gal.npy`` (every image of ``images/``, embedded by the cnn run) and ``gal.faiss``."""
    from supcon.cli import main

    w = export_work
    for args in (
        ["embed", str(w / "cnn"), "--data", str(w / "images"), "--out", str(w / "gal.npy"),
         "--no-progress"],
        ["index", str(w / "gal.npy"), "--out", str(w / "gal.faiss")],
        ["index", str(w / "gal.npy"), "--out", str(w / "hnsw.faiss"), "--type", "hnsw"],
    ):  # fmt: skip
        assert main(args) == 0
    return w


def test_batch_search_writes_one_row_per_query_and_rank(gallery: Path, run_cli) -> None:
    w = gallery
    out = ok(run_cli("search", "gal.faiss", "--queries", "images", "--k", "3", "--out", "h.csv",
                     "--no-progress", cwd=w))  # fmt: skip
    assert "18 queries, 54 hits" in out
    with (w / "h.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 18 * 3
    assert list(rows[0]) == ["query", "rank", "id", "score", "label", "class_name", "path"]
    by_query: dict[str, list[dict]] = {}
    for row in rows:
        by_query.setdefault(row["query"], []).append(row)
    for query, hits in by_query.items():
        assert [int(h["rank"]) for h in hits] == [1, 2, 3]
        assert hits[0]["path"] == str(Path(query).resolve())  # each image finds itself first
        assert hits[0]["class_name"] == Path(query).parent.name
        scores = [float(h["score"]) for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_batch_search_from_a_csv_to_json_with_query_expansion(gallery: Path, run_cli) -> None:
    w = gallery
    files = sorted((w / "images").rglob("*.png"))[:4]
    (w / "q.csv").write_text("path\n" + "".join(f"{f}\n" for f in files))
    ok(run_cli("search", "gal.faiss", "--queries", "q.csv", "--k", "4", "--qe", "2",
               "--qe-alpha", "1", "--out", "h.json", "--no-progress", cwd=w))  # fmt: skip
    report = json.loads((w / "h.json").read_text())
    assert report["search"]["qe"] == 2 and len(report["hits"]) == 16
    # Reference: expand the stored query embeddings with numpy, then exact search.
    data = load_embeddings(w / "gal.npy")
    rows = [data.paths.index(str(f.resolve())) for f in files]
    expanded = query_expansion(data.embeddings[rows], data.embeddings, 2, 1.0)
    expected = np.argsort(-(expanded @ data.embeddings.T), axis=1)[:, :4]
    got = np.array([h["id"] for h in report["hits"]]).reshape(4, 4)
    np.testing.assert_array_equal(got, data.ids[expected])


def test_refine_on_hnsw_and_refused_on_flat(gallery: Path, run_cli) -> None:
    w = gallery
    query = str(next((w / "images").rglob("*.png")))
    ok(run_cli("search", "hnsw.faiss", query, "--refine", "8", "--k", "2", cwd=w))
    one_line_error(run_cli("search", "gal.faiss", query, "--refine", "8", cwd=w), "already exact")


def test_query_expansion_larger_than_the_gallery(gallery: Path, run_cli) -> None:
    query = str(next((gallery / "images").rglob("*.png")))
    one_line_error(
        run_cli("search", "gal.faiss", query, "--qe", "50", cwd=gallery),
        "--qe 50 is larger than the 18 items",
    )


def test_queries_folder_without_images_and_bad_out(gallery: Path, run_cli) -> None:
    (gallery / "no_images").mkdir(exist_ok=True)
    one_line_error(
        run_cli("search", "gal.faiss", "--queries", "no_images", cwd=gallery), "holds no images"
    )
    make_image(gallery / "one" / "a.png", 0, np.random.default_rng(0))
    one_line_error(
        run_cli("search", "gal.faiss", "--queries", "one", "--out", "h.txt", cwd=gallery),
        "must end in .csv or .json",
    )


def test_index_dba_stores_augmented_vectors(gallery: Path, run_cli) -> None:
    from supcon.evaluation.index import SearchIndex
    from supcon.evaluation.postprocess import database_augmentation

    w = gallery
    ok(run_cli("index", "gal.npy", "--out", "dba.faiss", "--dba", "3", "--dba-alpha", "2", cwd=w))
    index = SearchIndex.load(w / "dba.faiss")
    data = load_embeddings(w / "gal.npy")
    expected = database_augmentation(data.embeddings, 3, 2.0)
    np.testing.assert_allclose(index.vectors(np.arange(len(index))), expected, atol=1e-6)
    assert index.model["dba"] == {"n": 3, "alpha": 2.0}
    one_line_error(
        run_cli("index", "gal.npy", "--out", "x.faiss", "--store-exact", cwd=w),
        "--store-exact applies to --type ivfpq",
    )


def test_hits_file_is_protected_like_every_output(gallery: Path, run_cli) -> None:
    w = gallery
    search = ("search", "gal.faiss", "--queries", "images", "--k", "2", "--no-progress")
    one_line_error(run_cli(*search, "--out", "gal.faiss.json", cwd=w), "is an input")
    (w / "notes.csv").write_text("a,b\n1,2\n")
    one_line_error(run_cli(*search, "--out", "notes.csv", "--force", cwd=w), "is not a supcon")
    for name in ("hits.csv", "hits.json"):
        ok(run_cli(*search, "--out", name, cwd=w))
        one_line_error(run_cli(*search, "--out", name, cwd=w), "--force")
        ok(run_cli(*search, "--out", name, "--force", cwd=w))
    assert json.loads((w / "hits.json").read_text())["format"] == "supcon-hits/1"
