"""Few-shot evaluation of frozen embeddings: N-way K-shot episodes scored by simple classifiers.

The protocol of the few-shot literature, on embeddings that are already computed:

1. An *episode* draws ``n_way`` classes, then ``k_shot`` support and ``n_query`` query items of
   each (distinct items, so a query is never in the support set). Episodes come from
   :class:`supcon.samplers.EpisodicSampler` with ``num_replicas=1``: episode ``i`` depends only
   on ``(labels, seed, i)`` (and ``k_shot + n_query``, through the classes that have that many
   items), so every classifier is scored on the same episodes, and, when every class is large
   enough, each k-shot setting draws the same classes in episode ``i``.
2. Each query is assigned to one of the episode's ``n_way`` classes by a classifier fitted on
   the support set only. Embeddings are L2-normalised first.

   * ``"prototype"``: the class whose prototype (mean of its normalised support embeddings) has
     the highest cosine similarity (prototypical networks, Snell et al. 2017).
   * ``"nn"``: the class of the support item with the highest cosine similarity.
   * ``"logistic"``: scikit-learn's ``LogisticRegression`` (default ``C=1``, L2, lbfgs) fitted
     on the normalised support embeddings (the linear-probe baseline of Tian et al. 2020,
     "Rethinking few-shot image classification"). One fit per episode: slower than the others.

   Ties go to the lowest class position in the episode (``argmax``).
3. An episode's accuracy is the fraction of its ``n_way * n_query`` queries classified
   correctly. The report gives the mean over episodes and the 95 % confidence interval
   half-width ``1.96 · std / √episodes`` (population std over episodes), as few-shot papers do.

``prototype`` and ``nn`` run a batch of episodes as one batched matrix product; ``prototype``
with ``k_shot=1`` equals ``nn``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from supcon import blocks
from supcon.devices import resolve_device
from supcon.evaluation.metrics import ArrayLike, embedding_rows
from supcon.evaluation.unit import as_numpy
from supcon.samplers import EpisodicSampler, as_label_array

#: A batch holds at most this many episodes (so a progress bar moves during slow classifiers).
MAX_BATCH_EPISODES = 100

#: ``classify(support, query) -> predicted class position``, where ``support`` is
#: ``(E, n_way, k_shot, D)`` and ``query`` ``(E, Q, D)``, both L2-normalised, and the result is
#: ``(E, Q)`` int64 positions in ``[0, n_way)``.
Classifier = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CLASSIFIERS: dict[str, Classifier] = {}


def register_classifier(name: str) -> Callable[[Classifier], Classifier]:
    """Decorator adding a support-set classifier to :data:`CLASSIFIERS` under ``name``."""

    def add(fn: Classifier) -> Classifier:
        CLASSIFIERS[name] = fn
        return fn

    return add


@register_classifier("prototype")
def prototype_classify(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Nearest class prototype by cosine similarity (Snell et al. 2017).

    Args:
        support: ``(E, n_way, k_shot, D)`` normalised support embeddings.
        query: ``(E, Q, D)`` normalised query embeddings.

    Returns:
        ``(E, Q)`` int64: the class position whose normalised mean support embedding is most
        similar to each query.
    """
    prototypes = F.normalize(support.mean(dim=2), dim=-1)  # (E, n_way, D)
    return torch.bmm(query, prototypes.transpose(1, 2)).argmax(dim=-1)


