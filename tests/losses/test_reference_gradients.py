"""Every loss path against the float64 loop references on value AND gradient.

The batches are built so that some anchors have no positive (singleton labels / ids, empty mask
rows, multi-hot rows without a class) and, for mined pairs, some anchors have only negatives or
only their single positive. Those anchors are excluded from the mean, so they must contribute
nothing to the gradient either: a path that still adds their softmax term (e.g. a per-anchor
coefficient that ignores whether the anchor is counted) fails here.

The reference gradient is a central difference of :func:`tests.reference.reference_supcon` /
:func:`tests.reference.reference_hcl` (explicit float64 loops sharing no code with supcon).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pytest
import torch

from supcon import CrossBatchMemory
from supcon.losses import supcon_loss_with_stats
from tests.reference import (
    flatten_views,
    numerical_gradient,
    pair_masks_from_indices,
    pair_masks_from_labels,
    reference_hcl,
    reference_supcon,
)

TAU = 0.2


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# Classes 2, 3, 5 and 8 are singletons: those anchors have no positive.
LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 3, 4, 4, 5, 6, 6, 7, 7, 8, 1])


@dataclass
class Case:
    """A batch, the loss arguments, and the reference over its flattened candidates.

    ``embeddings`` is ``(N, D)`` or ``(B, V, D)``; ``refs`` are extra candidates appended after
    the flattened batch. ``pos`` / ``keep`` are over all candidates; the first ``num_anchors``
    rows are anchors.
    """

    embeddings: torch.Tensor
    kwargs: dict
    pos: np.ndarray
    keep: np.ndarray
    num_anchors: int
    refs: torch.Tensor | None = None
    refs_get_grad: bool = False
    beta: float = 0.0
    paths: dict = field(default_factory=lambda: {False: "dense", True: "tiled"})
    min_without_positive: int = 1

    def candidates(self) -> np.ndarray:
        emb = self.embeddings.numpy()
        flat = flatten_views(emb) if emb.ndim == 3 else emb
        if self.refs is not None:
            flat = np.concatenate([flat, self.refs.numpy()])
        return flat

    def reference_loss(self, x: np.ndarray) -> float:
        if self.beta:
            return reference_hcl(x, self.pos, self.keep, TAU, self.beta, self.num_anchors)
        return reference_supcon(x, self.pos, self.keep, TAU, self.num_anchors)[0]


def _label_masks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return pair_masks_from_labels(labels)


def _labels() -> Case:
    pos, keep = _label_masks(LABELS.numpy())
    return Case(_rand(16, 4, seed=1), {"labels": LABELS}, pos, keep, 16)


def _lonely_first_block() -> Case:
    # The first tile (block_size=3) holds only anchors without positives: it is skipped, and
    # the tiles after it must still be computed.
    labels = torch.tensor([10, 11, 12, 0, 0, 1, 1, 2, 2, 2, 13, 3, 3])
    pos, keep = _label_masks(labels.numpy())
    return Case(_rand(13, 4, seed=18), {"labels": labels}, pos, keep, 13, min_without_positive=4)


def _views_labels() -> Case:
    # Views always give a positive; the singleton classes still shape every denominator.
    labels = LABELS[:7]
    pos, keep = _label_masks(np.tile(labels.numpy(), 2))
    return Case(_rand(7, 2, 4, seed=2), {"labels": labels}, pos, keep, 14, min_without_positive=0)


def _views_contrast_one() -> Case:
    labels = LABELS[:7]
    pos, keep = _label_masks(np.tile(labels.numpy(), 3))
    kwargs = {"labels": labels, "contrast_mode": "one"}
    return Case(_rand(7, 3, 4, seed=3), kwargs, pos, keep, 7, min_without_positive=0)


def _sample_ids() -> Case:
    ids = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 6, 7, 7, 8, 9, 9])
    pos, keep = _label_masks(ids.numpy())
    return Case(_rand(16, 4, seed=4), {"sample_ids": ids}, pos, keep, 16)


def _multi_hot() -> Case:
    gen = torch.Generator().manual_seed(5)
    multi = torch.rand(16, 3, generator=gen) < 0.3
    multi[:3] = False  # three rows share no class with anyone
    pos, keep = _label_masks(multi.numpy())
    return Case(_rand(16, 4, seed=5), {"labels": multi}, pos, keep, 16)


def _mask() -> Case:
    gen = torch.Generator().manual_seed(6)
    mask = torch.rand(16, 16, generator=gen) < 0.25
    mask[:4] = False  # four anchors without positives
    pos = mask.numpy() & ~np.eye(16, dtype=bool)
    return Case(_rand(16, 4, seed=6), {"mask": mask}, pos, ~np.eye(16, dtype=bool), 16)


def _refs_with_grad() -> Case:
    labels, ref_labels = LABELS[:10], torch.tensor([0, 1, 9, 9, 4, 10])
    refs = _rand(6, 4, seed=8)
    pos, keep = _label_masks(np.concatenate([labels.numpy(), ref_labels.numpy()]))
    kwargs = {"labels": labels, "ref_labels": ref_labels}
    return Case(_rand(10, 4, seed=7), kwargs, pos[:10], keep[:10], 10, refs, True)


def _memory() -> Case:
    memory = CrossBatchMemory(size=8, dim=4, dtype=torch.float64)
    memory.enqueue(_rand(5, 4, seed=9), torch.tensor([0, 1, 11, 12, 4]))
    memory.enqueue(_rand(5, 4, seed=10), torch.tensor([6, 13, 0, 14, 15]))  # overwrites two
    labels = LABELS[:10]
    refs = memory.as_refs()
    pos, keep = _label_masks(np.concatenate([labels.numpy(), refs["ref_labels"].numpy()]))
    kwargs = {"labels": labels, "ref_labels": refs["ref_labels"]}
    return Case(_rand(10, 4, seed=11), kwargs, pos[:10], keep[:10], 10, refs["ref_embeddings"])


def _hcl() -> Case:
    pos, keep = _label_masks(LABELS.numpy())
    kwargs = {"labels": LABELS, "hcl_beta": 0.7}
    return Case(_rand(16, 4, seed=12), kwargs, pos, keep, 16, beta=0.7)


def _hcl_beta_one() -> Case:
    pos, keep = _label_masks(LABELS.numpy())
    kwargs = {"labels": LABELS, "hcl_beta": 1.0}
    return Case(_rand(16, 4, seed=19), kwargs, pos, keep, 16, beta=1.0)


def _hcl_mined_pairs() -> Case:
    indices = _pairs(16, seed=20, num_pos=20, num_neg=40)
    pos, keep = pair_masks_from_indices(tuple(t.numpy() for t in indices), 16)
    kwargs = {"indices_tuple": indices, "hcl_beta": 0.6}
    return Case(_rand(16, 4, seed=20), kwargs, pos, keep, 16, beta=0.6, min_without_positive=2)


def _pairs(n: int, seed: int, num_pos: int, num_neg: int) -> tuple[torch.Tensor, ...]:
    """Random mined pairs over ``n`` rows plus hand-made anchors of every kind.

    Row 0: only negatives. Row 1: a single positive and nothing else (trivial). Row 2: no pair.
    Row 3: one positive and one negative.
    """
    gen = torch.Generator().manual_seed(seed)
    a1 = torch.randint(4, n, (num_pos,), generator=gen)
    p = torch.randint(0, n, (num_pos,), generator=gen)
    a2 = torch.randint(4, n, (num_neg,), generator=gen)
    neg = torch.randint(0, n, (num_neg,), generator=gen)
    a1 = torch.cat([a1, torch.tensor([1, 3])])
    p = torch.cat([p, torch.tensor([5, 6])])
    a2 = torch.cat([a2, torch.tensor([0, 0, 3])])
    neg = torch.cat([neg, torch.tensor([7, 8, 9])])
    return a1, p, a2, neg


def _mined_pairs() -> Case:
    indices = _pairs(16, seed=13, num_pos=20, num_neg=40)
    pos, keep = pair_masks_from_indices(tuple(t.numpy() for t in indices), 16)
    kwargs = {"indices_tuple": indices}
    return Case(_rand(16, 4, seed=13), kwargs, pos, keep, 16, min_without_positive=2)


def _mined_triplets() -> Case:
    gen = torch.Generator().manual_seed(14)
    a = torch.randint(3, 16, (25,), generator=gen)
    p = torch.randint(0, 16, (25,), generator=gen)
    n = torch.randint(0, 16, (25,), generator=gen)
    indices = (a, p, n)
    pos, keep = pair_masks_from_indices(tuple(t.numpy() for t in indices), 16)
    kwargs = {"indices_tuple": indices}
    return Case(_rand(16, 4, seed=14), kwargs, pos, keep, 16, min_without_positive=3)


def _sparse_pairs() -> Case:
    # Few pairs over 40 rows (< 1/16 of the matrix): tiled=None takes the sparse path.
    indices = _pairs(40, seed=15, num_pos=30, num_neg=55)
    pos, keep = pair_masks_from_indices(tuple(t.numpy() for t in indices), 40)
    kwargs = {"indices_tuple": indices}
    paths = {None: "sparse", False: "dense", True: "tiled"}
    return Case(_rand(40, 3, seed=15), kwargs, pos, keep, 40, paths=paths, min_without_positive=2)


CASES: dict[str, Callable[[], Case]] = {
    "labels": _labels,
    "lonely-first-block": _lonely_first_block,
    "views+labels": _views_labels,
    "views-contrast-one": _views_contrast_one,
    "sample_ids": _sample_ids,
    "multi_hot": _multi_hot,
    "mask": _mask,
    "refs-with-grad": _refs_with_grad,
    "memory": _memory,
    "hcl": _hcl,
    "hcl-beta-1": _hcl_beta_one,
    "hcl-mined-pairs": _hcl_mined_pairs,
    "mined-pairs": _mined_pairs,
    "mined-triplets": _mined_triplets,
    "sparse-pairs": _sparse_pairs,
}


@cache
def _reference(name: str) -> tuple[Case, float, int, np.ndarray]:
    """The case, its reference loss, anchors without positives, and gradient (all candidates)."""
    case = CASES[name]()
    x = case.candidates()
    value = case.reference_loss(x)
    without = reference_supcon(x, case.pos, case.keep, TAU, case.num_anchors)[1]
    return case, value, without, numerical_gradient(case.reference_loss, x)


def _pair_counts(case: Case) -> tuple[int, int]:
    """(negative pairs, trivial anchors) by counting the masks anchor by anchor."""
    negatives, trivial = 0, 0
    for i in range(case.num_anchors):
        others = np.arange(case.pos.shape[1]) != i
        num_pos = int((case.pos[i] & others).sum())
        den = int(((case.keep[i] | case.pos[i]) & others).sum())
        negatives += den - num_pos
        trivial += int(num_pos > 0 and den <= 1)
    return negatives, trivial


def _to_batch_layout(flat: np.ndarray, embeddings: torch.Tensor) -> np.ndarray:
    """Rows of the flattened (view-major) batch back to ``embeddings``' shape."""
    if embeddings.ndim == 2:
        return flat
    b, v, d = embeddings.shape
    return flat.reshape(v, b, d).transpose(1, 0, 2)


