"""``supcon eval --qe N --dba N``: the post-processed metrics beside the plain ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supcon.evaluation.embed import load_embeddings
from supcon.evaluation.postprocess import postprocessed_metrics
from tests.evaluation.helpers import ok, one_line_error


def test_eval_reports_metrics_after_dba_and_qe(export_work: Path, run_cli) -> None:
    w = export_work
    ok(run_cli("embed", "cnn", "--data", "images", "--out", "ev.npy", "--no-progress", cwd=w))
    out = ok(run_cli("eval", "cnn", "--data", "images", "--qe", "2", "--qe-alpha", "1",
                     "--dba", "2", "--json", "ev.json", "--no-progress", cwd=w))  # fmt: skip
    assert "after DBA (n=2, α=3) + αQE (n=2, α=1)" in out
    report = json.loads((w / "ev.json").read_text())
    data = load_embeddings(w / "ev.npy")
    expected = postprocessed_metrics(data.embeddings, data.labels, qe=2, qe_alpha=1.0, dba=2)
    got = report["postprocessed"]["metrics"]
    assert got["recall@1"] == pytest.approx(expected["recall@1"])
    assert got["map@r"] == pytest.approx(expected["map@r"])
    assert report["postprocessed"]["settings"]["dba"] == 2


def test_eval_qe_larger_than_the_gallery(export_work: Path, run_cli) -> None:
    one_line_error(
        run_cli("eval", "cnn", "--data", "images", "--qe", "40", "--no-progress", cwd=export_work),
        "lower it to at most 17",
    )


def test_eval_through_an_approximate_index_and_refine(export_work: Path, run_cli) -> None:
    w = export_work
    out = ok(run_cli("eval", "cnn", "--data", "images", "--index", "hnsw", "--refine", "6",
                     "--json", "ap.json", "--no-progress", cwd=w))  # fmt: skip
    assert "through hnsw + refine 6" in out
    report = json.loads((w / "ap.json").read_text())["approximate"]
    assert 0 <= report["metrics"]["recall@1"] <= 1 and report["refine"] == 6
    one_line_error(
        run_cli("eval", "cnn", "--data", "images", "--refine", "6", "--no-progress", cwd=w),
        "--refine has nothing to refine",
    )
    one_line_error(
        run_cli("eval", "cnn", "--data", "images", "--index", "flat", "--refine", "6", cwd=w),
        "already exact",
    )
