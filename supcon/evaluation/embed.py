"""Embedding extraction (batched, AMP on GPU, progress bar, DDP-sharded) and embedding files.

An embedding file is ``NAME.npy`` (embeddings) with ``NAME.labels.npy`` and ``NAME.ids.npy``,
or one ``NAME.safetensors`` holding tensors ``embeddings``, ``labels`` and ``ids``; either way
``NAME.<ext>.json`` beside it records the dimension, the model (checkpoint path and
fingerprint), class names, and the image paths and query/gallery flags when known.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from supcon.distributed import all_gather_no_grad, get_rank, get_world_size
from supcon.eval_mode import eval_mode
from supcon.io import atomic_write_bytes, atomic_write_json, sidecar_path

FORMAT = "supcon-embeddings/1"
EXTENSIONS = (".npy", ".safetensors")


@torch.no_grad()
def extract_embeddings(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    amp: bool | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embed every item of a dataset whose items are ``(image, label, index)``.

    Under ``torch.distributed`` each rank embeds every ``world``-th item and the results are
    gathered, so every rank returns the whole dataset in order.

    Args:
        model: Maps ``(B, C, H, W)`` to ``(B, D)``.
        dataset: E.g. :class:`supcon.data.EvalDataset`.
        batch_size: Images per forward pass.
        device: Where the model runs.
        num_workers: DataLoader workers.
        amp: Autocast to float16 (``None``: on CUDA only). Embeddings come back as float32.
        progress: Show a tqdm bar (rank 0 only).

    Returns:
        ``(embeddings, labels, ids)``: ``(N, D)`` float32, ``(N,)`` int64 labels and ``(N,)``
        int64 item indices, in dataset order.
    """
    device = torch.device(device)
    use_amp = device.type == "cuda" if amp is None else amp
    rank, world = get_rank(), get_world_size()
    shard = Subset(dataset, range(rank, len(dataset), world)) if world > 1 else dataset
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    chunks, labels, ids = [], [], []
    with eval_mode(model):
        for images, batch_labels, batch_ids in tqdm(
            loader, desc="embed", disable=not progress or rank != 0, leave=False
        ):
            # amp=False leaves a caller's own autocast context (e.g. training's bf16) in force.
            precision = (
                torch.autocast(device.type, dtype=torch.float16)
                if use_amp
                else contextlib.nullcontext()
            )
            with precision:
                out = model(images.to(device, non_blocking=True))
            chunks.append(out.float().cpu())
            labels.append(torch.as_tensor(batch_labels, dtype=torch.int64))
            ids.append(torch.as_tensor(batch_ids, dtype=torch.int64))
    emb = torch.cat(chunks) if chunks else torch.empty(0, 0)
    lab = torch.cat(labels) if labels else torch.empty(0, dtype=torch.int64)
    idx = torch.cat(ids) if ids else torch.empty(0, dtype=torch.int64)
    if world > 1:
        emb, lab, idx = _gather_shards(emb, lab, idx, len(dataset), world, device)
    return emb.numpy(), lab.numpy(), idx.numpy()


