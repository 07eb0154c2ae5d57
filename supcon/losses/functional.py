"""SupCon / NT-Xent as pure tensor functions.

For anchor ``i`` with positives ``P(i)`` and denominator set ``K(i)`` (every other row unless a
miner restricts it), with ``s`` the cosine similarity and ``τ`` the temperature::

    ℓ_i = logsumexp_{a ∈ K(i)} (s_ia / τ) − mean_{p ∈ P(i)} (s_ip / τ)

which is SupCon's L_out (Khosla et al. 2020, eq. 2) and, with one positive per anchor, SimCLR's
NT-Xent (Chen et al. 2020). The loss is the mean of ``ℓ_i`` over anchors with at least one
positive; the others are excluded and counted.

Three interchangeable paths compute it: :mod:`.dense` (one ``(N_a, M)`` matrix, autograd),
:mod:`.tiled` (row blocks, hand-written gradient, ``O(M·D + block·M)`` memory) and, for mined
pairs that cover a small part of the matrix, :mod:`.sparse` (``O(pairs·D)``). ``tiled=None``
picks the sparse path for mined pairs sparser than :data:`SPARSE_MAX_DENSITY` (without HCL),
otherwise the tiled path once ``N_a · M`` reaches :data:`supcon.blocks.AUTO_TILE_ELEMENTS`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from supcon import blocks
from supcon.distributed import all_reduce_sum, get_world_size
from supcon.losses.dense import dense_anchor_losses
from supcon.losses.hcl import check_beta
from supcon.losses.inputs import FlatBatch, check_temperature, prepare_batch
from supcon.losses.sparse import SparsePairs, SparsePlan, sparse_loss_sum
from supcon.losses.structure import AnchorCounts
from supcon.losses.tiled import TilePlan, default_block_rows, tiled_loss_sum

#: Mined pairs covering less than this fraction of the ``N_a × M`` matrix use the sparse path.
SPARSE_MAX_DENSITY = 1 / 16


@dataclass(frozen=True)
class LossStats:
    """What one loss call saw.

    Under ``gather_distributed`` the counts are summed over ranks (every rank reports the same).

    Attributes:
        num_anchors: Anchors in the batch.
        num_anchors_without_positives: Anchors excluded from the mean because nothing in the
            batch (or the mined pairs) is a positive for them.
        num_trivial_anchors: Anchors excluded because their denominator holds only their single
            positive (their term is identically 0; only possible with mined pairs).
        num_negative_pairs: (anchor, negative) pairs in the batch. With none, the loss is 0
            (nothing to contrast against), as in PML.
        path: Which implementation computed the loss: ``"dense"``, ``"tiled"`` or
            ``"sparse"`` (mined pairs only).
    """

    num_anchors: int
    num_anchors_without_positives: int
    num_trivial_anchors: int = 0
    num_negative_pairs: int = 0
    path: str = "dense"

    @property
    def tiled(self) -> bool:
        """Whether the tiled path computed the loss."""
        return self.path == "tiled"

    @property
    def num_anchors_in_mean(self) -> int:
        """Anchors the loss averages over."""
        return self.num_anchors - self.num_anchors_without_positives - self.num_trivial_anchors


_warned_no_positives = False
_warned_no_negatives = False


def _warn_no_positives_once() -> None:
    global _warned_no_positives
    if not _warned_no_positives:
        _warned_no_positives = True
        warnings.warn(
            "supcon: no anchor in this batch has a positive (and something to contrast it "
            "with), so the loss is 0. Use a sampler that puts several samples per class in a "
            "batch (supcon.samplers.MPerClassSampler) or pass two or more views per sample.",
            RuntimeWarning,
            stacklevel=4,
        )


def _warn_no_negatives_once() -> None:
    global _warned_no_negatives
    if not _warned_no_negatives:
        _warned_no_negatives = True
        warnings.warn(
            "supcon: this batch has no negative pair (a single class, or a miner that returned "
            "no negatives), so the loss is 0 as in PML. Use batches with several classes, or "
            "loosen the miner's negative margin.",
            RuntimeWarning,
            stacklevel=4,
        )


def l2_normalize(x: Tensor) -> Tensor:
    """Row-wise L2 normalisation that neither overflows nor underflows.

    Rows are first divided by their largest absolute entry (a constant for autograd, which is
    exact because ``normalize(x / c) = normalize(x)``), so norms of ``1e30`` or ``1e-30`` in
    float32 stay representable. All-zero rows stay zero.

    Args:
        x: ``(M, D)`` rows.

    Returns:
        ``(M, D)`` unit rows.
    """
    scale = x.detach().abs().amax(dim=1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return F.normalize(x / scale, dim=1)


def check_block_size(block_size: int | None) -> int | None:
    """Return ``block_size`` or raise if it is not a positive int (``None``: automatic)."""
    if block_size is None:
        return None
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(
            f"block_size must be a positive int (anchor rows per tile) or None for automatic, "
            f"got {block_size!r}."
        )
    return block_size


def check_tiled(tiled: bool | None) -> bool | None:
    """Return ``tiled`` or raise if it is not ``True``, ``False`` or ``None``."""
    if tiled is not None and not isinstance(tiled, bool):
        raise ValueError(
            f"tiled must be True (row blocks), False (one dense matrix) or None (automatic), "
            f"got {tiled!r}."
        )
    return tiled


#: Values of ``path``: ``"auto"`` chooses by size and sparsity; the others force one path.
PATHS = ("auto", "dense", "tiled", "sparse")


def check_path(path: str, tiled: bool | None) -> tuple[bool | None, bool]:
    """``(tiled, force_sparse)`` for a ``path`` name; raises if it is unknown or clashes."""
    if path not in PATHS:
        raise ValueError(f"path must be one of {', '.join(PATHS)}, got {path!r}.")
    if path != "auto" and tiled is not None:
        raise ValueError(f"pass either path={path!r} or tiled={tiled!r}, not both.")
    if path == "auto":
        return tiled, False
    return {"dense": False, "tiled": True, "sparse": None}[path], path == "sparse"


def _anchor_loss_sum(
    z: Tensor,
    batch: FlatBatch,
    inv_tau: float,
    beta: float,
    tiled: bool | None,
    block_size: int | None,
    grad_cols: int,
    force_sparse: bool = False,
) -> tuple[Tensor, AnchorCounts, str]:
    structure = batch.structure
    num_anchors, num_cols = structure.num_anchors, structure.num_candidates
    if force_sparse and (structure.kind != "pairs" or beta != 0.0):
        raise ValueError(
            "path='sparse' needs mined pairs (indices_tuple from a miner) and hcl_beta=0; "
            "use path='auto' otherwise."
        )
    sparse = force_sparse or (
        tiled is None
        and structure.kind == "pairs"
        and beta == 0.0
        and structure.num_mined_pairs() < SPARSE_MAX_DENSITY * num_anchors * num_cols
    )
    if sparse:
        plan = SparsePlan(SparsePairs.from_structure(structure), batch.anchor_offset, inv_tau)
        total, counts = sparse_loss_sum(z, plan)
        return total, counts, "sparse"
    use_tiled = tiled if tiled is not None else num_anchors * num_cols >= blocks.AUTO_TILE_ELEMENTS
    if use_tiled:
        rows = block_size or default_block_rows(num_anchors, num_cols, z.device)
        plan = TilePlan(structure, inv_tau, beta, max(1, min(rows, num_anchors)), grad_cols)
        total, counts = tiled_loss_sum(z, plan)
        return total, counts, "tiled"
    losses, _, counts = dense_anchor_losses(z, structure, inv_tau, beta)
    return losses.sum(), counts, "dense"


def _reduce(
    total: Tensor, counts: AnchorCounts, batch: FlatBatch, path: str
) -> tuple[Tensor, LossStats]:
    """Mean over counted anchors; under a gather, the global mean with DDP-exact gradients."""
    local = (counts.num_anchors, counts.without_positives, counts.trivial, counts.negative_pairs)
    if batch.distributed:
        summed = all_reduce_sum(torch.tensor(local, dtype=torch.long, device=total.device))
        local = tuple(int(v) for v in summed)
    stats = LossStats(*local, path=path)
    counted = stats.num_anchors_in_mean
    if counted == 0 or stats.num_negative_pairs == 0:
        if counted == 0:
            _warn_no_positives_once()
        else:
            _warn_no_negatives_once()
        # 0, still in the graph (under a gather: through it, so every rank's backward meets).
        return total * 0.0, stats
    if not batch.distributed:
        return total / counted, stats
    global_total = all_reduce_sum(total.detach().double().reshape(1))[0]
    # Value: the global mean. Gradient: world · (local sum) / (global count), which DDP's
    # averaging over ranks turns into the gradient of the global mean.
    partial = total * (get_world_size() / counted)
    value = (global_total / counted).to(total.dtype)
    return partial + (value - partial.detach()), stats


def supcon_loss_with_stats(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    sample_ids: Tensor | None = None,
    mask: Tensor | None = None,
    indices_tuple: tuple[Tensor, ...] | None = None,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    temperature: float = 0.1,
    base_temperature: float | None = None,
    contrast_mode: str = "all",
    hcl_beta: float = 0.0,
    tiled: bool | None = None,
    block_size: int | None = None,
    gather_distributed: bool = False,
    path: str = "auto",
) -> tuple[Tensor, LossStats]:
    """:func:`supcon_loss` that also returns :class:`LossStats`."""
    tau = check_temperature(temperature)
    scale = (
        1.0
        if base_temperature is None
        else tau / check_temperature(base_temperature, "base_temperature")
    )
    beta = check_beta(hcl_beta)
    tiled, force_sparse = check_path(path, check_tiled(tiled))
    block_size = check_block_size(block_size)
    batch = prepare_batch(
        embeddings,
        labels,
        sample_ids=sample_ids,
        mask=mask,
        indices_tuple=indices_tuple,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        contrast_mode=contrast_mode,
        gather_distributed=gather_distributed,
    )
    z = l2_normalize(batch.candidates)
    refs_need_grad = ref_embeddings is not None and ref_embeddings.requires_grad
    grad_cols = z.shape[0] if refs_need_grad else batch.num_batch_rows
    total, counts, used = _anchor_loss_sum(
        z, batch, 1.0 / tau, beta, tiled, block_size, grad_cols, force_sparse
    )
    loss, stats = _reduce(total, counts, batch, used)
    return (loss * scale).to(embeddings.dtype), stats


def supcon_loss(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    sample_ids: Tensor | None = None,
    mask: Tensor | None = None,
    indices_tuple: tuple[Tensor, ...] | None = None,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    temperature: float = 0.1,
    base_temperature: float | None = None,
    contrast_mode: str = "all",
    hcl_beta: float = 0.0,
    tiled: bool | None = None,
    block_size: int | None = None,
    gather_distributed: bool = False,
    path: str = "auto",
) -> Tensor:
    """Supervised contrastive loss (SupCon L_out; NT-Xent with one positive per anchor).

    Args:
        embeddings: ``(N, D)`` embeddings, or ``(B, V, D)`` = V augmented views of B samples.
            L2-normalised inside; half-precision inputs are computed in float32.
        labels: ``(N,)``/``(B,)`` integer class ids, or ``(N, C)``/``(B, C)`` multi-hot (positives
            share at least one class). ``None`` with ``(B, V, D)`` makes the other views of each
            sample its positives.
        sample_ids: ``(N,)`` ids for ``(N, D)`` input: rows with the same id are views of one
            sample and each other's positives.
        mask: ``(N, N)`` boolean positives over the flattened batch (rows view-major for
            ``(B, V, D)`` input: row ``v * B + b``). The diagonal is ignored.
        indices_tuple: A PML miner's output, ``(a1, p, a2, n)`` pairs or ``(a, p, n)`` triplets,
            over the flattened batch; positives and denominators are restricted to those pairs
            exactly as in PML's ``SupConLoss`` (each anchor's denominator is its mined positives
            and negatives). Anchors whose denominator is a single positive are excluded like
            PML does. Under ``gather_distributed`` the indices refer to the gathered batch.
        ref_embeddings: ``(R, D)`` extra candidates (e.g. a :class:`CrossBatchMemory`)
            contrasted against but never used as anchors. ``R = 0`` is allowed.
        ref_labels: ``(R,)`` (or ``(R, C)``) labels of ``ref_embeddings``.
        temperature: τ > 0.
        base_temperature: If set, the loss is multiplied by ``τ / base_temperature`` as in
            SupContrast's code (0.07 there), which rescales the gradient for a given τ. ``None``
            (default) gives plain L_out.
        contrast_mode: ``"all"``: every view is an anchor; ``"one"``: only view 0 anchors.
        hcl_beta: Hard-negative concentration β of HCL (Robinson et al. 2021; see
            :mod:`supcon.losses.hcl`). 0 (default) is plain SupCon.
        tiled: ``True``: row-block path with ``O(M·D + block·M)`` memory; ``False``: one dense
            matrix (supports double backward); ``None`` (default): the sparse path for mined
            pairs covering < 1/16 of the matrix, else tiled once ``N_a · M ≥
            AUTO_TILE_ELEMENTS``. All paths give the same value and gradient.
        block_size: Anchor rows per tile (default: about 16 MiB of float32 per tile on CPU).
        gather_distributed: In an initialised process group of >1 ranks, all-gather embeddings
            (with gradient) and labels / sample ids, contrast this rank's anchors against all
            rows, and return the global mean (identical on every rank) with gradients that,
            after DDP's averaging, equal the single-process full-batch gradient. Ranks may hold
            different batch sizes. A no-op when not distributed.
        path: ``"auto"`` (default: as ``tiled``), or force ``"dense"``, ``"tiled"`` or
            ``"sparse"`` (mined pairs only, ``hcl_beta=0``). Not combined with ``tiled``.

    Returns:
        Scalar loss: the mean over anchors with at least one positive; 0 (still in the graph)
        when no anchor has one.

    Raises:
        ValueError: on malformed or non-finite inputs, naming the argument.
    """
    loss, _ = supcon_loss_with_stats(
        embeddings,
        labels,
        sample_ids=sample_ids,
        mask=mask,
        indices_tuple=indices_tuple,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        temperature=temperature,
        base_temperature=base_temperature,
        contrast_mode=contrast_mode,
        hcl_beta=hcl_beta,
        tiled=tiled,
        block_size=block_size,
        gather_distributed=gather_distributed,
        path=path,
    )
    return loss
