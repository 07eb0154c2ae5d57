"""Linear probe: known answers on separable synthetic data, errors, and ``supcon eval``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from supcon.evaluation import linear_probe
from tests.evaluation.helpers import ok, one_line_error
from tests.images import make_image_folder


def _clusters(rng: np.random.Generator, labels: np.ndarray, dim: int = 8) -> np.ndarray:
    """Tight clusters around the first ``C`` axes: linearly separable by construction."""
    centres = np.eye(dim)[labels] * 5.0
    return centres + rng.normal(0, 0.05, (len(labels), dim))


def test_separable_clusters_with_known_mislabels() -> None:
    rng = np.random.default_rng(0)
    train_labels = np.repeat(np.arange(4), 10)
    test_labels = np.repeat(np.arange(4), 5)
    test_points = _clusters(rng, test_labels)
    # 5 of the 20 test points are moved into the next class's cluster: they must be missed.
    moved = np.array([0, 3, 7, 12, 19])
    test_points[moved] = _clusters(rng, (test_labels[moved] + 1) % 4)
    result = linear_probe(_clusters(rng, train_labels), train_labels, test_points, test_labels)
    assert result["linear_probe_accuracy"] == pytest.approx(15 / 20)
    assert result["linear_probe_train_accuracy"] == 1.0
    assert result["linear_probe_classes"] == 4
    assert (result["linear_probe_num_train"], result["linear_probe_num_test"]) == (40, 20)


def test_class_disjoint_and_bad_shapes_are_refused() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 4)
    emb = _clusters(rng, labels)
    with pytest.raises(ValueError, match="needs shared classes, but 1 of 2 held-out classes"):
        linear_probe(emb, labels, emb[:2], np.array([2, 7]))
    with pytest.raises(ValueError, match="differ in dimension"):
        linear_probe(emb, labels, emb[:, :4], labels)
    with pytest.raises(ValueError, match="at least two classes"):
        linear_probe(emb, np.zeros(12, dtype=int), emb, np.zeros(12, dtype=int))


def test_eval_linear_probe_on_the_run(work: Path, run_cli) -> None:
    out = ok(
        run_cli("eval", "run", "--linear-probe", "--json", "probe.json", "--no-progress", cwd=work)
    )
    assert "linear_probe_accuracy" in out and "recall@1" in out
    metrics = json.loads((work / "probe.json").read_text())["metrics"]
    # The run's folder split holds out 25 % of each of the 4 classes of 12 images.
    assert (metrics["linear_probe_num_train"], metrics["linear_probe_num_test"]) == (36, 12)
    assert 0.0 <= metrics["linear_probe_accuracy"] <= 1.0
    one_line_error(
        run_cli("eval", "run", "--linear-probe", "--split", "all", cwd=work),
        "cannot be scored on --split all",
    )
    make_image_folder(work / "new_classes", classes=6, per_class=2)
    one_line_error(
        run_cli(
            "eval", "run", "--linear-probe", "--data", "new_classes", "--no-progress", cwd=work
        ),
        "needs shared classes, but 2 of 6 held-out classes",
    )
