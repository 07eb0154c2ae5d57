"""Hard-negative mining for SupCon, and one entry point that builds any miner by name.

PML's miners (``BatchHardMiner``, ``MultiSimilarityMiner``, ``TripletMarginMiner``, ...) plug
into :class:`supcon.SupConLoss` unchanged through ``indices_tuple``. What they lack for SupCon is
a miner that keeps *every* positive of an anchor and only its ``k`` hardest negatives, so the
SupCon denominator holds the positives plus the ``k`` negatives most similar to the anchor:
:class:`TopKNegativeMiner`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pytorch_metric_learning import miners as pml_miners
from torch import Tensor, nn

from supcon import blocks
from supcon.arguments import constructor_arguments, reject_arguments
from supcon.distributed import (
    all_gather_variable_no_grad,
    gather_sizes,
    get_rank,
    is_distributed,
)
from supcon.losses.rows import view_major

PairTuple = tuple[Tensor, Tensor, Tensor, Tensor]


def flatten_views(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten a multi-view batch the way the loss does, for miners that take ``(N, D)``.

    Args:
        embeddings: ``(B, V, D)``: V augmented views of B samples.
        labels: ``(B,)`` class ids.

    Returns:
        ``(V * B, D)`` embeddings in view-major order (row ``v * B + b`` is view ``v`` of sample
        ``b``, the row order of :func:`supcon.supcon_loss`) and the ``(V * B,)`` repeated labels.
        Indices mined on these rows can be passed to the loss together with the ``(B, V, D)``
        batch.

    Raises:
        ValueError: if the shapes do not match.
    """
    if embeddings.dim() != 3:
        raise ValueError(
            f"flatten_views needs (B, V, D) embeddings, got shape {tuple(embeddings.shape)}."
        )
    num_samples, num_views, _ = embeddings.shape
    labels = torch.as_tensor(labels, device=embeddings.device)
    if labels.shape != (num_samples,):
        raise ValueError(
            f"labels must be (B,) = ({num_samples},) for (B, V, D) embeddings, got shape "
            f"{tuple(labels.shape)}."
        )
    flat = view_major(embeddings)
    return flat, labels.repeat(num_views)


