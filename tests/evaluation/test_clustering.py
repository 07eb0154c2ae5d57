"""NMI / AMI from FAISS k-means, checked on clusters whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from supcon import retrieval_metrics
from supcon.evaluation import clustering_scores, kmeans_assign
from tests.evaluation.reference import clustered, reference_nmi_ami


def test_well_separated_clusters_are_recovered_exactly() -> None:
    emb, labels = clustered(400, 16, 5, 0.01, seed=0)
    assign = kmeans_assign(emb, 5, seed=0)
    # Same partition up to renaming: each cluster holds exactly one label and vice versa.
    pairs = {(a, b) for a, b in zip(assign, labels, strict=True)}
    assert len(pairs) == 5 == len(set(assign))
    scores = clustering_scores(emb, labels)
    assert scores["nmi"] == pytest.approx(1.0) and scores["ami"] == pytest.approx(1.0)


def test_scores_are_nmi_and_ami_of_the_kmeans_assignment() -> None:
    """Against NMI / AMI written out from the contingency table (not scikit-learn's calls)."""
    emb, labels = clustered(300, 8, 6, 2.0, seed=1)
    assign = kmeans_assign(emb, 6, seed=3)
    scores = clustering_scores(emb, labels, seed=3)
    nmi, ami = reference_nmi_ami(labels, assign)
    assert scores["nmi"] == pytest.approx(nmi, rel=1e-9)
    assert scores["ami"] == pytest.approx(ami, rel=1e-9)
    assert 0.0 < scores["ami"] < scores["nmi"] < 1.0


def test_reference_nmi_ami_on_hand_counted_partitions() -> None:
    """Identical partitions: 1 and 1; independent ones (each cluster half of each class): 0."""
    assert reference_nmi_ami([0, 0, 1, 1], [5, 5, 7, 7]) == pytest.approx((1.0, 1.0))
    nmi, _ = reference_nmi_ami([0, 0, 1, 1], [0, 1, 0, 1])
    assert nmi == pytest.approx(0.0, abs=1e-12)


def test_random_embeddings_score_near_zero_ami() -> None:
    rng = np.random.default_rng(2)
    scores = clustering_scores(rng.normal(size=(500, 8)), rng.integers(0, 5, 500))
    assert abs(scores["ami"]) < 0.05


def test_retrieval_metrics_can_add_nmi_and_ami() -> None:
    emb, labels = clustered(200, 8, 4, 0.05, seed=4)
    m = retrieval_metrics(emb, labels, nmi=True)
    assert m["nmi"] == pytest.approx(1.0) and m["ami"] == pytest.approx(1.0)


def test_bad_cluster_count() -> None:
    with pytest.raises(ValueError, match="num_clusters"):
        kmeans_assign(np.ones((3, 2)), 4)
