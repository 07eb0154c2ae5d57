"""Every refusal of the loss's input checks, word for word (what is wrong; what to do),
and the inputs next to each check that must still be accepted."""

from __future__ import annotations

import pytest
import torch

from supcon import supcon_loss
from supcon.losses import supcon_loss_with_stats
from tests.reference import pair_masks_from_labels, reference_supcon


def _emb(*shape: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


def nan_rows() -> torch.Tensor:
    """NaN / inf in rows 1 and 4 (two entries in row 4)."""
    e = _emb(6, 4)
    e[1, 2] = float("nan")
    e[4, 0] = float("inf")
    e[4, 3] = float("nan")
    return e


def nan_views() -> torch.Tensor:
    """Two NaNs in one row (sample 0, view 1) of a (B, V, D) batch."""
    e = _emb(3, 2, 4)
    e[0, 1, 2] = float("nan")
    e[0, 1, 3] = float("nan")
    return e


L = torch.arange(6) % 2
MH = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1]])
EYE = torch.eye(6, dtype=torch.bool)
PAIRS = (torch.tensor([0, 6]), torch.tensor([1, 2]), torch.tensor([0]), torch.tensor([3]))
NEGATIVE = (torch.tensor([0, -1]), torch.tensor([1, 2]), torch.tensor([0]), torch.tensor([3]))