class TopKNegativeMiner(nn.Module):
    """Every positive of each anchor and its ``k`` hardest negatives, as PML pairs.

    Called like a PML miner, ``miner(embeddings, labels)`` returns ``(a1, p, a2, n)``:

    * ``(a1, p)``: all positive pairs (same label, not the anchor itself);
    * ``(a2, n)``: for each anchor, its ``k`` most similar (cosine) negatives; with
      ``semi_hard=True`` only negatives *less* similar than the anchor's hardest (least
      similar) positive qualify, and the ``k`` most similar of those are kept.

    Fed to :class:`supcon.SupConLoss` as ``indices_tuple``, each anchor's denominator then holds
    its positives and only those negatives. An anchor with fewer than ``k`` qualifying negatives
    keeps all it has (possibly none, in semi-hard mode); an anchor with no positive gets no pairs
    at all (the loss would exclude it anyway).

    Output layout (all int64, on the embeddings' device): ``a1`` and ``a2`` are sorted by
    anchor; ``p`` is ascending within an anchor and ``n`` goes from hardest to easiest.
    ``len(a2) <= N * k`` and ``len(a1)`` is the number of positive pairs. Mining runs under
    ``torch.no_grad`` in blocks of anchor rows, so memory stays ``O(block * M)`` for ``M``
    candidates (``block_rows`` defaults to about ``2**22`` similarities per block on CPU and
    ``2**25`` on an accelerator).

    Multi-view ``(B, V, D)`` input with ``(B,)`` labels is flattened view-major (row
    ``v * B + b``), exactly as the loss flattens it, so the indices refer to the loss's rows.

    Distributed: with ``gather_distributed=True`` inside an initialised process group of more
    than one rank, the miner all-gathers embeddings and labels (no gradient; ranks may hold
    different batch sizes), mines **this rank's anchors** against the gathered batch, and returns
    indices into the global flattened batch: the rank-major concatenation of every rank's
    (flattened) rows. Only pairs whose anchor is local are returned; the union over ranks is
    what single-process mining of the concatenated batch returns. Without a process group it
    mines locally.

    Args:
        k: Negatives kept per anchor (``>= 1``).
        semi_hard: Keep only negatives less similar than the anchor's hardest positive.
        gather_distributed: Mine over the batch gathered from all ranks (see above).
        block_rows: Anchor rows per block; ``None`` picks a block of about ``2**22``
            similarities on CPU (``2**25`` on an accelerator).

    Attributes:
        num_pos_pairs: Positive pairs returned by the last call (PML's miner statistic).
        num_neg_pairs: Negative pairs returned by the last call.

    Example:
        >>> miner = TopKNegativeMiner(k=32)
        >>> pairs = miner(embeddings, labels)                  # (a1, p, a2, n)
        >>> loss = SupConLoss()(embeddings, labels, indices_tuple=pairs)
    """

    def __init__(
        self,
        k: int,
        semi_hard: bool = False,
        *,
        gather_distributed: bool = False,
        block_rows: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ValueError(
                f"k must be a positive int (negatives kept per anchor), got {k!r}; typical "
                "values are 8-64, or use no miner to keep every negative."
            )
        if block_rows is not None and (
            isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows <= 0
        ):
            raise ValueError(f"block_rows must be a positive int or None, got {block_rows!r}.")
        self.k = k
        self.semi_hard = bool(semi_hard)
        self.gather_distributed = bool(gather_distributed)
        self.block_rows = block_rows
        self.num_pos_pairs = 0
        self.num_neg_pairs = 0

    @torch.no_grad()
    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor | None,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> PairTuple:
        """Mine pairs.

        Args:
            embeddings: ``(N, D)`` anchors, or ``(B, V, D)`` views (flattened view-major).
            labels: ``(N,)`` (or ``(B,)``) integer class ids.
            ref_emb: Optional ``(M, D)`` candidates (PML's convention: anchors come from
                ``embeddings``, positives and negatives from ``ref_emb``; no row is excluded as
                "self"). Default: the batch itself.
            ref_labels: ``(M,)`` labels of ``ref_emb``.

        Returns:
            ``(a1, p, a2, n)`` int64 tensors; ``a*`` index anchors, ``p``/``n`` index
            candidates (global indices when gathering across ranks).

        Raises:
            ValueError: on missing or malformed labels, non-finite embeddings, or a batch with
                a single class (nothing to mine).
        """
        anchors, anchor_labels = _check_inputs(embeddings, labels, "embeddings", "labels")
        if ref_emb is None:
            if ref_labels is not None:
                raise ValueError("ref_labels was given without ref_emb.")
            candidates, candidate_labels = anchors, anchor_labels
            self_offset: int | None = 0
        else:
            candidates, candidate_labels = _check_inputs(
                ref_emb, ref_labels, "ref_emb", "ref_labels"
            )
            if candidates.shape[1] != anchors.shape[1]:
                raise ValueError(
                    f"ref_emb has dimension {candidates.shape[1]} but embeddings has "
                    f"{anchors.shape[1]}."
                )
            self_offset = None

        anchor_offset = 0
        if self.gather_distributed and is_distributed():
            if ref_emb is not None:
                raise ValueError(
                    "gather_distributed=True mines over the gathered batch; it cannot be "
                    "combined with ref_emb. Gather the reference set yourself, or set "
                    "gather_distributed=False."
                )
            candidates, candidate_labels, anchor_offset = _gather_rows(anchors, anchor_labels)
            self_offset = anchor_offset

        if bool((candidate_labels == candidate_labels[0]).all()) and (
            ref_emb is None or bool((anchor_labels == candidate_labels[0]).all())
        ):
            raise ValueError(
                "every row has the same label, so there are no negatives to mine; draw several "
                "classes per batch (e.g. supcon.samplers.MPerClassSampler) or drop the miner."
            )

        pairs = mine_topk_negatives(
            _normalize(anchors),
            anchor_labels,
            _normalize(candidates),
            candidate_labels,
            k=self.k,
            semi_hard=self.semi_hard,
            self_offset=self_offset,
            block_rows=self.block_rows,
        )
        a1, p, a2, n = pairs
        if anchor_offset:
            a1, a2 = a1 + anchor_offset, a2 + anchor_offset
        self.num_pos_pairs, self.num_neg_pairs = len(a1), len(a2)
        return a1, p, a2, n

    def extra_repr(self) -> str:
        return (
            f"k={self.k}, semi_hard={self.semi_hard}, gather_distributed={self.gather_distributed}"
        )


@torch.no_grad()
def mine_topk_negatives(
    anchors: Tensor,
    anchor_labels: Tensor,
    candidates: Tensor,
    candidate_labels: Tensor,
    *,
    k: int,
    semi_hard: bool = False,
    self_offset: int | None = 0,
    block_rows: int | None = None,
) -> PairTuple:
    """The math of :class:`TopKNegativeMiner` on already-normalised rows (no checks).

    Args:
        anchors: ``(N, D)`` L2-normalised anchor rows.
        anchor_labels: ``(N,)`` int64.
        candidates: ``(M, D)`` L2-normalised candidate rows.
        candidate_labels: ``(M,)`` int64.
        k: Negatives per anchor.
        semi_hard: Only negatives less similar than the least similar positive.
        self_offset: Anchor ``i`` is candidate ``self_offset + i`` and never its own pair;
            ``None`` when anchors are not among the candidates.
        block_rows: Anchor rows per block (``None``: see :class:`TopKNegativeMiner`).

    Returns:
        ``(a1, p, a2, n)`` int64, with anchor indices local to ``anchors``.
    """
    num_anchors, num_candidates = anchors.shape[0], candidates.shape[0]
    device = anchors.device
    if block_rows is None:
        elements = blocks.for_device(blocks.MINER_BLOCK_ELEMENTS, device.type)
        block_rows = blocks.rows_per_block(elements, num_candidates)
    kk = min(k, num_candidates)
    a1, p = positive_pairs(anchor_labels, candidate_labels, self_offset=self_offset)
    has_positive = torch.bincount(a1, minlength=num_anchors) > 0
    edges = torch.arange(0, num_anchors + block_rows, block_rows, device=device)
    bounds = torch.searchsorted(a1, edges).tolist()
    # One similarity buffer (and one mask buffer) for all blocks: a fresh big tensor per block
    # fragments the CPU heap (small long-lived outputs split the freed holes), which made peak
    # memory grow with the number of blocks.
    buffer = anchors.new_empty(min(block_rows, num_anchors), num_candidates)
    mask = torch.empty_like(buffer, dtype=torch.bool) if semi_hard else None
    a2s, ns = [], []
    for block, start in enumerate(range(0, num_anchors, block_rows)):
        stop = min(start + block_rows, num_anchors)
        rows = torch.arange(start, stop, device=device)
        lo, hi = bounds[block], bounds[block + 1]
        pos_rows, pos_cols = a1[lo:hi] - start, p[lo:hi]
        sim = torch.mm(anchors[start:stop], candidates.T, out=buffer[: stop - start])  # (b, M)
        # Turn `sim` into the negatives' similarities: positives and self are not negatives.
        if self_offset is not None:
            sim[rows - start, rows + self_offset] = float("-inf")
        if semi_hard:
            assert mask is not None
            hardest_positive = sim.new_full((stop - start,), float("inf"))
            hardest_positive.scatter_reduce_(0, pos_rows, sim[pos_rows, pos_cols], "amin")
            # Every positive is at least as similar as the hardest one, so this drops them too.
            too_hard = torch.ge(sim, hardest_positive[:, None], out=mask[: stop - start])
            sim.masked_fill_(too_hard, float("-inf"))
        else:
            sim[pos_rows, pos_cols] = float("-inf")
        values, order = sim.topk(kk, dim=1)  # hardest first
        keep = (values > float("-inf")) & has_positive[start:stop, None]
        a2s.append(rows[:, None].expand(-1, kk)[keep])
        ns.append(order[keep])
    if not a2s:
        return a1, p, a1.new_zeros(0), a1.new_zeros(0)
    return a1, p, torch.cat(a2s), torch.cat(ns)


def positive_pairs(
    anchor_labels: Tensor, candidate_labels: Tensor, *, self_offset: int | None = 0
) -> tuple[Tensor, Tensor]:
    """All (anchor, candidate) pairs with equal labels, without any ``(N, M)`` matrix.

    Args:
        anchor_labels: ``(N,)`` int64.
        candidate_labels: ``(M,)`` int64.
        self_offset: Anchor ``i`` is candidate ``self_offset + i`` and is not its own positive;
            ``None`` when anchors are not among the candidates.

    Returns:
        ``(a1, p)`` int64, sorted by anchor, candidates ascending within an anchor;
        ``O(#pairs)`` memory and time (plus a sort of the candidate labels).
    """
    sorted_labels, order = torch.sort(candidate_labels, stable=True)
    lo = torch.searchsorted(sorted_labels, anchor_labels, right=False)
    hi = torch.searchsorted(sorted_labels, anchor_labels, right=True)
    counts = hi - lo
    a1 = torch.repeat_interleave(torch.arange(len(anchor_labels), device=counts.device), counts)
    first = torch.cumsum(counts, 0) - counts
    within = torch.arange(len(a1), device=counts.device) - torch.repeat_interleave(first, counts)
    p = order[torch.repeat_interleave(lo, counts) + within]
    if self_offset is not None:
        not_self = p != a1 + self_offset
        a1, p = a1[not_self], p[not_self]
    return a1, p


def _normalize(rows: Tensor) -> Tensor:
    """L2-normalise in float32 (float64 stays float64; half precision is upcast)."""
    return F.normalize(rows if rows.dtype == torch.float64 else rows.float(), dim=1)


def _check_inputs(
    embeddings: Tensor, labels: Tensor | None, emb_name: str, label_name: str
) -> tuple[Tensor, Tensor]:
    """Validate a miner's input and flatten ``(B, V, D)`` view-major."""
    if not isinstance(embeddings, Tensor) or not embeddings.is_floating_point():
        raise ValueError(f"{emb_name} must be a floating-point torch.Tensor.")
    if labels is None:
        raise ValueError(
            f"{label_name} is missing: mining needs class labels to tell positives from "
            f"negatives; pass miner({emb_name}, {label_name})."
        )
    labels = torch.as_tensor(labels, device=embeddings.device)
    if labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{label_name} must be integer class ids, got dtype {labels.dtype}.")
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        raise ValueError(
            f"{label_name} must be integer class ids, got non-integer floats; map your labels "
            "to ints first (e.g. with numpy.unique(..., return_inverse=True))."
        )
    if embeddings.dim() == 3:
        if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"{label_name} must be (B,) = ({embeddings.shape[0]},) for (B, V, D) "
                f"{emb_name}, got shape {tuple(labels.shape)}."
            )
        embeddings, labels = flatten_views(embeddings, labels)
    elif embeddings.dim() != 2:
        raise ValueError(
            f"{emb_name} must be (N, D) or (B, V, D), got shape {tuple(embeddings.shape)}."
        )
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"{label_name} must be (N,) with N={embeddings.shape[0]} (one class id per row; "
            f"multi-hot labels are not supported by the miner), got shape "
            f"{tuple(labels.shape)}."
        )
    if embeddings.shape[0] == 0:
        raise ValueError(f"{emb_name} is empty; pass a non-empty batch.")
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError(
            f"{emb_name} contains NaN or inf; the model diverged or its input is corrupt."
        )
    return embeddings, labels.long()


