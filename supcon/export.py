"""Export a run's embedding model to ONNX or TorchScript, and load such an export back.

The exported graph is the eval-mode :class:`~supcon.models.EmbeddingModel` exactly as
``supcon embed`` runs it: backbone, pooling, head (or backbone output, as the run says) and L2
normalisation; input ``images`` ``(B, C, H, W)`` float32 with a dynamic batch size, output
``embeddings`` ``(B, D)`` unit vectors. Beside ``FILE`` goes ``FILE.json``:

* ``transform``: the run's eval transform as plain steps (resize, centre crop, normalise …)
  read from the transform the run builds, plus a summary (input size, mean, std, resize mode);
* ``embedding_dim``, ``class_names``, ``opset`` (ONNX) and the exporter used;
* ``model``: the checkpoint and the weight fingerprint that ``supcon index`` / ``search``
  record, so an index built from the run is searched with the export and vice versa;
* ``file_sha256`` of the exported file, so a sidecar that belongs to another file is refused.

ONNX needs the ``export`` extra (``onnx``, ``onnxruntime``); TorchScript needs only torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

import supcon
from supcon.errors import UserError
from supcon.io import atomic_write_bytes, atomic_write_json, sidecar_path

if TYPE_CHECKING:
    from supcon.data.transforms import Transform
    from supcon.runs import LoadedRun

FORMAT = "supcon-export/1"
EXPORT_FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17
SUFFIXES = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
}
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


# --- the eval transform as data -------------------------------------------------------------


def describe_transform(transform: Any) -> list[dict[str, Any]]:
    """The steps of a torchvision v2 eval transform as JSON-able dicts.

    Args:
        transform: A ``v2.Compose`` of deterministic steps (what :func:`supcon.runs.load_run`
            returns as ``eval_transform``).

    Returns:
        ``[{"op": "to_image"}, {"op": "resize", "size": [..], "interpolation": ..}, ...]``.

    Raises:
        UserError: for a step that cannot be written down (say which).
    """
    from torchvision.transforms import v2

    steps = getattr(transform, "transforms", [transform])
    out: list[dict[str, Any]] = []
    for step in steps:
        if isinstance(step, v2.Compose):
            out.extend(describe_transform(step))
        elif isinstance(step, v2.ToImage):
            out.append({"op": "to_image"})
        elif isinstance(step, v2.RGB):
            out.append({"op": "rgb"})
        elif isinstance(step, v2.Grayscale):
            out.append({"op": "grayscale", "channels": int(step.num_output_channels)})
        elif isinstance(step, v2.Resize):
            size = step.size if isinstance(step.size, (list, tuple)) else [step.size]
            out.append(
                {
                    "op": "resize",
                    "size": [int(s) for s in size],
                    "interpolation": step.interpolation.value,
                    "antialias": bool(step.antialias),
                }
            )
        elif isinstance(step, v2.CenterCrop):
            out.append({"op": "center_crop", "size": [int(s) for s in step.size]})
        elif isinstance(step, v2.ToDtype):
            out.append({"op": "to_float", "scale": bool(step.scale)})
        elif isinstance(step, v2.Normalize):
            out.append(
                {
                    "op": "normalize",
                    "mean": [float(m) for m in step.mean],
                    "std": [float(s) for s in step.std],
                }
            )
        else:
            raise UserError(
                f"the run's eval transform has a step supcon export cannot describe "
                f"({type(step).__name__}); export supports ToImage, RGB, Grayscale, Resize, "
                "CenterCrop, ToDtype and Normalize"
            )
    return out


def transform_from_steps(steps: list[dict[str, Any]]) -> Transform:
    """Rebuild the transform :func:`describe_transform` wrote down."""
    from torchvision.transforms import InterpolationMode, v2

    built: list[Any] = []
    for step in steps:
        op = step["op"]
        if op == "to_image":
            built.append(v2.ToImage())
        elif op == "rgb":
            built.append(v2.RGB())
        elif op == "grayscale":
            built.append(v2.Grayscale(step["channels"]))
        elif op == "resize":
            size = step["size"][0] if len(step["size"]) == 1 else step["size"]
            built.append(
                v2.Resize(
                    size,
                    interpolation=InterpolationMode(step["interpolation"]),
                    antialias=step["antialias"],
                )
            )
        elif op == "center_crop":
            built.append(v2.CenterCrop(step["size"]))
        elif op == "to_float":
            built.append(v2.ToDtype(torch.float32, scale=step["scale"]))
        elif op == "normalize":
            built.append(v2.Normalize(step["mean"], step["std"]))
        else:
            raise ValueError(f"unknown transform step {op!r} in an export sidecar")
    return v2.Compose(built)


def transform_summary(steps: list[dict[str, Any]], channels: int) -> dict[str, Any]:
    """Input size, mean, std and resize mode of described steps (for people and other tools).

    ``resize`` is ``"crop"`` (shorter side resized, then centre crop: timm's eval pipeline) or
    ``"full"`` (resized to the input size, no crop).
    """
    resize = next((s for s in steps if s["op"] == "resize"), None)
    crop = next((s for s in steps if s["op"] == "center_crop"), None)
    norm = next((s for s in steps if s["op"] == "normalize"), None)
    if crop is not None:
        size = crop["size"]
    elif resize is not None:
        size = resize["size"]
    else:
        raise UserError("the run's eval transform neither resizes nor crops; cannot export it")
    size = size * 2 if len(size) == 1 else size
    return {
        "input_size": [channels, int(size[0]), int(size[1])],
        "resize": "crop" if crop is not None else "full",
        "resize_to": None if resize is None else resize["size"],
        "interpolation": None if resize is None else resize["interpolation"],
        "mean": None if norm is None else norm["mean"],
        "std": None if norm is None else norm["std"],
    }


# --- export ----------------------------------------------------------------------------------


class _Embed(nn.Module):
    """``images -> model(images)``: the retrieval embedding, one tensor in and out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def _torchscript_bytes(module: nn.Module, example: torch.Tensor) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _onnx_bytes(module: nn.Module, example: torch.Tensor, opset: int) -> tuple[bytes, str]:
    """ONNX bytes and the exporter used: torch's TorchScript-based one (fast, mature for CNNs
    and ViTs), else its dynamo exporter (needs onnxscript) where the first is gone or fails."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError(
            "ONNX export needs the onnx package: pip install 'supcon[export]' (onnx, "
            "onnxruntime, onnxscript), or use --format torchscript"
        ) from None
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        target = Path(tmp) / "model.onnx"
        common = {
            "input_names": [INPUT_NAME],
            "output_names": [OUTPUT_NAME],
            "opset_version": opset,
        }
        try:
            torch.onnx.export(
                module,
                (example,),
                str(target),
                dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                **common,
            )
            exporter = "torchscript"
        except Exception as exc:  # removed in a future torch, or an op it cannot translate
            print(f"supcon export: TorchScript-based ONNX export failed ({exc}); using dynamo")
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(
                module,
                (example,),
                str(target),
                dynamo=True,
                external_data=False,
                dynamic_shapes={"images": {0: batch}},
                **common,
            )
            exporter = "dynamo"
        return target.read_bytes(), exporter


def export_model(
    run: LoadedRun,
    out: str | Path,
    *,
    format: str | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export a loaded run's embedding model and write ``OUT`` and ``OUT.json``.

    Args:
        run: From :func:`supcon.runs.load_run`.
        out: Output file (``.onnx``; ``.pt`` / ``.ts`` for TorchScript).
        format: ``"onnx"`` or ``"torchscript"`` (default: from ``out``'s suffix).
        opset: ONNX opset version.

    Returns:
        ``out``.

    Raises:
        UserError: for an unknown format, a run without an image transform (digits), or a
            missing ONNX package.
    """
    from supcon.evaluation.embed import model_fingerprint

    out = Path(out)
    format = format or SUFFIXES.get(out.suffix.lower())
    if format not in EXPORT_FORMATS:
        raise UserError(
            f"unknown export format {format!r}; use --format onnx or --format torchscript "
            "(or an .onnx / .pt output name)"
        )
    if run.eval_transform is None:
        raise UserError(
            "this run was trained on the bundled digits, which have no image transform; "
            "export needs a run trained on image files"
        )
    model = run.model
    steps = describe_transform(run.eval_transform)
    from supcon.data.build import input_channels

    channels = input_channels(run.config.data)
    summary = transform_summary(steps, channels)
    device = next(iter(model.parameters())).device
    cpu_model = _Embed(model).to("cpu").eval()
    _, height, width = summary["input_size"]
    example = torch.randn(2, channels, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if format == "torchscript":
            blob, exporter, used_opset = _torchscript_bytes(cpu_model, example), "jit.trace", None
        else:
            blob, exporter = _onnx_bytes(cpu_model, example, opset)
            used_opset = opset
    atomic_write_bytes(out, blob)
    meta = {
        "format": FORMAT,
        "kind": format,
        "file_sha256": hashlib.sha256(blob).hexdigest(),
        "exporter": exporter,
        "opset": used_opset,
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "layout": "NCHW",
            "shape": ["batch", *summary["input_size"]],
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", model.embedding_dim],
            "l2_normalised": True,
        },
        "embedding_dim": int(model.embedding_dim),
        "embedding": getattr(model, "embedding", "head"),
        "transform": {**summary, "steps": steps},
        "class_names": list(run.class_names),
        "model": {
            "checkpoint": str(Path(run.checkpoint).resolve()),
            "fingerprint": model_fingerprint(model),
            "backbone": run.config.model.backbone,
        },
        "versions": {"supcon": supcon.__version__, "torch": torch.__version__},
    }
    atomic_write_json(sidecar_path(out), meta)
    model.to(device)
    return out


# --- loading an export -----------------------------------------------------------------------


class OnnxEmbedder(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` call that embedding code expects.

    Args:
        path: The ``.onnx`` file.
        device: ``cuda`` uses ONNX Runtime's CUDA provider when it has one (said when not).
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError(
                "running an ONNX export needs onnxruntime: pip install 'supcon[export]'"
            ) from None
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            else:
                print("supcon: onnxruntime has no CUDA provider here; the ONNX model runs on CPU")
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` float → ``(B, D)`` float32 embeddings (on the input's device)."""
        x = images.detach().to("cpu", torch.float32).numpy()
        (out,) = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})
        return torch.from_numpy(out).to(images.device)


@dataclass
class ExportedModel:
    """An exported model with what is needed to embed images the way its run did.

    Quacks like :class:`supcon.runs.LoadedRun` where the commands need it (``model``,
    ``eval_transform``, ``class_names``, ``checkpoint``); ``config`` is ``None``.

    Attributes:
        model: Callable module ``(B, C, H, W) → (B, D)``.
        eval_transform: The run's eval transform, rebuilt from the sidecar.
        class_names: Class names of the training data.
        checkpoint: The exported file.
        model_info: ``{"checkpoint", "fingerprint", "backbone"}`` of the source run.
        embedding_dim: ``D``.
        meta: The whole sidecar.
    """

    model: nn.Module
    eval_transform: Transform
    class_names: tuple[str, ...]
    checkpoint: Path
    model_info: dict[str, str]
    embedding_dim: int
    meta: dict[str, Any] = field(default_factory=dict)
    config: None = None


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` is (or claims to be) a model written by ``supcon export``:
    an ``.onnx`` file, a file with an export sidecar, or a TorchScript archive."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() == ".onnx":
        return True
    side = sidecar_path(path)
    if side.is_file():
        try:
            return json.loads(side.read_text(encoding="utf-8")).get("format") == FORMAT
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return False
    return _is_torchscript_archive(path)


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar of an exported file, checked against the file.

    Raises:
        UserError: when the sidecar is missing, unreadable, or describes another file.
    """
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        raise UserError(
            f"{str(path)!r} has no sidecar {side.name!r} (supcon export writes it beside the "
            "model: it holds the eval transform and the weight fingerprint); copy it along, "
            "or export again"
        )
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{str(side)!r} is not valid JSON; export the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{str(side)!r} is not a supcon export sidecar ({FORMAT})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != meta.get("file_sha256"):
        raise UserError(
            f"{str(side)!r} belongs to another model than {str(path)!r} (file hash differs); "
            "use the .json written with this file, or export again"
        )
    return meta


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> ExportedModel:
    """Load a model written by :func:`export_model` (ONNX through onnxruntime, TorchScript
    through ``torch.jit.load``).

    Raises:
        UserError: for a missing or mismatched sidecar, or a missing runtime.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"exported model {str(path)!r} not found")
    meta = read_sidecar(path)
    if meta["kind"] == "onnx":
        model: nn.Module = OnnxEmbedder(path, device)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated"
            model = torch.jit.load(str(path), map_location=torch.device(device)).eval()
    return ExportedModel(
        model=model,
        eval_transform=transform_from_steps(meta["transform"]["steps"]),
        class_names=tuple(meta.get("class_names", ())),
        checkpoint=path,
        model_info=dict(meta["model"]),
        embedding_dim=int(meta["embedding_dim"]),
        meta=meta,
    )