def _gather_shards(
    emb: torch.Tensor,
    lab: torch.Tensor,
    idx: torch.Tensor,
    total: int,
    world: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All-gather equal-size (padded) shards and put rows back in dataset order."""
    per_rank = -(-total // world)
    dim = torch.tensor([emb.shape[1] if len(emb) else 0], device=device)
    dim = int(all_gather_no_grad(dim).max())
    pad = per_rank - len(emb)
    comm = device if device.type == "cuda" else torch.device("cpu")
    emb = torch.cat([emb.reshape(-1, dim), torch.zeros(pad, dim)]).to(comm)
    lab = torch.cat([lab, torch.zeros(pad, dtype=torch.int64)]).to(comm)
    idx = torch.cat([idx, torch.full((pad,), -1, dtype=torch.int64)]).to(comm)
    emb, lab, idx = (all_gather_no_grad(t).cpu() for t in (emb, lab, idx))
    keep = idx >= 0
    order = torch.argsort(idx[keep])
    return emb[keep][order], lab[keep][order], idx[keep][order]


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of a model's weights: equal fingerprints mean the same embeddings.

    Returns:
        16 hex digits of the SHA-256 of every state-dict entry (name, dtype, shape, bytes).
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class EmbeddingSet:
    """Embeddings with what is known about the items they came from.

    Attributes:
        embeddings: ``(N, D)`` float32.
        labels: ``(N,)`` int64 (``-1``: unlabeled).
        ids: ``(N,)`` int64 item ids (positions in the source split by default).
        paths: Image path of each item, when the images are files.
        class_names: Name of each label id.
        is_query: ``(N,)`` bool, or ``None``.
        is_gallery: ``(N,)`` bool, or ``None``.
        model: ``{"checkpoint": …, "fingerprint": …}`` of the model that made them, if known.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    paths: tuple[str, ...] | None = None
    class_names: tuple[str, ...] = ()
    is_query: np.ndarray | None = None
    is_gallery: np.ndarray | None = None
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.embeddings)
        if self.embeddings.ndim != 2:
            raise ValueError(f"embeddings must be (N, D), got shape {self.embeddings.shape}")
        for name in ("labels", "ids", "is_query", "is_gallery"):
            value = getattr(self, name)
            if value is not None and value.shape != (n,):
                raise ValueError(
                    f"{name} must be ({n},) to match the embeddings, got {value.shape}"
                )
        if self.paths is not None and len(self.paths) != n:
            raise ValueError(f"paths has {len(self.paths)} entries for {n} embeddings")

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def save_embeddings(path: str | Path, data: EmbeddingSet) -> Path:
    """Write an :class:`EmbeddingSet` (atomically) as ``.npy`` files or one ``.safetensors``.

    Args:
        path: ``NAME.npy`` or ``NAME.safetensors``.
        data: What to write.

    Returns:
        ``path``.

    Raises:
        ValueError: for another extension.
    """
    path = Path(path)
    arrays = {
        "embeddings": np.ascontiguousarray(data.embeddings, dtype=np.float32),
        "labels": np.ascontiguousarray(data.labels, dtype=np.int64),
        "ids": np.ascontiguousarray(data.ids, dtype=np.int64),
    }
    for name in ("is_query", "is_gallery"):
        flags = getattr(data, name)
        if flags is not None:
            arrays[name] = np.ascontiguousarray(flags, dtype=np.uint8)
    if path.suffix == ".safetensors":
        from safetensors.numpy import save

        atomic_write_bytes(path, save(arrays, metadata={"format": FORMAT}))
        files = {name: path.name for name in arrays}
    elif path.suffix == ".npy":
        files = {"embeddings": path.name}
        atomic_write_bytes(path, _npy_bytes(arrays.pop("embeddings")))
        for name, array in arrays.items():
            target = path.with_suffix(f".{name}.npy")
            atomic_write_bytes(target, _npy_bytes(array))
            files[name] = target.name
    else:
        raise ValueError(f"embeddings go to a .npy or .safetensors file, got {str(path)!r}")
    atomic_write_json(
        sidecar_path(path),
        {
            "format": FORMAT,
            "count": len(data.embeddings),
            "dim": data.dim,
            "files": files,
            "model": data.model,
            "class_names": list(data.class_names),
            "paths": None if data.paths is None else list(data.paths),
        },
    )
    return path


def load_embeddings(path: str | Path) -> EmbeddingSet:
    """Read what :func:`save_embeddings` wrote (a bare ``(N, D)`` ``.npy`` also works).

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: when it is not an embedding file or its parts disagree.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embedding file {str(path)!r} not found")
    meta: dict[str, Any] = {}
    if sidecar_path(path).is_file():
        try:
            meta = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{str(sidecar_path(path))!r} is not valid JSON") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{str(sidecar_path(path))!r} is not a supcon embedding description")
        wrong = [
            key
            for key, kind in (("files", dict), ("model", dict), ("class_names", list))
            if key in meta and not isinstance(meta[key], kind)
        ]
        if wrong or not isinstance(meta.get("paths") or [], list):
            raise ValueError(
                f"{str(sidecar_path(path))!r} has malformed key(s) {', '.join(wrong) or 'paths'}; "
                "write the embeddings again with supcon embed"
            )
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            arrays = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise ValueError(f"cannot read {str(path)!r} as safetensors: {exc}") from None
    elif path.suffix == ".npy":
        arrays = {"embeddings": _load_npy(path)}
        for name, file in meta.get("files", {}).items():
            if name != "embeddings":
                arrays[name] = _load_npy(path.with_name(file))
    else:
        raise ValueError(f"embeddings are read from .npy or .safetensors, got {str(path)!r}")
    if "embeddings" not in arrays:
        raise ValueError(f"{str(path)!r} holds no 'embeddings' tensor")
    emb = np.asarray(arrays["embeddings"], dtype=np.float32)
    n = len(emb)
    flags = {k: arrays[k].astype(bool) if k in arrays else None for k in ("is_query", "is_gallery")}
    paths = meta.get("paths")
    return EmbeddingSet(
        embeddings=emb,
        labels=arrays.get("labels", np.full(n, -1)).astype(np.int64),
        ids=arrays.get("ids", np.arange(n)).astype(np.int64),
        paths=None if paths is None else tuple(paths),
        class_names=tuple(meta.get("class_names", ())),
        model=dict(meta.get("model") or {}),
        **flags,
    )


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing (part of an embedding file)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"cannot read {str(path)!r} as .npy: {exc}") from None