def test_a_two_row_batch_of_one_class_has_no_negative_pair_on_any_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each anchor's denominator is its single positive: trivial, no negatives, loss 0."""
    import supcon.losses.functional as functional

    monkeypatch.setattr(functional, "_warned_no_positives", True)  # already warned: silent
    for tiled in (False, True):
        emb = _rand(2, 4, seed=17).requires_grad_()
        loss, stats = supcon_loss_with_stats(emb, torch.tensor([3, 3]), tiled=tiled)
        loss.backward()
        assert (stats.num_negative_pairs, stats.num_trivial_anchors) == (0, 2), tiled
        assert stats.num_anchors_in_mean == 0 and loss.item() == 0.0
        assert torch.all(emb.grad == 0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_path_matches_the_reference_value_and_gradient(name: str) -> None:
    case, expected, without, grad = _reference(name)
    assert without >= case.min_without_positive, "the batch must hold anchors without positives"
    num_rows = case.embeddings.shape[0] * (
        case.embeddings.shape[1] if case.embeddings.ndim == 3 else 1
    )
    expected_grad = _to_batch_layout(grad[:num_rows], case.embeddings)
    for tiled, path in case.paths.items():
        emb = case.embeddings.clone().requires_grad_()
        refs = None
        if case.refs is not None:
            refs = case.refs.clone().requires_grad_(case.refs_get_grad)
        loss, stats = supcon_loss_with_stats(
            emb,
            ref_embeddings=refs,
            temperature=TAU,
            tiled=tiled,
            block_size=3,
            **case.kwargs,
        )
        loss.backward()
        assert stats.path == path
        assert stats.num_anchors_without_positives == without, path
        assert (stats.num_negative_pairs, stats.num_trivial_anchors) == _pair_counts(case), path
        assert loss.item() == pytest.approx(expected, rel=1e-10, abs=1e-12), path
        np.testing.assert_allclose(emb.grad.numpy(), expected_grad, atol=2e-7, err_msg=path)
        if case.refs_get_grad:
            np.testing.assert_allclose(refs.grad.numpy(), grad[num_rows:], atol=2e-7, err_msg=path)


def test_the_numerical_gradient_is_accurate() -> None:
    """The finite-difference helper on a function with a known gradient (sum of cubes)."""
    x = _rand(3, 4, seed=16).numpy()
    got = numerical_gradient(lambda v: float(np.sum(v**3)), x)
    np.testing.assert_allclose(got, 3 * x**2, atol=1e-8)


@pytest.mark.parametrize("num_pos", [0, 1])
def test_sparse_path_with_no_or_one_positive_pair(num_pos: int, monkeypatch) -> None:
    """Edge cases of the sparse pair table: no positive pair at all, or exactly one."""
    import supcon.losses.functional as functional

    monkeypatch.setattr(functional, "_warned_no_positives", True)  # already warned: silent
    gen = torch.Generator().manual_seed(21)
    a2, neg = torch.randint(0, 40, (50,), generator=gen), torch.randint(0, 40, (50,), generator=gen)
    a1, p = torch.tensor([3, 0][:num_pos]), torch.tensor([7, 0][:num_pos])
    a2, neg = torch.cat([a2, torch.tensor([3])]), torch.cat([neg, torch.tensor([9])])
    emb = _rand(40, 3, seed=21).requires_grad_()
    loss, stats = supcon_loss_with_stats(emb, indices_tuple=(a1, p, a2, neg), temperature=TAU)
    loss.backward()
    pos, keep = pair_masks_from_indices((a1.numpy(), p.numpy(), a2.numpy(), neg.numpy()), 40)
    expected, without = reference_supcon(emb.detach().numpy(), pos, keep, TAU)
    assert stats.path == "sparse"
    assert stats.num_anchors_without_positives == without == 40 - num_pos
    assert loss.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert (expected > 0) == (num_pos == 1)
    expected_grad = numerical_gradient(
        lambda x: reference_supcon(x, pos, keep, TAU)[0], emb.detach().numpy()
    )
    np.testing.assert_allclose(emb.grad.numpy(), expected_grad, atol=2e-7)


def test_double_backward_on_the_sparse_path_names_it() -> None:
    indices = _pairs(40, seed=15, num_pos=30, num_neg=55)
    emb = _rand(40, 3, seed=15).requires_grad_()
    loss, stats = supcon_loss_with_stats(emb, indices_tuple=indices)
    assert stats.path == "sparse"
    with pytest.raises(RuntimeError, match=r"the sparse loss is differentiable once; .*tiled="):
        torch.autograd.grad(loss, emb, create_graph=True)


def test_dense_anchor_losses_default_to_plain_supcon() -> None:
    """Called without ``beta``, the dense path is SupCon (no HCL reweighting)."""
    from supcon.losses.dense import dense_anchor_losses
    from supcon.losses.structure import PairStructure

    z = torch.nn.functional.normalize(_rand(16, 4, seed=22), dim=1)
    losses, counted, _ = dense_anchor_losses(z, PairStructure(16, 16, keys=LABELS), 1.0 / TAU)
    pos, keep = _label_masks(LABELS.numpy())
    expected, without = reference_supcon(z.numpy(), pos, keep, TAU)
    assert int((~counted).sum()) == without
    assert (losses.sum() / counted.sum()).item() == pytest.approx(expected, rel=1e-12)
