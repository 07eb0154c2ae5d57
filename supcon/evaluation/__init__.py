"""Evaluation: embedding extraction, exact and approximate search, retrieval metrics, plots."""

from supcon.evaluation.clustering import clustering_scores, kmeans_assign
from supcon.evaluation.embed import embed_dataset
from supcon.evaluation.metrics import retrieval_metrics

__all__ = ["clustering_scores", "embed_dataset", "kmeans_assign", "retrieval_metrics"]
