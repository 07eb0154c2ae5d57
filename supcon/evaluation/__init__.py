"""Evaluation: embedding extraction, exact and FAISS search, retrieval and few-shot metrics.

Names are imported on first use (PEP 562), so ``from supcon.evaluation import
retrieval_metrics`` loads neither timm, faiss, scikit-learn nor matplotlib until a function
that needs one runs. Plots live in :mod:`supcon.evaluation.plots` (it loads matplotlib).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supcon._lazy import lazy_exports

#: Public name → the module that defines it.
_EXPORTS = {
    "clustering_scores": "supcon.evaluation.clustering",
    "kmeans_assign": "supcon.evaluation.clustering",
    "EmbeddingSet": "supcon.evaluation.embed",
    "extract_embeddings": "supcon.evaluation.embed",
    "load_embeddings": "supcon.evaluation.embed",
    "model_fingerprint": "supcon.evaluation.embed",
    "save_embeddings": "supcon.evaluation.embed",
    "episode_accuracies": "supcon.evaluation.fewshot",
    "fewshot_accuracy": "supcon.evaluation.fewshot",
    "IndexParams": "supcon.evaluation.index",
    "SearchIndex": "supcon.evaluation.index",
    "build_index": "supcon.evaluation.index",
    "linear_probe": "supcon.evaluation.linear_probe",
    "retrieval_metrics": "supcon.evaluation.metrics",
    "evaluate_split": "supcon.evaluation.protocol",
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


__getattr__, __dir__ = lazy_exports("supcon.evaluation", _EXPORTS, globals())
