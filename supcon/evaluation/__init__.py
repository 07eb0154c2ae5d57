"""Evaluation: embedding extraction and retrieval metrics."""

from supcon.evaluation.embed import embed_dataset
from supcon.evaluation.metrics import retrieval_metrics

__all__ = ["embed_dataset", "retrieval_metrics"]
