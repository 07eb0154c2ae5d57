"""FAISS search indexes over L2-normalised embeddings, saved with the metadata that makes them safe.

Scores are cosine similarities (inner products of unit vectors). Index types:

* ``flat``: exact (``IndexFlatIP``). The default; right for galleries up to ~1M on a GPU.
* ``ivf``: inverted lists (``IndexIVFFlat``): ``nlist`` k-means cells, ``nprobe`` visited.
* ``hnsw``: graph (``IndexHNSWFlat``, ``m`` links, ``ef_search`` beam); CPU only.
* ``ivfpq``: inverted lists of product-quantised codes (``IndexIVFPQ``, ``pq_m`` bytes per
  vector at 8 bits): the smallest, the least exact.

Every index maps rows to int64 ids (``IndexIDMap``). :meth:`SearchIndex.save` writes the FAISS
file and ``NAME.json`` beside it: dimension, metric, type and parameters, the model that made
the embeddings (checkpoint and weight fingerprint), the ids with their labels and paths, and the
SHA-256 of the FAISS file, so that a query from another model or a swapped file is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from supcon.evaluation.backend import faiss_gpu_or_say, say, say_once
from supcon.evaluation.unit import as_numpy, unit_rows
from supcon.io import atomic_write_bytes, atomic_write_json, sidecar_path

FORMAT = "supcon-index/1"
INDEX_TYPES = ("flat", "ivf", "hnsw", "ivfpq")


@dataclass(frozen=True)
class IndexParams:
    """How to build an index (fields not used by a type are ignored).

    Attributes:
        kind: ``"flat"``, ``"ivf"``, ``"hnsw"`` or ``"ivfpq"``.
        nlist: IVF cells (default ``≈ 4·√N``, at most ``N / 39``).
        nprobe: IVF cells visited per query (default ``min(nlist, 16)``).
        m: HNSW links per node.
        ef_construction: HNSW build beam.
        ef_search: HNSW search beam.
        pq_m: PQ sub-quantisers (default: the largest divisor of D that is ≤ D/4).
        pq_bits: Bits per sub-quantiser code.
        store_exact: ``ivfpq``: also keep the exact vectors (FAISS ``IndexRefineFlat``,
            ``4·D`` bytes more per vector) so that search can re-rank candidates exactly
            (``refine``); ``ivf`` and ``hnsw`` store exact vectors anyway.
    """

    kind: str = "flat"
    nlist: int | None = None
    nprobe: int | None = None
    m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    pq_m: int | None = None
    pq_bits: int = 8
    store_exact: bool = False

    def resolved(self, n: int, dim: int) -> IndexParams:
        """These parameters with defaults filled in for ``n`` vectors of dimension ``dim``."""
        if self.kind not in INDEX_TYPES:
            raise ValueError(
                f"index type must be one of {', '.join(INDEX_TYPES)}, got {self.kind!r}"
            )
        uses_ivf, uses_pq = self.kind in ("ivf", "ivfpq"), self.kind == "ivfpq"
        nlist = self.nlist or max(1, min(round(4 * math.sqrt(n)), n // 39))
        pq_m = self.pq_m or max(m for m in range(1, max(1, dim // 4) + 1) if dim % m == 0)
        out = dataclasses.replace(
            self,
            nlist=nlist if uses_ivf else None,
            nprobe=min(nlist, self.nprobe or 16) if uses_ivf else None,
            pq_m=pq_m if uses_pq else None,
        )
        if self.kind in ("ivf", "ivfpq") and n < nlist:
            raise ValueError(
                f"{self.kind} with nlist={nlist} needs at least {nlist} vectors, got {n}"
            )
        if self.kind == "ivfpq":
            if dim % pq_m:
                raise ValueError(f"pq_m={pq_m} must divide the dimension {dim}")
            if n < 2**self.pq_bits:
                raise ValueError(
                    f"ivfpq needs at least {2**self.pq_bits} vectors to train {self.pq_bits}-bit "
                    f"codes, got {n}; use --type flat or hnsw for small galleries"
                )
        return out

    def as_dict(self) -> dict[str, Any]:
        keys = {
            "flat": (),
            "ivf": ("nlist", "nprobe"),
            "hnsw": ("m", "ef_construction", "ef_search"),
            "ivfpq": ("nlist", "nprobe", "pq_m", "pq_bits"),
        }[self.kind]
        out = {"kind": self.kind, **{k: getattr(self, k) for k in keys}}
        if self.kind == "ivfpq" and self.store_exact:
            out["store_exact"] = True
        return out


def _make_index(params: IndexParams, dim: int) -> faiss.Index:
    ip = faiss.METRIC_INNER_PRODUCT
    if params.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if params.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.m, ip)
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
        return index
    quantizer = faiss.IndexFlatIP(dim)
    if params.kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, dim, params.nlist, ip)
    else:
        index = faiss.IndexIVFPQ(quantizer, dim, params.nlist, params.pq_m, params.pq_bits, ip)
        index.pq.cp.min_points_per_centroid = 1  # small galleries: no "too few points" warning
    index.cp.min_points_per_centroid = 1
    index.own_fields = True
    quantizer.this.disown()
    index.nprobe = params.nprobe
    if params.kind == "ivfpq" and params.store_exact:
        refine = faiss.IndexRefineFlat(index)  # exact copy beside the codes, for re-ranking
        refine.own_fields = True
        index.this.disown()
        return refine
    return index


def _set_search_params(index: faiss.Index, params: IndexParams) -> None:
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)
    if params.kind in ("ivf", "ivfpq"):
        faiss.extract_index_ivf(inner).nprobe = params.nprobe
    elif params.kind == "hnsw":
        inner.hnsw.efSearch = params.ef_search


class SearchIndex:
    """A FAISS index with ids, labels, paths and the model it belongs to.

    Build with :func:`build_index`, reload with :meth:`load`. Not thread-safe to mutate.

    Attributes:
        index: The FAISS index (``IndexIDMap``; on the GPU when it was loaded there).
        params: How it was built.
        dim: Embedding dimension.
        ids: ``(N,)`` int64 ids, in insertion order.
        labels: ``(N,)`` int64 labels (``-1``: unknown).
        paths: Image path per item, or ``None``.
        class_names: Name of each label id.
        model: ``{"checkpoint": …, "fingerprint": …}`` of the embedding model (may be empty).
    """

    def __init__(
        self,
        index: faiss.Index,
        params: IndexParams,
        *,
        ids: np.ndarray,
        labels: np.ndarray,
        paths: tuple[str, ...] | None = None,
        class_names: tuple[str, ...] = (),
        model: dict[str, Any] | None = None,
    ) -> None:
        self.index = index
        self.params = params
        self.dim = int(index.d)
        self.ids = ids
        self.labels = labels
        self.paths = paths
        self.class_names = class_names
        self.model = dict(model or {})
        self._order = np.argsort(ids, kind="stable")

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query: np.ndarray | torch.Tensor, k: int = 10, *, refine: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest items by cosine similarity.

        Args:
            query: ``(Nq, D)`` embeddings (L2-normalised here).
            k: Neighbours per query; more than the index holds is clipped (and said).
            refine: Approximate indexes: take a shortlist of ``max(refine, k)`` candidates
                and re-score them exactly from the stored vectors (``ivf``, ``hnsw``, and
                ``ivfpq`` built with ``store_exact``); scores are then exact cosines.

        Returns:
            ``(scores, ids)``, both ``(Nq, k)``: cosine similarities (float32, decreasing) and
            item ids (int64; ``-1`` when an approximate index found fewer than ``k``).

        Raises:
            ValueError: for a dimension other than the index's, ``k < 1``, or ``refine`` on an
                index that is already exact or stores no exact vectors.
        """
        if refine is not None:
            self.check_refine(refine)
        q = as_numpy(query)
        if q.ndim == 2 and q.shape[1] != self.dim:
            source = self.model.get("checkpoint") or "its embeddings"
            raise ValueError(
                f"query embeddings have dimension {q.shape[1]} but the index holds "
                f"{self.dim}-dimensional ones (made by {source}); embed with that model or "
                "rebuild the index"
            )
        q = unit_rows(q, "query")
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        if k > len(self):
            say(f"k={k} is larger than the {len(self)} items in the index; clipped to {len(self)}")
            k = len(self)
        if refine is not None:
            return self._refined_search(q, k, min(max(refine, k), len(self)))
        return self.index.search(q, k)

    def check_refine(self, refine: int) -> None:
        """Raise ``ValueError`` when ``refine`` cannot apply to this index (see :meth:`search`)."""
        if refine < 1:
            raise ValueError(f"refine must be ≥ 1, got {refine}")
        if self.params.kind == "flat":
            raise ValueError(
                "this is a flat index: its search is already exact, so there is nothing to "
                "refine; drop --refine"
            )
        if self.params.kind == "ivfpq" and not self.params.store_exact:
            raise ValueError(
                "this ivfpq index keeps only compressed codes, so candidates cannot be re-scored "
                "exactly; rebuild it with supcon index --type ivfpq --store-exact"
            )
        if not isinstance(self.index, faiss.IndexIDMap):
            raise ValueError("refine needs a CPU index; load it with device='cpu'")

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Stored vectors of index rows (positions in :attr:`ids`; ``-1`` gives zeros).

        Exact for ``flat``, ``ivf``, ``hnsw`` and ``ivfpq`` with ``store_exact``; the PQ
        reconstruction (approximate) for a plain ``ivfpq``. CPU indexes only.

        Returns:
            ``rows.shape + (D,)`` float32.
        """
        rows = np.asarray(rows, dtype=np.int64)
        inner = faiss.downcast_index(self.index.index)
        store = (
            faiss.downcast_index(inner.refine_index)
            if isinstance(inner, faiss.IndexRefine)
            else inner
        )
        needs_map = self.params.kind in ("ivf", "ivfpq") and not isinstance(store, faiss.IndexFlat)
        if needs_map and not getattr(self, "_direct_map", False):
            faiss.extract_index_ivf(store).make_direct_map()
            self._direct_map = True
        flat = store.reconstruct_batch(np.maximum(rows, 0).reshape(-1))
        flat[(rows < 0).reshape(-1)] = 0.0
        return flat.reshape(*rows.shape, self.dim)

    def _refined_search(
        self, q: np.ndarray, k: int, shortlist: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shortlist from the approximate index, re-scored with the exact vectors."""
        inner = faiss.downcast_index(self.index.index)
        refined = isinstance(inner, faiss.IndexRefine)
        approx = faiss.downcast_index(inner.base_index) if refined else inner
        _, rows = approx.search(q, shortlist)
        found = rows >= 0
        exact = np.einsum("qd,qkd->qk", q, self.vectors(rows))
        exact = np.where(found, exact, -np.inf).astype(np.float32)
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(exact, order, axis=1)
        rows = np.take_along_axis(rows, order, axis=1)
        ids = np.where(rows >= 0, self.ids[np.maximum(rows, 0)], -1)
        return np.where(rows >= 0, scores, -np.inf).astype(np.float32), ids.astype(np.int64)

    def configure(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change search-time settings (no rebuild): IVF cells probed, HNSW beam width.

        Raises:
            ValueError: for a setting this index type does not have, or a value < 1.
        """
        changes = {k: v for k, v in (("nprobe", nprobe), ("ef_search", ef_search)) if v is not None}
        for name, value in changes.items():
            if name not in self.params.as_dict():
                raise ValueError(f"{name} does not apply to a {self.params.kind} index")
            if value < 1:
                raise ValueError(f"{name} must be ≥ 1, got {value}")
        if "nprobe" in changes:
            changes["nprobe"] = min(changes["nprobe"], self.params.nlist or 1)
        self.params = dataclasses.replace(self.params, **changes)
        _set_search_params(self.index, self.params)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Positions of ``ids`` in :attr:`ids` (``-1`` for unknown ids)."""
        ids = np.asarray(ids, dtype=np.int64)
        sorted_ids = self.ids[self._order]
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
        found = sorted_ids[pos] == ids
        return np.where(found, self._order[pos], -1)

    def save(self, path: str | Path) -> Path:
        """Write the FAISS file and ``PATH.json`` beside it (both atomically)."""
        path = Path(path)
        index = self.index
        if (
            hasattr(faiss, "index_gpu_to_cpu")
            and "Gpu" in type(faiss.downcast_index(index.index)).__name__
        ):
            index = faiss.index_gpu_to_cpu(index)
        blob = faiss.serialize_index(index).tobytes()
        atomic_write_bytes(path, blob)
        atomic_write_json(
            sidecar_path(path),
            {
                "format": FORMAT,
                "faiss_sha256": hashlib.sha256(blob).hexdigest(),
                "dim": self.dim,
                "metric": "cosine",
                "count": len(self),
                "params": self.params.as_dict(),
                "model": self.model,
                "class_names": list(self.class_names),
                "ids": self.ids.tolist(),
                "labels": self.labels.tolist(),
                "paths": None if self.paths is None else list(self.paths),
            },
        )
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> SearchIndex:
        """Read an index written by :meth:`save`.

        Args:
            path: The FAISS file (its ``.json`` must be beside it).
            device: ``"cuda"`` puts flat and IVF indexes on the GPU when FAISS has one (said
                once when it cannot).

        Raises:
            FileNotFoundError: when either file is missing.
            ValueError: when the files are not a supcon index or do not belong together.
        """
        path = Path(path)
        meta_path = sidecar_path(path)
        for needed in (path, meta_path):
            if not needed.is_file():
                raise FileNotFoundError(
                    f"{str(needed)!r} not found; an index is the FAISS file plus its .json, "
                    "both written by supcon index"
                )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{str(meta_path)!r} is not valid JSON") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{str(meta_path)!r} does not describe a supcon index ({FORMAT})")
        _check_sidecar(meta, meta_path)
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta["faiss_sha256"]:
            raise ValueError(
                f"{str(path)!r} does not match its metadata {str(meta_path)!r} (one of them was "
                "replaced); rebuild the index with supcon index"
            )
        try:
            index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
            params = IndexParams(**meta["params"])
            _set_search_params(index, params)
        except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"{str(path)!r} cannot be read as a {meta['params'].get('kind')!r} FAISS index "
                f"({first[:200]}); the file is corrupt: rebuild it with supcon index"
            ) from None
        if index.d != meta["dim"] or index.ntotal != meta["count"]:
            raise ValueError(
                f"{str(path)!r} holds {index.ntotal}×{index.d}, metadata says otherwise"
            )
        if torch.device(device).type == "cuda":
            index = _to_gpu(index, params)
        paths = meta.get("paths")
        return cls(
            index,
            params,
            ids=np.asarray(meta["ids"], dtype=np.int64),
            labels=np.asarray(meta["labels"], dtype=np.int64),
            paths=None if paths is None else tuple(paths),
            class_names=tuple(meta.get("class_names", ())),
            model=meta["model"],
        )


