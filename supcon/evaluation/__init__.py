"""Evaluation: embedding extraction and retrieval metrics."""

from supcon.evaluation.embed import embed_images
from supcon.evaluation.metrics import retrieval_metrics

__all__ = ["embed_images", "retrieval_metrics"]
