"""``supcon.export``: ONNX / TorchScript parity with PyTorch, the sidecar, loading back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from timm.data import resolve_data_config

from supcon.errors import UserError
from supcon.evaluation.embed import model_fingerprint
from supcon.export import export_model, load_exported, sidecar_path
from supcon.runs import load_run
from tests.export.conftest import CLASSES

TOLERANCE = 1e-4


def _images(root: Path, transform, count: int = 5) -> torch.Tensor:
    """Generated image files through a transform: ``(count, C, H, W)``."""
    from PIL import Image

    files = sorted((root / "images").rglob("*.png"))[:count]
    return torch.stack([transform(Image.open(f).convert("RGB")) for f in files])


@pytest.mark.parametrize("kind", ["cnn", "vit"])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_matches_pytorch(export_work: Path, kind: str, fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    run = load_run(export_work / kind)
    out = export_work / f"{kind}.{'onnx' if fmt == 'onnx' else 'pt'}"
    export_model(run, out, format=fmt)
    exported = load_exported(out)

    # The sidecar's transform is the run's: same tensors from the same files.
    images = _images(export_work, run.eval_transform)
    torch.testing.assert_close(
        _images(export_work, exported.eval_transform), images, rtol=0, atol=0
    )
    with torch.no_grad():
        expected = run.model(images)
        got = exported.model(images)  # batch 5: the graph was traced at batch 2
        single = exported.model(images[:1])
    assert got.shape == expected.shape == (5, run.model.embedding_dim)
    assert (got - expected).abs().max().item() <= TOLERANCE
    assert (single - expected[:1]).abs().max().item() <= TOLERANCE
    torch.testing.assert_close(got.norm(dim=1), torch.ones(5), atol=1e-5, rtol=0)


def test_sidecar_records_transform_dimension_classes_and_fingerprint(export_work: Path) -> None:
    run = load_run(export_work / "cnn")
    out = export_model(run, export_work / "side.pt", format="torchscript")
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["embedding_dim"] == 16 and meta["class_names"] == list(CLASSES)
    assert meta["model"]["fingerprint"] == model_fingerprint(run.model)
    transform = meta["transform"]
    assert transform["input_size"] == [3, 32, 32] and transform["resize"] == "crop"
    # timm's own data config of the backbone: mean/std, resize to size / crop_pct then crop
    timm_config = resolve_data_config({}, model=run.model.backbone)
    np.testing.assert_allclose(transform["mean"], timm_config["mean"], atol=1e-6)
    np.testing.assert_allclose(transform["std"], timm_config["std"], atol=1e-6)
    assert transform["resize_to"] == [int(32 / timm_config["crop_pct"])]
    assert transform["interpolation"] == timm_config["interpolation"]
    assert meta["input"]["shape"] == ["batch", 3, 32, 32]


def test_onnx_records_opset_and_dynamic_batch(export_work: Path) -> None:
    onnx = pytest.importorskip("onnx")
    out = export_model(load_run(export_work / "cnn"), export_work / "opset.onnx", opset=16)
    model = onnx.load(str(out))
    assert json.loads(sidecar_path(out).read_text())["opset"] == 16
    assert any(o.domain in ("", "ai.onnx") and o.version == 16 for o in model.opset_import)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # symbolic, not fixed to the traced 2


def test_sidecar_missing_or_from_another_model_is_refused(export_work: Path) -> None:
    run = load_run(export_work / "cnn")
    first = export_model(run, export_work / "a.pt", format="torchscript")
    lonely = export_work / "lonely.pt"
    shutil.copy(first, lonely)
    with pytest.raises(UserError, match="no sidecar"):
        load_exported(lonely)
    other = export_model(load_run(export_work / "vit"), export_work / "b.pt", format="torchscript")
    shutil.copy(sidecar_path(other), sidecar_path(lonely))
    with pytest.raises(UserError, match="belongs to another model"):
        load_exported(lonely)


def test_unknown_format_is_refused(export_work: Path) -> None:
    with pytest.raises(UserError, match="unknown export format 'tflite'"):
        export_model(load_run(export_work / "cnn"), export_work / "x.bin", format="tflite")
