"""evaluate_split: embed then score, honouring query / gallery flags."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from supcon.data import EvalDataset, load_digits_splits
from supcon.evaluation import evaluate_split, extract_embeddings, retrieval_metrics


def test_evaluate_split_is_embed_then_retrieval_metrics() -> None:
    _, test = load_digits_splits(8, 0.25, seed=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8))
    emb, labels, _ = extract_embeddings(model, EvalDataset(test))
    assert evaluate_split(model, test, map_ks=(5,)) == retrieval_metrics(emb, labels, map_ks=(5,))

    flagged = dataclasses.replace(test, is_query=np.arange(len(test)) % 5 == 0)
    got = evaluate_split(model, flagged, ks=(1,))
    assert got == retrieval_metrics(emb, labels, ks=(1,), is_query=flagged.is_query)
    assert got["num_queries"] == int(flagged.is_query.sum())