CASES = [
    (
        "not a tensor",
        lambda: supcon_loss([[1.0, 2.0]], L[:1]),
        "embeddings must be a torch.Tensor, got list.",
    ),
    (
        "integer embeddings",
        lambda: supcon_loss(torch.arange(12).reshape(6, 2), L),
        "embeddings must be a floating-point tensor, got dtype torch.int64; pass the "
        "model's output embeddings, not indices.",
    ),
    (
        "empty",
        lambda: supcon_loss(_emb(0, 4), L[:0]),
        "embeddings is empty (shape (0, 4)); pass a non-empty batch.",
    ),
    (
        "zero dimension",
        lambda: supcon_loss(_emb(3, 0), L[:3]),
        "embeddings is empty (shape (3, 0)); pass a non-empty batch.",
    ),
    (
        "nan rows",
        lambda: supcon_loss(nan_rows(), L),
        "embeddings contains NaN or inf in 2 row(s); the model diverged or its input "
        "is corrupt. Lower the learning rate, enable gradient clipping, or check the "
        "data.",
    ),
    (
        "nan in one view row",
        lambda: supcon_loss(nan_views(), L[:3]),
        "embeddings contains NaN or inf in 1 row(s); the model diverged or its input "
        "is corrupt. Lower the learning rate, enable gradient clipping, or check the "
        "data.",
    ),
    (
        "non-integer float labels",
        lambda: supcon_loss(_emb(6, 4), torch.tensor([0.0, 1.5, 0.0, 1.0, 0.0, 1.0])),
        "labels must hold integer class ids, got non-integer floats; map your labels "
        "to ints first (e.g. with numpy.unique(..., return_inverse=True)).",
    ),
    (
        "complex labels",
        lambda: supcon_loss(_emb(6, 4), L.to(torch.complex64)),
        "labels must hold integer class ids, got dtype torch.complex64.",
    ),
    (
        "3-D labels",
        lambda: supcon_loss(_emb(6, 4), L.reshape(6, 1, 1)),
        "labels must be (N,) integer class ids or (N, C) multi-hot, got shape (6, 1, 1).",
    ),
    (
        "labels per row",
        lambda: supcon_loss(_emb(6, 4), L[:5]),
        "labels has 5 rows but embeddings (N=6) has 6; pass one label per row.",
    ),
    (
        "labels per sample",
        lambda: supcon_loss(_emb(3, 2, 4), L[:2]),
        "labels has 2 rows but embeddings (B=3) has 3; pass one label per sample.",
    ),
    (
        "multi-hot not 0/1",
        lambda: supcon_loss(_emb(6, 4), MH * 2),
        "labels is 2-D, so it must be multi-hot with 0/1 entries.",
    ),
    (
        "indices_tuple not a miner output",
        lambda: supcon_loss(_emb(6, 4), indices_tuple=(L, L)),
        "indices_tuple must be a PML miner output: (anchor, positive, negative) "
        "triplets or (a1, positive, a2, negative) pairs.",
    ),
    (
        "triplets of unequal lengths",
        lambda: supcon_loss(_emb(6, 4), indices_tuple=(L[:2], L[:2], L[:1])),
        "indices_tuple triplets (a, p, n) must have equal lengths.",
    ),
    (
        "pairs of unequal lengths",
        lambda: supcon_loss(_emb(6, 4), indices_tuple=(L[:2], L[:1], L[:2], L[:2])),
        "indices_tuple pairs must have len(a1) == len(p) and len(a2) == len(n).",
    ),
    (
        "index past the batch",
        lambda: supcon_loss(_emb(6, 4), indices_tuple=PAIRS),
        "indices_tuple holds index 6 outside the batch of 6 rows; mine on the same "
        "(flattened) batch.",
    ),
    (
        "negative index",
        lambda: supcon_loss(_emb(6, 4), indices_tuple=NEGATIVE),
        "indices_tuple holds index -1 outside the batch of 6 rows; mine on the same "
        "(flattened) batch.",
    ),
    (
        "ref labels without refs",
        lambda: supcon_loss(_emb(6, 4), L, ref_labels=L),
        "ref_labels was given without ref_embeddings.",
    ),
    (
        "integer refs",
        lambda: supcon_loss(
            _emb(6, 4), L, ref_embeddings=torch.ones(3, 4, dtype=torch.long), ref_labels=L[:3]
        ),
        "ref_embeddings must be a floating-point torch.Tensor (R, D).",
    ),
    (
        "refs without labels",
        lambda: supcon_loss(_emb(6, 4), L, ref_embeddings=_emb(3, 4)),
        "ref_embeddings needs ref_labels (one label per reference row).",
    ),
    (
        "refs with a mask",
        lambda: supcon_loss(_emb(6, 4), mask=EYE, ref_embeddings=_emb(3, 4), ref_labels=L[:3]),
        "ref_embeddings need label-defined positives: pass labels (or a (B, V, D) "
        "batch whose sample ids the ref_labels use), not mask.",
    ),
    (
        "refs with mined pairs",
        lambda: supcon_loss(
            _emb(6, 4),
            L,
            indices_tuple=(L[:2], L[2:4], L[:2], L[4:6]),
            ref_embeddings=_emb(3, 4),
            ref_labels=L[:3],
        ),
        "indices_tuple cannot be combined with ref_embeddings; mine within the batch,"
        " or pass the queue without a miner.",
    ),
    (
        "non-integer ref labels",
        lambda: supcon_loss(
            _emb(6, 4), L, ref_embeddings=_emb(3, 4), ref_labels=torch.tensor([0.5, 1.0, 0.0])
        ),
        "ref_labels must hold integer class ids, got non-integer floats; map your "
        "labels to ints first (e.g. with numpy.unique(..., return_inverse=True)).",
    ),
    (
        "multi-hot ref labels not 0/1",
        lambda: supcon_loss(
            _emb(6, 4),
            MH,
            ref_embeddings=_emb(2, 4),
            ref_labels=torch.tensor([[0.5, 0, 0], [1, 0, 0]]),
        ),
        "ref_labels is 2-D, so it must be multi-hot with 0/1 entries.",
    ),
    (
        "ref labels per row",
        lambda: supcon_loss(_emb(6, 4), L, ref_embeddings=_emb(3, 4), ref_labels=L[:2]),
        "ref_labels has 2 rows but ref_embeddings has 3; pass one label per row.",
    ),
    (
        "ref classes",
        lambda: supcon_loss(
            _emb(6, 4),
            MH,
            ref_embeddings=_emb(2, 4),
            ref_labels=torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0]]),
        ),
        "ref_labels has 4 classes but labels has 3.",
    ),
    (
        "labels and mask",
        lambda: supcon_loss(_emb(6, 4), L, mask=EYE),
        "pass only one of labels, sample_ids and mask to define positives, got ['labels', 'mask'].",
    ),
    (
        "sample_ids and mask",
        lambda: supcon_loss(_emb(6, 4), sample_ids=L, mask=EYE),
        "pass only one of labels, sample_ids and mask to define positives, got "
        "['sample_ids', 'mask'].",
    ),
    (
        "views and sample_ids",
        lambda: supcon_loss(_emb(3, 2, 4), sample_ids=L),
        "sample_ids are implied by (B, V, D) embeddings; drop sample_ids or pass (N, D).",
    ),
    (
        "one view, no labels",
        lambda: supcon_loss(_emb(3, 1, 4)),
        "embeddings has V=1 view and no labels, so no anchor has a positive; pass "
        "labels, or at least two augmented views per sample as (B, V, D).",
    ),
    (
        "rows, no labels",
        lambda: supcon_loss(_emb(6, 4)),
        "embeddings is (N, D) with no labels, sample_ids, mask or indices_tuple, so "
        "no anchor has a positive; pass labels, sample_ids grouping the views of each"
        " sample, or embeddings shaped (B, V, D).",
    ),
    (
        "contrast_mode one on rows",
        lambda: supcon_loss(_emb(6, 4), L, contrast_mode="one"),
        "contrast_mode='one' needs embeddings shaped (B, V, D).",
    ),
    (
        "non-integer sample_ids",
        lambda: supcon_loss(_emb(6, 4), sample_ids=torch.tensor([0.0, 0.5, 1.0, 1.0, 2.0, 2.0])),
        "sample_ids must hold integer class ids, got non-integer floats; map your labels "
        "to ints first (e.g. with numpy.unique(..., return_inverse=True)).",
    ),
    (
        "sample_ids as a column",
        lambda: supcon_loss(_emb(6, 4), sample_ids=L[:, None]),
        "sample_ids must be (N,) with N=6 (one id per embedding row), got shape (6, 1).",
    ),
    (
        "sample_ids too short",
        lambda: supcon_loss(_emb(6, 4), sample_ids=L[:5]),
        "sample_ids must be (N,) with N=6 (one id per embedding row), got shape (5,).",
    ),
    (
        "temperature not a number",
        lambda: supcon_loss(_emb(6, 4), L, temperature="warm"),
        "temperature must be a positive number, got 'warm'.",
    ),
    (
        "zero temperature",
        lambda: supcon_loss(_emb(6, 4), L, temperature=0.0),
        "temperature must be a finite number > 0, got 0.0; typical values are 0.05-0.5 "
        "(SimCLR uses 0.5, SupCon 0.1).",
    ),
    (
        "infinite base temperature",
        lambda: supcon_loss(_emb(6, 4), L, base_temperature=float("inf")),
        "base_temperature must be a finite number > 0, got inf; typical values are 0.05-0.5 "
        "(SimCLR uses 0.5, SupCon 0.1).",
    ),
]


