"""``supcon eval | embed | index | search`` end to end on a tiny trained run.

Commands run in-process through :func:`supcon.cli.main` (the console script's entry point:
same parsing, same exit codes, same one-line errors) to spare a Python start-up per call; one
test goes through ``python -m supcon``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.evaluation.helpers import Result, ok, one_line_error
from tests.images import make_csv_manifest

PNG = b"\x89PNG\r\n\x1a\n"


def test_eval_prints_and_writes_the_run_metrics_with_plots(work: Path) -> None:
    args = ["eval", "run", "--json", "m.json", "--plots", "plots", "--per-class", "--no-progress"]
    result = subprocess.run(
        [sys.executable, "-m", "supcon", *args], capture_output=True, text=True, cwd=work
    )
    out = ok(Result(result.returncode, result.stdout, result.stderr))
    assert "recall@1" in out and "class_3" in out
    report = json.loads((work / "m.json").read_text())
    trained = json.loads((work / "run" / "metrics.json").read_text())
    assert report["metrics"] == pytest.approx(trained)  # same held-out split, same model
    assert set(report["per_class"]) == {"class_0", "class_1", "class_2", "class_3"}
    for name in ("recall_at_k.png", "retrieval_grid.png"):
        data = (work / "plots" / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000


def test_embed_index_search_round_trip(work: Path, run_cli) -> None:
    ok(run_cli("embed", "run", "--out", "emb.safetensors", "--no-progress", cwd=work))
    ok(run_cli("index", "emb.safetensors", "--out", "gallery.faiss", cwd=work))
    meta = json.loads((work / "gallery.faiss.json").read_text())
    assert meta["count"] == 48 and meta["dim"] == 16 and meta["model"]["fingerprint"]
    queries = ["images/class_2/img_5.png", "images/class_0/img_1.png"]
    out = ok(run_cli("search", "gallery.faiss", *queries, "--k", "3", "--json", "s.json", cwd=work))
    assert "class_2" in out
    results = json.loads((work / "s.json").read_text())["results"]
    for query, result in zip(queries, results, strict=True):
        first = result["neighbours"][0]
        assert first["path"] == str((work / query).resolve())  # an indexed image finds itself
        assert first["score"] == pytest.approx(1.0, abs=1e-4)
        assert first["class_name"] == Path(query).parent.name
        assert [n["rank"] for n in result["neighbours"]] == [1, 2, 3]


def test_csv_query_gallery_flags_drive_eval_and_index(work: Path, run_cli) -> None:
    manifest = make_csv_manifest(work / "csv", query_gallery=True)
    ok(run_cli("eval", "run", "--data", str(manifest), "--json", "q.json", cwd=work))
    metrics = json.loads((work / "q.json").read_text())["metrics"]
    assert metrics["num_queries"] == 8  # rows with i % 8 == 0: 2 per class
    ok(
        run_cli(
            "index", "run", "--data", str(manifest), "--out", "h.faiss", "--type", "hnsw", cwd=work
        )
    )
    meta = json.loads((work / "h.faiss.json").read_text())
    assert meta["count"] == 40 and meta["params"]["kind"] == "hnsw"


def test_search_refuses_another_model_and_another_dimension(work: Path, run_cli) -> None:
    if not (work / "gallery.faiss").exists():
        ok(run_cli("index", "run", "--out", "gallery.faiss", cwd=work))
    state = torch.load(work / "run" / "checkpoints" / "last.pt", weights_only=True)
    first = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][first] = state["model"][first] + 0.01
    torch.save(state, work / "other.pt")
    image = "images/class_1/img_0.png"
    one_line_error(
        run_cli("search", "gallery.faiss", image, "--run", "other.pt", cwd=work),
        "the index was built from a model with fingerprint",
    )
    np.save(work / "small.npy", np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32))
    ok(run_cli("index", "small.npy", "--out", "small.faiss", cwd=work))
    one_line_error(run_cli("search", "small.faiss", image, cwd=work), "does not record which model")
    one_line_error(
        run_cli("search", "small.faiss", image, "--run", "run", cwd=work),
        "makes 16-dimensional embeddings but the index holds 8-dimensional ones",
    )
    one_line_error(
        run_cli("search", "gallery.faiss", "missing.png", cwd=work), "image(s) not found"
    )


def test_eval_refuses_unlabelled_data(work: Path, run_cli) -> None:
    manifest = make_csv_manifest(work / "unlabelled", labels=False)
    one_line_error(
        run_cli("eval", "run", "--data", str(manifest), "--no-progress", cwd=work),
        "has no labels",
    )