@register_classifier("nn")
def nearest_neighbour_classify(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Class of the most similar support item (1-nearest neighbour, cosine).

    Args:
        support: ``(E, n_way, k_shot, D)`` normalised support embeddings.
        query: ``(E, Q, D)`` normalised query embeddings.

    Returns:
        ``(E, Q)`` int64 class positions.
    """
    episodes, n_way, k_shot, dim = support.shape
    flat = support.reshape(episodes, n_way * k_shot, dim)
    return torch.bmm(query, flat.transpose(1, 2)).argmax(dim=-1) // k_shot


@register_classifier("logistic")
def logistic_classify(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Multinomial logistic regression fitted on each episode's support set (Tian et al. 2020).

    scikit-learn's ``LogisticRegression(max_iter=1000)`` (L2, ``C=1``, lbfgs), one fit per
    episode, on the CPU in float64.

    Args:
        support: ``(E, n_way, k_shot, D)`` normalised support embeddings.
        query: ``(E, Q, D)`` normalised query embeddings.

    Returns:
        ``(E, Q)`` int64 class positions.
    """
    from sklearn.linear_model import LogisticRegression

    episodes, n_way, k_shot, dim = support.shape
    x = support.detach().cpu().double().reshape(episodes, n_way * k_shot, dim).numpy()
    q = query.detach().cpu().double().numpy()
    y = np.repeat(np.arange(n_way), k_shot)
    out = np.empty(q.shape[:2], dtype=np.int64)
    for e in range(episodes):
        out[e] = LogisticRegression(max_iter=1000).fit(x[e], y).predict(q[e])
    return torch.from_numpy(out).to(query.device)


def _check_int(value: object, name: str, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}; {hint}")
    return int(value)


def _check_classifiers(classifiers: str | Sequence[str]) -> list[str]:
    names = [classifiers] if isinstance(classifiers, str) else list(classifiers)
    if not names:
        raise ValueError(f"classifiers is empty; pass one or more of {sorted(CLASSIFIERS)}.")
    unknown = [n for n in names if n not in CLASSIFIERS]
    if unknown:
        raise ValueError(f"unknown classifier(s) {unknown}; choose from {sorted(CLASSIFIERS)}.")
    return list(dict.fromkeys(names))


def _check_settings(
    n_way: object,
    k_shots: Sequence[object],
    n_query: object,
    episodes: object,
    seed: object,
    classifiers: str | Sequence[str],
) -> tuple[int, list[int], int, int, int, list[str]]:
    """Checked counts, de-duplicated ``k_shots`` and classifier names."""
    n_way = _check_int(n_way, "n_way", 2, "an episode needs at least 2 classes.")
    if not k_shots:
        raise ValueError("k_shots is empty; pass e.g. k_shots=(1, 5).")
    shots = [
        _check_int(k, "k_shot", 1, "each class needs at least 1 support item.") for k in k_shots
    ]
    n_query = _check_int(n_query, "n_query", 1, "each class needs at least 1 query item.")
    episodes = _check_int(episodes, "episodes", 1, "600 is the usual few-shot setting.")
    seed = _check_int(seed, "seed", 0, "use a non-negative int.")
    return (
        n_way,
        list(dict.fromkeys(shots)),
        n_query,
        episodes,
        seed,
        _check_classifiers(classifiers),
    )


def _check_episode_fits(labels: np.ndarray, n_way: int, k_shot: int, n_query: int) -> None:
    """Raise unless ``n_way`` classes have at least ``k_shot + n_query`` items each."""
    sizes = np.sort(np.unique(labels, return_counts=True)[1])[::-1]
    need = k_shot + n_query
    qualify = int((sizes >= need).sum())
    if qualify >= n_way:
        return
    fixes = []
    if qualify >= 2:
        fixes.append(f"n_way <= {qualify}")
    ways = min(n_way, len(sizes))  # the most ways there are classes for
    if ways >= 2:
        room = int(sizes[ways - 1])  # the ways-th largest class fits k_shot + n_query <= room
        at = "" if ways == n_way else f"n_way = {ways} with "
        if room > k_shot:
            fixes.append(f"{at}n_query <= {room - k_shot}")
        elif room >= 2:
            fixes.append(f"{at}k_shot + n_query <= {room}")
    raise ValueError(
        f"n_way={n_way} needs {n_way} classes with at least k_shot + n_query = {k_shot} + "
        f"{n_query} = {need} items each, but only {qualify} of {len(sizes)} classes have that "
        f"many; use {' or '.join(fixes) or 'more items per class or more classes'}."
    )


def _prepare(embeddings: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ``(N, D)`` float32 embeddings and ``(N,)`` int64 labels, checked."""
    emb = embedding_rows(embeddings, "embeddings")
    lab = as_numpy(labels)
    if lab.ndim != 1 or len(lab) != len(emb):
        raise ValueError(
            f"labels must be ({len(emb)},), one per embedding row, got shape {lab.shape}; "
            "pass the labels of exactly these embeddings."
        )
    return emb, as_label_array(lab)


def _episodes(
    labels: np.ndarray, n_way: int, k_shot: int, n_query: int, episodes: int, seed: int
) -> np.ndarray:
    """``(episodes, n_way * (k_shot + n_query))`` int64 indices: supports, then queries."""
    sampler = EpisodicSampler(
        labels, n_way, k_shot, n_query, episodes, num_replicas=1, rank=0, seed=seed
    )
    return np.array([sampler.episode(i) for i in range(episodes)], dtype=np.int64)


def _episode_accuracies(
    emb: torch.Tensor,
    indices: np.ndarray,
    n_way: int,
    k_shot: int,
    n_query: int,
    classifiers: Sequence[str],
    progress: bool,
) -> dict[str, np.ndarray]:
    """Per-classifier ``(episodes,)`` float64 accuracies on the episodes ``indices``."""
    episodes = len(indices)
    shots = n_way * k_shot
    dim = emb.shape[1]
    batch = max(1, min(MAX_BATCH_EPISODES, blocks.BATCH_ELEMENTS // (indices.shape[1] * dim)))
    truth = torch.arange(n_way, device=emb.device).repeat_interleave(n_query)  # (n_way*n_query,)
    correct = {name: np.empty(episodes, dtype=np.float64) for name in classifiers}
    bar = tqdm(total=episodes, desc=f"{k_shot}-shot episodes", disable=not progress, leave=False)
    for start in range(0, episodes, batch):
        idx = torch.from_numpy(indices[start : start + batch]).to(emb.device)
        support = emb[idx[:, :shots]].reshape(len(idx), n_way, k_shot, dim)
        query = emb[idx[:, shots:]]
        for name in classifiers:
            predicted = CLASSIFIERS[name](support, query)
            hits = (predicted == truth).double().mean(dim=1)
            correct[name][start : start + len(idx)] = hits.cpu().numpy()
        bar.update(len(idx))
    bar.close()
    return correct


def episode_accuracies(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    n_way: int = 5,
    k_shot: int = 1,
    n_query: int = 15,
    episodes: int = 600,
    classifiers: str | Sequence[str] = ("prototype", "nn"),
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Accuracy of each classifier on each of ``episodes`` N-way K-shot episodes.

    Use it for paired comparisons (two models or classifiers on the same episodes); see
    :func:`fewshot_accuracy` for the summary and the module docstring for the protocol.

    Args:
        embeddings: ``(N, D)`` embeddings (numpy or torch; normalised inside).
        labels: ``(N,)`` integer class ids.
        n_way: Classes per episode (``>= 2``).
        k_shot: Support items per class (``>= 1``).
        n_query: Query items per class (``>= 1``).
        episodes: Number of episodes (``>= 1``).
        classifiers: Names from :data:`CLASSIFIERS`.
        seed: Episodes depend only on ``(labels, seed)`` and the counts above.
        device: Where the products run (``None``: where ``embeddings`` is; ``"auto"``: CUDA
            when available).
        progress: Show a progress bar over batches of episodes.

    Returns:
        ``{classifier: (episodes,) float64}`` accuracy of every episode, in episode order.

    Raises:
        ValueError: on a bad count, NaN/inf embeddings, labels that do not match the
            embeddings, an unknown classifier, or fewer than ``n_way`` classes with
            ``k_shot + n_query`` items; the message says what to change.
    """
    target = resolve_device(device, embeddings)
    n_way, (k_shot,), n_query, episodes, seed, names = _check_settings(
        n_way, [k_shot], n_query, episodes, seed, classifiers
    )
    emb, lab = _prepare(embeddings, labels)
    _check_episode_fits(lab, n_way, k_shot, n_query)
    indices = _episodes(lab, n_way, k_shot, n_query, episodes, seed)
    return _episode_accuracies(
        torch.from_numpy(emb).to(target), indices, n_way, k_shot, n_query, names, progress
    )


def fewshot_accuracy(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    n_way: int = 5,
    k_shots: int | Sequence[int] = (1, 5),
    n_query: int = 15,
    episodes: int = 600,
    classifiers: str | Sequence[str] = ("prototype", "nn"),
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Mean N-way K-shot accuracy with its 95 % confidence interval, per classifier and K.

    The protocol (episodes, classifiers, interval) is in the module docstring. Every
    classifier is scored on the same episodes for a given ``k_shot``.

    Args:
        embeddings: ``(N, D)`` embeddings (numpy or torch; normalised inside).
        labels: ``(N,)`` integer class ids.
        n_way: Classes per episode (``>= 2``).
        k_shots: Support items per class: one int or several (one result row each).
        n_query: Query items per class (``>= 1``).
        episodes: Episodes per ``k_shot`` (``>= 1``; 600 is the usual setting).
        classifiers: Names from :data:`CLASSIFIERS`: ``"prototype"``, ``"nn"``,
            ``"logistic"``.
        seed: Episodes depend only on ``(labels, seed)`` and the counts above.
        device: Where the products run (``None``: where ``embeddings`` is; ``"auto"``: CUDA
            when available).
        progress: Show a progress bar over batches of episodes.

    Returns:
        A JSON-ready dict: ``n_way``, ``n_query``, ``episodes``, ``seed``, ``num_classes``,
        and ``results``, one row per ``(classifier, k_shot)`` (classifiers outer, ``k_shots``
        inner, in the order given): ``{"classifier", "k_shot", "accuracy", "ci95", "std",
        "classes"}``, where ``accuracy`` is the mean episode accuracy in ``[0, 1]``, ``ci95``
        ``1.96 · std / √episodes``, ``std`` the population std over episodes and ``classes``
        the number of classes with at least ``k_shot + n_query`` items that episodes draw from.

    Raises:
        ValueError: as :func:`episode_accuracies`, and for an empty ``k_shots``.

    Example:
        >>> report = fewshot_accuracy(emb, labels, n_way=5, k_shots=(1, 5), episodes=600)
        >>> [(r["classifier"], r["k_shot"], r["accuracy"], r["ci95"]) for r in report["results"]]
    """
    target = resolve_device(device, embeddings)
    shots = [k_shots] if isinstance(k_shots, (int, np.integer)) else list(k_shots)
    n_way, shots, n_query, episodes, seed, names = _check_settings(
        n_way, shots, n_query, episodes, seed, classifiers
    )
    emb, lab = _prepare(embeddings, labels)
    for k in shots:  # every setting is checked before any runs
        _check_episode_fits(lab, n_way, k, n_query)
    emb_t = torch.from_numpy(emb).to(target)
    sizes = np.unique(lab, return_counts=True)[1]
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for k in shots:
        indices = _episodes(lab, n_way, k, n_query, episodes, seed)
        accuracies = _episode_accuracies(emb_t, indices, n_way, k, n_query, names, progress)
        for name, acc in accuracies.items():
            std = float(acc.std())
            rows[name, k] = {
                "classifier": name,
                "k_shot": k,
                "accuracy": float(acc.mean()),
                "ci95": 1.96 * std / float(np.sqrt(len(acc))),
                "std": std,
                "classes": int((sizes >= k + n_query).sum()),
            }
    return {
        "n_way": n_way,
        "n_query": n_query,
        "episodes": int(episodes),
        "seed": int(seed),
        "num_classes": len(sizes),
        "results": [rows[name, k] for name in names for k in shots],
    }
