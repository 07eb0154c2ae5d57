"""Evaluation: embedding extraction, exact and FAISS search, retrieval and few-shot metrics.

Names are imported on first use (PEP 562), so ``from supcon.evaluation import
retrieval_metrics`` loads neither timm, faiss, scikit-learn nor matplotlib until a function
that needs one runs. Plots live in :mod:`supcon.evaluation.plots` (it loads matplotlib).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name → the module that defines it.
_EXPORTS = {
    "clustering_scores": "clustering",
    "kmeans_assign": "clustering",
    "EmbeddingSet": "embed",
    "extract_embeddings": "embed",
    "load_embeddings": "embed",
    "model_fingerprint": "embed",
    "save_embeddings": "embed",
    "episode_accuracies": "fewshot",
    "fewshot_accuracy": "fewshot",
    "IndexParams": "index",
    "SearchIndex": "index",
    "build_index": "index",
    "linear_probe": "linear_probe",
    "retrieval_metrics": "metrics",
    "evaluate_split": "protocol",
}

__all__ = [
    "EmbeddingSet",
    "IndexParams",
    "SearchIndex",
    "build_index",
    "clustering_scores",
    "episode_accuracies",
    "evaluate_split",
    "extract_embeddings",
    "fewshot_accuracy",
    "kmeans_assign",
    "linear_probe",
    "load_embeddings",
    "model_fingerprint",
    "retrieval_metrics",
    "save_embeddings",
]

if TYPE_CHECKING:
    from supcon.evaluation.clustering import clustering_scores, kmeans_assign
    from supcon.evaluation.embed import (
        EmbeddingSet,
        extract_embeddings,
        load_embeddings,
        model_fingerprint,
        save_embeddings,
    )
    from supcon.evaluation.fewshot import episode_accuracies, fewshot_accuracy
    from supcon.evaluation.index import IndexParams, SearchIndex, build_index
    from supcon.evaluation.linear_probe import linear_probe
    from supcon.evaluation.metrics import retrieval_metrics
    from supcon.evaluation.protocol import evaluate_split


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'supcon.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"supcon.evaluation.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