def _gather_rows(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int]:
    """Every rank's rows and labels (counts may differ per rank) and this rank's offset."""
    sizes = gather_sizes(embeddings.shape[0], embeddings.device)
    return (
        all_gather_variable_no_grad(embeddings, sizes),
        all_gather_variable_no_grad(labels, sizes),
        sum(sizes[: get_rank()]),
    )


_PML_MINERS: dict[str, type[nn.Module]] = {
    "angular": pml_miners.AngularMiner,
    "batch_easy_hard": pml_miners.BatchEasyHardMiner,
    "batch_hard": pml_miners.BatchHardMiner,
    "distance_weighted": pml_miners.DistanceWeightedMiner,
    "hdc": pml_miners.HDCMiner,
    "multi_similarity": pml_miners.MultiSimilarityMiner,
    "pair_margin": pml_miners.PairMarginMiner,
    "triplet_margin": pml_miners.TripletMarginMiner,
    "uniform_histogram": pml_miners.UniformHistogramMiner,
}
MINERS: dict[str, type[nn.Module]] = {"topk": TopKNegativeMiner, **_PML_MINERS}


def create_miner(name: str | None, **kwargs: Any) -> nn.Module | None:
    """Build a miner from a recipe's ``miner:`` section.

    Args:
        name: ``"topk"`` (:class:`TopKNegativeMiner`), a PML miner by its snake_case name
            (``"batch_hard"``, ``"batch_easy_hard"``, ``"multi_similarity"``,
            ``"triplet_margin"``, ``"pair_margin"``, ``"angular"``, ``"distance_weighted"``,
            ``"hdc"``, ``"uniform_histogram"``), or ``"none"``/``None`` for no miner.
        **kwargs: The miner's constructor arguments, e.g. ``k=32`` for ``"topk"``,
            ``epsilon=0.1`` for ``"multi_similarity"``, ``type_of_triplets="semihard"`` for
            ``"triplet_margin"``.

    Returns:
        The miner (call it as ``miner(embeddings, labels)`` and pass the result to the loss as
        ``indices_tuple``), or ``None``.

    Raises:
        ValueError: for an unknown name or argument, listing the valid ones.
    """
    if name is None or name == "none":
        reject_arguments("miner", "none", kwargs)
        return None
    if name not in MINERS:
        raise ValueError(f"unknown miner {name!r}; choose one of {sorted(MINERS)} or 'none'.")
    cls = MINERS[name]
    valid = set(constructor_arguments(cls))
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ValueError(
            f"miner {name!r} got unknown argument(s) {unknown}; valid arguments are "
            f"{sorted(valid)}."
        )
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"miner {name!r}: {err}; valid arguments are {sorted(valid)}.") from None
