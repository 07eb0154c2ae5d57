"""Few-shot evaluation against a slow float64 reference, and ``supcon fewshot`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from supcon import blocks
from supcon.evaluation import episode_accuracies, fewshot_accuracy, save_embeddings
from supcon.evaluation.embed import EmbeddingSet
from supcon.samplers import EpisodicSampler
from tests.evaluation.helpers import ok, one_line_error
from tests.evaluation.reference import clustered


def softmax_regression_predict(x, y, queries, c=1.0):
    """Multinomial logistic regression written out: minimise
    ``C · Σ_i CE(softmax(W x_i + b), y_i) + ½‖W‖²`` (bias unpenalised) with scipy's BFGS on
    the hand-derived gradient, then predict the arg-max class. Independent of scikit-learn.
    """
    from scipy.optimize import minimize

    classes = np.unique(y)
    d = x.shape[1]
    k = len(classes)
    onehot = (y[:, None] == classes[None, :]).astype(np.float64)

    def objective(theta):
        w, b = theta[: k * d].reshape(k, d), theta[k * d :]
        logits = x @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        value = -c * float((onehot * log_p).sum()) + 0.5 * float((w * w).sum())
        residual = c * (np.exp(log_p) - onehot)  # (n, k)
        grad_w = residual.T @ x + w
        return value, np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

    theta = minimize(objective, np.zeros(k * d + k), jac=True, method="BFGS", tol=1e-12).x
    w, b = theta[: k * d].reshape(k, d), theta[k * d :]
    logits = queries @ w.T + b
    top2 = np.sort(logits, axis=1)[:, -2:]
    # (prediction, top-2 logit gap): a gap below ~1e-3 is within scikit-learn's default
    # tol=1e-4 stopping error, so either class may come out there.
    return classes[np.argmax(logits, axis=1)], top2[:, 1] - top2[:, 0]


def reference_accuracies(emb, labels, n_way, k_shot, n_query, episodes, seed, classifier):
    """Per-episode accuracy with explicit loops in float64, scored against the true labels."""
    sampler = EpisodicSampler(
        labels, n_way, k_shot, n_query, episodes, num_replicas=1, rank=0, seed=seed
    )
    x = emb.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    out, near_ties = [], []
    for i in range(episodes):
        idx = sampler.episode(i)
        support, query = idx[: n_way * k_shot], idx[n_way * k_shot :]
        classes = [labels[support[c * k_shot]] for c in range(n_way)]
        members = {c: [j for j in support if labels[j] == c] for c in classes}
        assert all(len(m) == k_shot for m in members.values())
        if classifier == "logistic":
            guesses, gaps = softmax_regression_predict(x[support], labels[support], x[query])
            near_ties.append(int((gaps < 1e-3).sum()))
        correct = 0
        for j in query:
            if classifier == "prototype":
                scores = []
                for c in classes:
                    proto = sum(x[m] for m in members[c]) / k_shot
                    scores.append(float(x[j] @ proto) / float(np.linalg.norm(proto)))
                guess = classes[int(np.argmax(scores))]
            elif classifier == "nn":
                best, guess = -np.inf, None
                for m in support:
                    if float(x[j] @ x[m]) > best:
                        best, guess = float(x[j] @ x[m]), labels[m]
            else:
                guess = guesses[list(query).index(j)]
            correct += int(guess == labels[j])
        out.append(correct / len(query))
    if classifier == "logistic":
        return np.array(out), np.array(near_ties)
    return np.array(out)


@pytest.fixture(scope="module")
def blobs():
    """Overlapping clusters: accuracies well inside (0, 1), so mistakes get compared too."""
    return clustered(n=600, d=16, classes=12, noise=1.3, seed=3)


@pytest.mark.parametrize("classifier", ["prototype", "nn"])
@pytest.mark.parametrize("k_shot", [1, 3])
def test_every_episode_matches_the_float64_reference(blobs, classifier: str, k_shot: int) -> None:
    emb, labels = blobs
    got = episode_accuracies(
        emb, labels, n_way=5, k_shot=k_shot, n_query=6, episodes=40, classifiers=classifier
    )[classifier]
    expected = reference_accuracies(emb, labels, 5, k_shot, 6, 40, 0, classifier)
    assert 0.3 < expected.mean() < 0.95
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_logistic_matches_a_fit_per_episode(blobs) -> None:
    emb, labels = blobs
    got = episode_accuracies(
        emb, labels, n_way=4, k_shot=2, n_query=5, episodes=12, classifiers="logistic"
    )["logistic"]
    expected, near_ties = reference_accuracies(emb, labels, 4, 2, 5, 12, 0, "logistic")
    # Equal except where a query sits on a near-tie of the exact solution (scikit-learn stops
    # at tol=1e-4): there one query per tie may flip.
    assert near_ties.sum() <= 2
    np.testing.assert_array_less(np.abs(got - expected) * 20, near_ties + 1e-9)
    assert 0.5 < expected.mean() < 0.95


def test_summary_is_mean_and_ci_of_the_episodes(blobs) -> None:
    emb, labels = blobs
    report = fewshot_accuracy(emb, labels, n_way=5, k_shots=(1, 3), n_query=6, episodes=30, seed=7)
    assert {k: report[k] for k in ("n_way", "n_query", "episodes", "seed", "num_classes")} == {
        "n_way": 5,
        "n_query": 6,
        "episodes": 30,
        "seed": 7,
        "num_classes": 12,
    }
    assert [(r["classifier"], r["k_shot"]) for r in report["results"]] == [
        ("prototype", 1),
        ("prototype", 3),
        ("nn", 1),
        ("nn", 3),
    ]
    for row in report["results"]:
        acc = reference_accuracies(emb, labels, 5, row["k_shot"], 6, 30, 7, row["classifier"])
        assert row["accuracy"] == pytest.approx(acc.mean(), abs=1e-12)
        assert row["ci95"] == pytest.approx(1.96 * acc.std() / np.sqrt(30), abs=1e-12)
        assert row["classes"] == 12
    # One shot: the prototype is the support item itself.
    assert report["results"][0]["accuracy"] == report["results"][2]["accuracy"]


def test_deterministic_per_seed_and_across_inputs_and_batches(blobs, monkeypatch) -> None:
    emb, labels = blobs
    kwargs = {"n_way": 5, "k_shot": 2, "n_query": 4, "episodes": 50}
    first = episode_accuracies(emb, labels, seed=1, **kwargs)
    again = episode_accuracies(torch.from_numpy(emb), torch.from_numpy(labels), seed=1, **kwargs)
    other = episode_accuracies(emb, labels, seed=2, **kwargs)
    monkeypatch.setattr(blocks, "BATCH_ELEMENTS", 3 * 30 * 16)  # 3 episodes a batch
    batched = episode_accuracies(emb, labels, seed=1, **kwargs)
    for name in ("prototype", "nn"):
        np.testing.assert_array_equal(first[name], again[name])
        np.testing.assert_array_equal(first[name], batched[name])
        assert not np.array_equal(first[name], other[name])


def test_perfect_separation_scores_one() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 10)
    emb = np.eye(8)[labels] + 0.01 * rng.normal(size=(80, 8))
    report = fewshot_accuracy(
        emb,
        labels,
        n_way=5,
        k_shots=(1, 5),
        n_query=5,
        episodes=20,
        classifiers=["prototype", "nn", "logistic"],
    )
    for row in report["results"]:
        assert row["accuracy"] == 1.0 and row["ci95"] == 0.0, row


def test_random_embeddings_score_chance() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(20), 30)
    emb = rng.normal(size=(600, 32))
    report = fewshot_accuracy(emb, labels, n_way=5, k_shots=(1, 5), n_query=10, episodes=300)
    for row in report["results"]:
        assert abs(row["accuracy"] - 0.2) < max(4 * row["ci95"], 0.02), row


def test_small_classes_are_left_out_with_a_warning() -> None:
    labels = np.array([0] * 10 + [1] * 10 + [2] * 10 + [3] * 3)
    emb = np.random.default_rng(0).normal(size=(33, 4))
    with pytest.warns(UserWarning, match="1 of 4 classes have fewer than"):
        report = fewshot_accuracy(emb, labels, n_way=3, k_shots=1, n_query=4, episodes=5)
    assert report["results"][0]["classes"] == 3 and report["num_classes"] == 4


EMB = np.random.default_rng(0).normal(size=(40, 4))
LABELS = np.repeat(np.arange(4), 10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_way": 5}, r"n_way=5 needs 5 classes .* 1 \+ 5 = 6 items .* only 4 of 4 classes"),
        (
            {"n_way": 4, "k_shots": 5, "n_query": 6},
            r"only 0 of 4 classes .*; use n_query <= 5\.",
        ),
        ({"k_shots": 0}, "k_shot must be an int >= 1, got 0"),
        ({"k_shots": ()}, "k_shots is empty"),
        ({"n_query": 0}, "n_query must be an int >= 1, got 0"),
        ({"episodes": -3}, "episodes must be an int >= 1, got -3"),
        ({"n_way": 1}, "n_way must be an int >= 2"),
        (
            {"classifiers": ["prototype", "svm"]},
            r"unknown classifier\(s\) \['svm'\]; choose from \['logistic', 'nn', 'prototype'\]",
        ),
        (
            {"labels": LABELS[:-1]},
            r"labels must be \(40,\), one per embedding row, got shape \(39,\)",
        ),
        (
            {"embeddings": np.where(np.arange(40)[:, None] == 7, np.nan, EMB)},
            r"1 row\(s\) with NaN or inf \(rows 7\)",
        ),
        ({"embeddings": EMB[:, 0]}, r"must be a non-empty \(N, D\) array"),
    ],
)
def test_bad_input_says_what_to_change(kwargs: dict, match: str) -> None:
    emb = kwargs.pop("embeddings", EMB)
    labels = kwargs.pop("labels", LABELS)
    settings = {"n_way": 3, "k_shots": 1, "n_query": 5, "episodes": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        fewshot_accuracy(emb, labels, **settings)


# --- supcon fewshot ------------------------------------------------------------------------


def test_fewshot_command_on_a_run(work: Path, run_cli) -> None:
    args = ["--n-way", "3", "--k-shot", "1", "3", "--n-query", "4", "--episodes", "20"]
    out = ok(
        run_cli(
            "fewshot",
            "run",
            "--split",
            "all",
            *args,
            "--json",
            "fs.json",
            "--no-progress",
            cwd=work,
        )
    )
    assert "3-way" in out and "1-shot" in out and "3-shot" in out and "prototype" in out
    report = json.loads((work / "fs.json").read_text())
    assert report["num_items"] == 48 and report["model"]["fingerprint"]
    fs = report["fewshot"]
    assert (fs["n_way"], fs["n_query"], fs["episodes"], fs["num_classes"]) == (3, 4, 20, 4)
    assert {(r["classifier"], r["k_shot"]) for r in fs["results"]} == {
        ("prototype", 1),
        ("prototype", 3),
        ("nn", 1),
        ("nn", 3),
    }
    for row in fs["results"]:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["ci95"] >= 0.0


def test_fewshot_command_on_an_embeddings_file_equals_the_python_call(work: Path, run_cli) -> None:
    emb, labels = clustered(n=200, d=8, classes=6, noise=1.0, seed=0)
    save_embeddings(work / "fs_emb.npy", EmbeddingSet(emb, labels.astype(np.int64), np.arange(200)))
    args = ["--n-way", "4", "--k-shot", "2", "--n-query", "5", "--episodes", "30", "--seed", "3"]
    ok(
        run_cli(
            "fewshot",
            "fs_emb.npy",
            *args,
            "--classifier",
            "nn",
            "logistic",
            "--json",
            "e.json",
            cwd=work,
        )
    )
    report = json.loads((work / "e.json").read_text())
    expected = fewshot_accuracy(
        emb,
        labels,
        n_way=4,
        k_shots=2,
        n_query=5,
        episodes=30,
        seed=3,
        classifiers=["nn", "logistic"],
    )
    assert report["fewshot"] == expected  # JSON floats round-trip exactly
    assert report["data"] == "fs_emb.npy" and report["num_items"] == 200


def test_fewshot_command_errors_are_one_line(work: Path, run_cli) -> None:
    np.save(
        work / "unlabelled.npy", np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    )
    one_line_error(run_cli("fewshot", "unlabelled.npy", cwd=work), "has no labels")
    one_line_error(
        run_cli("fewshot", "run", "--n-way", "9", "--episodes", "5", "--no-progress", cwd=work),
        "n_way=9 needs 9 classes",
    )
    one_line_error(run_cli("fewshot", "missing.npy", cwd=work), "not found")
