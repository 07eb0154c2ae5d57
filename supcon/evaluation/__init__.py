"""Evaluation: embedding extraction, exact and FAISS search, retrieval and few-shot metrics.

Plots live in :mod:`supcon.evaluation.plots` (imported on demand: it loads matplotlib).
"""

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