#: Keys an index description must have, with their JSON types.
SIDECAR_KEYS = {
    "faiss_sha256": str,
    "dim": int,
    "count": int,
    "params": dict,
    "ids": list,
    "labels": list,
    "model": dict,
}


def _check_sidecar(meta: dict[str, Any], meta_path: Path) -> None:
    """Every key :meth:`SearchIndex.save` writes, of the right type and length."""
    where = f"{str(meta_path)!r}"
    fix = "rebuild the index with supcon index"
    missing = [key for key in SIDECAR_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{where} lacks key(s) {', '.join(missing)}; {fix}")
    wrong = [k for k, kind in SIDECAR_KEYS.items() if not isinstance(meta[k], kind)]
    if wrong:
        raise ValueError(f"{where} has key(s) of the wrong type: {', '.join(wrong)}; {fix}")
    count = meta["count"]
    paths = meta.get("paths")
    lengths = {"ids": len(meta["ids"]), "labels": len(meta["labels"])}
    if paths is not None:
        lengths["paths"] = len(paths) if isinstance(paths, list) else -1
    bad = [f"{k} has {n}" for k, n in lengths.items() if n != count]
    if bad:
        raise ValueError(f"{where} says count={count} but {', '.join(bad)}; {fix}")
    if not isinstance(meta.get("class_names", []), list):
        raise ValueError(f"{where} has class_names that is not a list; {fix}")


def _to_gpu(index: faiss.Index, params: IndexParams) -> faiss.Index:
    if not faiss_gpu_or_say(True):
        return index
    if params.store_exact:
        say_once("an ivfpq index with exact vectors (store_exact) searches on the CPU")
        return index
    if params.kind == "hnsw":
        say_once("FAISS has no GPU HNSW; the hnsw index searches on the CPU")
        return index
    resources = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(resources, 0, index)
    gpu.referenced_objects = [resources]  # keep the resources alive with the index
    return gpu


def build_index(
    embeddings: np.ndarray | torch.Tensor,
    *,
    ids: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    paths: tuple[str, ...] | None = None,
    class_names: tuple[str, ...] = (),
    model: dict[str, Any] | None = None,
    params: IndexParams | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> SearchIndex:
    """Build a cosine :class:`SearchIndex` over ``embeddings``.

    Args:
        embeddings: ``(N, D)`` gallery embeddings (L2-normalised here).
        ids: ``(N,)`` int64 ids (default ``0..N-1``); must be unique.
        labels: ``(N,)`` labels (default ``-1``).
        paths: Image path per item.
        class_names: Name of each label id.
        model: ``{"checkpoint": …, "fingerprint": …}`` of the embedding model.
        params: Index type and parameters (default: exact ``flat``).
        device: ``"cuda"`` builds and searches on the GPU when FAISS has one (said once when
            it cannot); HNSW always runs on the CPU.
        seed: Seed of IVF / PQ training.

    Returns:
        The index.

    Raises:
        ValueError: for bad shapes, non-finite rows, duplicate ids or impossible parameters.
    """
    x = unit_rows(embeddings, "embeddings")
    n, dim = x.shape
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    labels = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, np.int64)
    if ids.shape != (n,) or labels.shape != (n,):
        raise ValueError(f"ids and labels must be ({n},), got {ids.shape} and {labels.shape}")
    if len(np.unique(ids)) != n:
        raise ValueError("ids must be unique")
    if paths is not None and len(paths) != n:
        raise ValueError(f"paths has {len(paths)} entries for {n} embeddings")
    params = (params or IndexParams()).resolved(n, dim)
    index = faiss.IndexIDMap(_make_index(params, dim))
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = (
            x if n <= 256 * params.nlist else x[rng.choice(n, 256 * params.nlist, replace=False)]
        )
        inner = faiss.extract_index_ivf(index.index)
        inner.cp.seed = seed
        index.train(sample)
    index.add_with_ids(x, ids)
    if torch.device(device).type == "cuda":
        index = _to_gpu(index, params)
    return SearchIndex(
        index,
        params,
        ids=ids,
        labels=labels,
        paths=paths,
        class_names=class_names,
        model=model,
    )