@pytest.mark.parametrize(("case", "call", "message"), CASES, ids=[c[0] for c in CASES])
def test_refusals_in_full(case: str, call, message: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message, case


@pytest.mark.filterwarnings("ignore:supcon. no anchor")
@pytest.mark.parametrize("shape", [(1, 1), (1, 4)])
def test_a_one_row_batch_is_not_empty(shape: tuple[int, int]) -> None:
    loss, stats = supcon_loss_with_stats(_emb(*shape), torch.tensor([0]))
    assert loss.item() == 0.0 and stats.num_anchors_without_positives == 1


def test_whole_float_labels_are_class_ids() -> None:
    emb = _emb(6, 4)
    assert supcon_loss(emb, L.double()).item() == supcon_loss(emb, L).item()


def test_multi_hot_labels_with_multi_hot_references_against_the_reference() -> None:
    emb, refs = _emb(6, 4), _emb(2, 4) * 0.5 + 1.0
    ref_labels = torch.tensor([[0, 1, 0], [1, 0, 1]])
    loss = supcon_loss(emb, MH, ref_embeddings=refs, ref_labels=ref_labels, temperature=0.2)
    pos, keep = pair_masks_from_labels(torch.cat([MH, ref_labels]).numpy())
    cands = torch.cat([emb, refs]).numpy()
    expected, _ = reference_supcon(cands, pos[:6], keep[:6], 0.2, num_anchors=6)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_keys_are_shared_labels_only_when_labels_are_given() -> None:
    """Labels mean the same class on every rank; sample ids and views are renumbered per rank
    under a gather (supcon.losses.gather reads this flag)."""
    from supcon.losses.inputs import flatten_batch

    by_labels = flatten_batch(_emb(3, 2, 4), L[:3])
    assert by_labels.keys_are_labels and by_labels.keys.tolist() == [0, 1, 0, 0, 1, 0]
    by_ids = flatten_batch(_emb(6, 4), sample_ids=L)
    assert not by_ids.keys_are_labels and by_ids.keys.tolist() == L.tolist()
    by_views = flatten_batch(_emb(3, 2, 4))
    assert not by_views.keys_are_labels and by_views.keys.tolist() == [0, 1, 2, 0, 1, 2]
