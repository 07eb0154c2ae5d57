"""``supcon export`` and exported models in ``supcon embed`` / ``index`` / ``search``; bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from supcon.evaluation.embed import load_embeddings
from tests.evaluation.helpers import ok, one_line_error


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_embed_and_search_accept_an_exported_model(export_work: Path, run_cli, suffix) -> None:
    if suffix == ".onnx":
        pytest.importorskip("onnxruntime")
    w = export_work
    tag = suffix[1:]  # each format writes its own outputs (no command overwrites without --force)
    model = f"cli{suffix}"
    out = ok(run_cli("export", "cnn", "--out", model, cwd=w))  # format from the suffix
    assert "fingerprint" in out and (w / f"{model}.json").is_file()
    ok(
        run_cli(
            "embed", "cnn", "--data", "images", "--out", f"run-{tag}.npy", "--no-progress", cwd=w
        )
    )
    ok(
        run_cli(
            "embed", model, "--data", "images", "--out", f"exp-{tag}.npy", "--no-progress", cwd=w
        )
    )
    from_run, from_export = (
        load_embeddings(w / f"run-{tag}.npy"),
        load_embeddings(w / f"exp-{tag}.npy"),
    )
    assert np.abs(from_run.embeddings - from_export.embeddings).max() <= 1e-4
    assert from_export.model["fingerprint"] == from_run.model["fingerprint"]
    np.testing.assert_array_equal(from_export.labels, from_run.labels)

    # An index built from the run is searched with the export (same fingerprint).
    ok(run_cli("index", f"run-{tag}.npy", "--out", f"g-{tag}.faiss", cwd=w))
    query = "images/class_1/img_2.png"
    ok(
        run_cli(
            "search",
            f"g-{tag}.faiss",
            query,
            "--run",
            model,
            "--k",
            "2",
            "--json",
            f"s-{tag}.json",
            cwd=w,
        )
    )
    first = json.loads((w / f"s-{tag}.json").read_text())["results"][0]["neighbours"][0]
    assert first["path"] == str((w / query).resolve()) and first["score"] == pytest.approx(1, 1e-4)


def test_export_of_a_run_without_checkpoint(export_work: Path, run_cli) -> None:
    (export_work / "empty").mkdir(exist_ok=True)
    one_line_error(
        run_cli("export", "empty", "--format", "onnx", "--out", "e.onnx", cwd=export_work),
        "no checkpoint",
    )


def test_export_unknown_format(export_work: Path, run_cli) -> None:
    one_line_error(
        run_cli("export", "cnn", "--format", "tflite", "--out", "m.tfl", cwd=export_work),
        "unknown export format 'tflite'",
    )


def test_onnx_without_or_with_a_foreign_sidecar(export_work: Path, run_cli) -> None:
    pytest.importorskip("onnxruntime")
    w = export_work
    ok(run_cli("export", "cnn", "--format", "onnx", "--out", "own.onnx", cwd=w))
    ok(run_cli("export", "vit", "--format", "onnx", "--out", "other.onnx", cwd=w))
    shutil.copy(w / "own.onnx", w / "bare.onnx")
    args = ("--data", "images", "--out", "x.npy", "--no-progress")
    one_line_error(run_cli("embed", "bare.onnx", *args, cwd=w), "has no sidecar")
    shutil.copy(w / "other.onnx.json", w / "bare.onnx.json")
    one_line_error(run_cli("embed", "bare.onnx", *args, cwd=w), "belongs to another model")


def test_export_of_another_model_is_refused_by_the_index(export_work: Path, run_cli) -> None:
    w = export_work
    ok(run_cli("embed", "cnn", "--data", "images", "--out", "g2.npy", "--no-progress", cwd=w))
    ok(run_cli("index", "g2.npy", "--out", "g2.faiss", cwd=w))
    ok(run_cli("export", "vit", "--format", "torchscript", "--out", "vit.pt", "--force", cwd=w))
    one_line_error(
        run_cli("search", "g2.faiss", "images/class_0/img_0.png", "--run", "vit.pt", cwd=w),
        "fingerprint",
    )


def test_export_never_overwrites_a_checkpoint_and_needs_force_for_its_own_output(
    export_work: Path, run_cli
) -> None:
    w = export_work
    checkpoint = w / "cnn" / "checkpoints" / "last.pt"
    before = checkpoint.read_bytes()
    one_line_error(
        run_cli("export", "cnn", "--out", str(checkpoint), "--force", cwd=w), "is an input"
    )
    (w / "notes.pt").write_text("mine")
    one_line_error(
        run_cli("export", "cnn", "--out", "notes.pt", "--force", cwd=w), "is not a supcon"
    )
    assert checkpoint.read_bytes() == before and (w / "notes.pt").read_text() == "mine"
    ok(run_cli("export", "cnn", "--out", "again.pt", cwd=w))
    one_line_error(run_cli("export", "cnn", "--out", "again.pt", cwd=w), "--force")
    ok(run_cli("export", "cnn", "--out", "again.pt", "--force", cwd=w))
