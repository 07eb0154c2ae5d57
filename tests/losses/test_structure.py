"""PairStructure's block masks and counts against masks built by explicit loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon.losses.structure import PairStructure, _SortedPairs
from tests.reference import pair_masks_from_indices, pair_masks_from_labels

LABELS = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 4, 1])


def _pairs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randint(0, 10, (25,), generator=gen) for _ in range(4))  # type: ignore[return-value]


def _structures(offset: int) -> dict[str, tuple[PairStructure, np.ndarray, np.ndarray]]:
    """name -> (structure over anchors offset..offset+5 of 10 rows, reference pos, keep)."""
    rows = slice(offset, offset + 5)
    pos, keep = pair_masks_from_labels(LABELS.numpy())
    hot = torch.nn.functional.one_hot(LABELS % 3, 3).bool()
    hot[2] = False
    hot_pos, hot_keep = pair_masks_from_labels(hot.numpy())
    a1, p, a2, n = _pairs()
    pair_pos, pair_keep = pair_masks_from_indices(
        (a1.numpy(), p.numpy(), a2.numpy(), n.numpy()), 10
    )
    mask = torch.rand(5, 10, generator=torch.Generator().manual_seed(1)) < 0.4
    not_self = ~np.eye(10, dtype=bool)[rows]
    return {
        "keys": (PairStructure(5, 10, keys=LABELS, anchor_offset=offset), pos[rows], keep[rows]),
        "multi_hot": (
            PairStructure(5, 10, multi_hot=hot, anchor_offset=offset),
            hot_pos[rows],
            hot_keep[rows],
        ),
        "mask": (
            PairStructure(5, 10, dense_positive=mask, anchor_offset=offset),
            mask.numpy() & not_self,
            not_self,
        ),
        "pairs": (
            PairStructure(
                5, 10, pos_pairs=(a1 - offset, p), neg_pairs=(a2 - offset, n), anchor_offset=offset
            ),
            pair_pos[rows] & not_self,
            (pair_keep[rows] | pair_pos[rows]) & not_self,
        ),
    }


@pytest.mark.parametrize("offset", [0, 3])
@pytest.mark.parametrize("kind", ["keys", "multi_hot", "mask", "pairs"])
def test_blocks_and_positive_counts_match_loop_masks(kind: str, offset: int) -> None:
    structure, pos, keep = _structures(offset)[kind]
    for start, stop in ((0, 2), (2, 5), (0, 5)):
        positive, in_denominator = structure.block(start, stop)
        assert positive.tolist() == pos[start:stop].tolist()
        assert in_denominator.tolist() == keep[start:stop].tolist()
    expected = pos.sum(axis=1).tolist()
    assert structure.positives_per_anchor(block_rows=2).tolist() == expected
    assert structure.positives_per_anchor().tolist() == expected
    assert (
        structure.not_self(1, 4).tolist()
        == (~np.eye(10, dtype=bool))[offset + 1 : offset + 4].tolist()
    )


def test_no_anchors_have_no_positive_counts() -> None:
    counts = PairStructure(0, 4, keys=torch.arange(4)).positives_per_anchor()
    assert counts.dtype == torch.long and counts.shape == (0,)


def test_sorted_pairs_keep_this_ranks_anchors_and_count_them() -> None:
    rows = torch.tensor([3, -1, 0, 5, 3, 4, 6, 0, 3])
    cols = torch.arange(9)
    pairs = _SortedPairs.build(rows, cols, num_anchors=5)
    expected = np.bincount(rows[(rows >= 0) & (rows < 5)].numpy(), minlength=5)
    assert pairs.counts().tolist() == expected.tolist()
    assert pairs.rows.tolist() == sorted(r for r in rows.tolist() if 0 <= r < 5)


def test_mined_pairs_outside_the_anchor_range_are_not_counted() -> None:
    """Under a gather, pairs of other ranks' anchors fall outside [0, num_anchors): dropped."""
    pos = (torch.tensor([-2, 0, 1, 3, 4]), torch.tensor([0, 1, 2, 3, 4]))
    neg = (torch.tensor([-1, 2, 3, 5, 6]), torch.tensor([1, 2, 3, 4, 5]))
    assert PairStructure(4, 8, pos_pairs=pos, neg_pairs=neg).num_mined_pairs() == 5


def test_key_and_pair_only_helpers_say_what_they_need() -> None:
    structure = PairStructure(2, 2, dense_positive=torch.eye(2, dtype=torch.bool))
    with pytest.raises(ValueError) as info:
        structure.compact_keys()
    assert str(info.value) == "compact_keys needs a key-based structure (labels or sample ids)."
    with pytest.raises(ValueError) as info:
        structure.num_mined_pairs()
    assert str(info.value) == "num_mined_pairs needs a structure built from indices_tuple."
