"""Validate the loss inputs and turn them into one flat batch plus its :class:`PairStructure`.

Every public loss entry point goes through :func:`prepare_batch`, so all argument checks and
all error messages live here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from supcon.losses.gather import gather_rows
from supcon.losses.rows import LocalRows, view_major
from supcon.losses.structure import PairStructure

ContrastMode = Literal["all", "one"]


@dataclass(frozen=True)
class FlatBatch:
    """A validated contrastive batch.

    Attributes:
        candidates: ``(M, D)`` embeddings in the compute dtype (float32 for half inputs),
            not yet normalised: the batch rows (view-major when the input was ``(B, V, D)``;
            rank-major when gathered), then the reference rows.
        num_batch_rows: Candidates ``[0, num_batch_rows)`` come from ``embeddings``; the rest
            are reference rows.
        structure: Which pairs are positives and which enter each denominator.
        anchor_offset: The anchors are candidates ``[anchor_offset, anchor_offset +
            structure.num_anchors)`` (non-zero only for a rank's share of a gathered batch).
        distributed: True when ``candidates`` were gathered from several ranks, so sums and
            counts must be all-reduced.
    """

    candidates: Tensor
    num_batch_rows: int
    structure: PairStructure
    anchor_offset: int = 0
    distributed: bool = False


def check_temperature(temperature: float, name: str = "temperature") -> float:
    """Return ``temperature`` as a float, or raise if it is not a finite positive number."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {temperature!r}.") from None
    if not (value > 0.0 and value != float("inf")):
        raise ValueError(
            f"{name} must be a finite number > 0, got {temperature!r}; typical values are "
            "0.05-0.5 (SimCLR uses 0.5, SupCon 0.1)."
        )
    return value


def check_contrast_mode(contrast_mode: str) -> ContrastMode:
    """Return ``contrast_mode`` or raise if it is not ``"all"`` or ``"one"``."""
    if contrast_mode not in ("all", "one"):
        raise ValueError(
            f"contrast_mode must be 'all' (every view is an anchor) or 'one' (only the first "
            f"view anchors), got {contrast_mode!r}."
        )
    return contrast_mode  # type: ignore[return-value]


def check_embeddings(embeddings: Tensor, name: str) -> None:
    """Raise unless ``embeddings`` is a non-empty, finite floating-point tensor."""
    if not isinstance(embeddings, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(embeddings).__name__}.")
    if not embeddings.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor, got dtype {embeddings.dtype}; "
            "pass the model's output embeddings, not indices."
        )
    if embeddings.numel() == 0 or embeddings.shape[0] == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(embeddings.shape)}); pass a non-empty batch."
        )
    if embeddings.shape[-1] == 0:
        raise ValueError(f"{name} has embedding dimension 0 (shape {tuple(embeddings.shape)}).")
    if not bool(torch.isfinite(embeddings).all()):
        bad = int((~torch.isfinite(embeddings)).any(dim=-1).sum())
        raise ValueError(
            f"{name} contains NaN or inf in {bad} row(s); the model diverged or its input is "
            "corrupt. Lower the learning rate, enable gradient clipping, or check the data."
        )


def as_long_labels(labels: Tensor | Sequence[int], name: str, device: torch.device) -> Tensor:
    """Convert 1-D integer labels to int64, refusing floats that are not whole numbers."""
    labels = torch.as_tensor(labels, device=device)
    if labels.dtype == torch.bool:
        return labels.long()
    if labels.is_floating_point():
        if not bool(torch.isfinite(labels).all()) or not bool((labels == labels.round()).all()):
            raise ValueError(
                f"{name} must hold integer class ids, got non-integer floats; map your labels "
                "to ints first (e.g. with numpy.unique(..., return_inverse=True))."
            )
        return labels.long()
    if labels.is_complex():
        raise ValueError(f"{name} must hold integer class ids, got dtype {labels.dtype}.")
    return labels.long()


def _check_labels(labels: Tensor, name: str, expected_rows: int, what: str) -> Tensor:
    """Validate ``(n,)`` integer or ``(n, C)`` multi-hot labels with ``expected_rows`` rows."""
    if labels.dim() not in (1, 2):
        raise ValueError(
            f"{name} must be (N,) integer class ids or (N, C) multi-hot, got shape "
            f"{tuple(labels.shape)}."
        )
    if labels.shape[0] != expected_rows:
        raise ValueError(
            f"{name} has {labels.shape[0]} rows but {what} has {expected_rows}; pass one label "
            f"per {'sample' if 'B' in what else 'row'}."
        )
    if labels.dim() == 2:
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError(f"{name} is 2-D, so it must be multi-hot with 0/1 entries.")
        return labels.bool()
    return labels


def _check_pairs(
    indices_tuple: tuple[Tensor, ...], num_rows: int, device: torch.device
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Turn a PML miner output (4 pair tensors or 3 triplet tensors) into pos and neg pairs."""
    if not isinstance(indices_tuple, (tuple, list)) or len(indices_tuple) not in (3, 4):
        raise ValueError(
            "indices_tuple must be a PML miner output: (anchor, positive, negative) triplets "
            "or (a1, positive, a2, negative) pairs."
        )
    parts = [torch.as_tensor(t, device=device).long().reshape(-1) for t in indices_tuple]
    if len(parts) == 3:
        a, p, n = parts
        if not (len(a) == len(p) == len(n)):
            raise ValueError("indices_tuple triplets (a, p, n) must have equal lengths.")
        parts = [a, p, a, n]
    a1, p, a2, n = parts
    if len(a1) != len(p) or len(a2) != len(n):
        raise ValueError("indices_tuple pairs must have len(a1) == len(p) and len(a2) == len(n).")
    for t in parts:
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_rows):
            raise ValueError(
                f"indices_tuple holds index {int(t.min()) if int(t.min()) < 0 else int(t.max())}"
                f" outside the batch of {num_rows} rows; mine on the same (flattened) batch."
            )
    return (a1, p), (a2, n)


def flatten_batch(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    sample_ids: Tensor | None = None,
    mask: Tensor | None = None,
    indices_tuple: tuple[Tensor, ...] | None = None,
    contrast_mode: str = "all",
) -> LocalRows:
    """Validate the batch arguments and flatten ``(B, V, D)`` input view-major.

    Args:
        embeddings: ``(N, D)`` or ``(B, V, D)`` (V views of B samples).
        labels: ``(N,)``/``(B,)`` integer class ids or ``(N, C)``/``(B, C)`` multi-hot.
        sample_ids: ``(N,)`` ids grouping the views of one sample (``(N, D)`` input only).
        mask: ``(N, N)`` boolean positive mask over the flattened batch (view-major rows).
        indices_tuple: PML miner output over the flattened batch.
        contrast_mode: ``"all"`` or ``"one"`` (only view 0 anchors; needs ``(B, V, D)``).

    Returns:
        The flattened rows and their positive structure's raw ingredients.

    Raises:
        ValueError: naming the argument at fault and how to fix it.
    """
    check_contrast_mode(contrast_mode)
    check_embeddings(embeddings, "embeddings")
    if embeddings.dim() not in (2, 3):
        raise ValueError(
            f"embeddings must be (N, D) or (B, V, D), got shape {tuple(embeddings.shape)}."
        )
    device = embeddings.device
    sources = [
        n
        for n, v in (("labels", labels), ("sample_ids", sample_ids), ("mask", mask))
        if v is not None
    ]
    if len(sources) > 1:
        raise ValueError(
            f"pass only one of labels, sample_ids and mask to define positives, got {sources}."
        )

    if embeddings.dim() == 3:
        num_samples, num_views, _ = embeddings.shape
        # View-major layout, as SupContrast: rows [v * B + b].
        flat = view_major(embeddings)
        if sample_ids is not None:
            raise ValueError(
                "sample_ids are implied by (B, V, D) embeddings; drop sample_ids or pass (N, D)."
            )
        if labels is None and mask is None and indices_tuple is None and num_views < 2:
            raise ValueError(
                "embeddings has V=1 view and no labels, so no anchor has a positive; pass "
                "labels, or at least two augmented views per sample as (B, V, D)."
            )
    else:
        num_samples, num_views = embeddings.shape[0], 1
        flat = embeddings
        if labels is None and sample_ids is None and mask is None and indices_tuple is None:
            raise ValueError(
                "embeddings is (N, D) with no labels, sample_ids, mask or indices_tuple, so no "
                "anchor has a positive; pass labels, sample_ids grouping the views of each "
                "sample, or embeddings shaped (B, V, D)."
            )
    if contrast_mode == "one" and embeddings.dim() != 3:
        raise ValueError("contrast_mode='one' needs embeddings shaped (B, V, D).")
    num_rows = flat.shape[0]
    rows = LocalRows(
        flat=flat,
        num_anchors=num_samples if contrast_mode == "one" else num_rows,
        indices_tuple=indices_tuple,
    )
    if labels is not None:
        label_t = torch.as_tensor(labels, device=device)
        if label_t.dim() == 1:
            label_t = as_long_labels(label_t, "labels", device)
        label_t = _check_labels(
            label_t,
            "labels",
            num_samples,
            f"embeddings (B={num_samples})"
            if embeddings.dim() == 3
            else f"embeddings (N={num_rows})",
        )
        label_t = label_t.repeat(num_views, *([1] * (label_t.dim() - 1)))
        if label_t.dim() == 1:
            rows.keys, rows.keys_are_labels = label_t, True
        else:
            rows.multi_hot = label_t
    elif sample_ids is not None:
        ids = as_long_labels(sample_ids, "sample_ids", device)
        if ids.dim() != 1 or ids.shape[0] != num_rows:
            raise ValueError(
                f"sample_ids must be (N,) with N={num_rows} (one id per embedding row), got "
                f"shape {tuple(ids.shape)}."
            )
        rows.keys = ids
    elif mask is not None:
        mask_t = torch.as_tensor(mask, device=device)
        if mask_t.shape != (num_rows, num_rows):
            raise ValueError(
                f"mask must be ({num_rows}, {num_rows}) over the flattened batch, got "
                f"{tuple(mask_t.shape)}."
            )
        rows.dense_positive = mask_t.bool()[: rows.num_anchors]
    elif embeddings.dim() == 3:
        rows.keys = torch.arange(num_samples, device=device).repeat(num_views)
    return rows


def attach_references(
    rows: LocalRows,
    ref_embeddings: Tensor | None,
    ref_labels: Tensor | None,
) -> tuple[Tensor | None, Tensor | None]:
    """Validate the reference set against the batch.

    Args:
        rows: The (possibly gathered) batch rows.
        ref_embeddings: ``(R, D)`` extra candidates, or ``None``. ``R = 0`` is allowed (an empty
            memory queue) and means no references.
        ref_labels: ``(R,)`` or ``(R, C)`` labels of ``ref_embeddings``.

    Returns:
        ``(ref_embeddings, ref_keys_or_multi_hot)``, both ``None`` when there are no references.

    Raises:
        ValueError: naming the argument at fault.
    """
    if ref_embeddings is None:
        if ref_labels is not None:
            raise ValueError("ref_labels was given without ref_embeddings.")
        return None, None
    if not isinstance(ref_embeddings, Tensor) or not ref_embeddings.is_floating_point():
        raise ValueError("ref_embeddings must be a floating-point torch.Tensor (R, D).")
    dim = rows.flat.shape[1]
    if ref_embeddings.dim() != 2 or ref_embeddings.shape[1] != dim:
        raise ValueError(
            f"ref_embeddings must be (R, {dim}) to match embeddings, got shape "
            f"{tuple(ref_embeddings.shape)}."
        )
    if ref_labels is None:
        raise ValueError("ref_embeddings needs ref_labels (one label per reference row).")
    if rows.keys is None and rows.multi_hot is None:
        raise ValueError(
            "ref_embeddings need label-defined positives: pass labels (or a (B, V, D) batch "
            "whose sample ids the ref_labels use), not mask."
        )
    if rows.indices_tuple is not None:
        raise ValueError(
            "indices_tuple cannot be combined with ref_embeddings; mine within the batch, "
            "or pass the queue without a miner."
        )
    device = rows.flat.device
    ref_t = torch.as_tensor(ref_labels, device=device)
    if ref_t.dim() == 1:
        ref_t = as_long_labels(ref_t, "ref_labels", device)
    expected_dim = 1 if rows.multi_hot is None else 2
    if ref_t.dim() != expected_dim:
        raise ValueError(
            f"ref_labels must have the same layout as labels ({expected_dim}-D), got shape "
            f"{tuple(ref_t.shape)}."
        )
    ref_t = _check_labels(ref_t, "ref_labels", ref_embeddings.shape[0], "ref_embeddings")
    if rows.multi_hot is not None and ref_t.shape[1] != rows.multi_hot.shape[1]:
        raise ValueError(
            f"ref_labels has {ref_t.shape[1]} classes but labels has {rows.multi_hot.shape[1]}."
        )
    if ref_embeddings.shape[0] == 0:
        return None, None
    check_embeddings(ref_embeddings, "ref_embeddings")
    return ref_embeddings, ref_t


def prepare_batch(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    sample_ids: Tensor | None = None,
    mask: Tensor | None = None,
    indices_tuple: tuple[Tensor, ...] | None = None,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    contrast_mode: str = "all",
    gather_distributed: bool = False,
) -> FlatBatch:
    """Validate loss inputs, gather them across ranks if asked, and flatten them.

    Args:
        embeddings: ``(N, D)`` or ``(B, V, D)`` (V views of B samples).
        labels: ``(N,)``/``(B,)`` integer class ids or ``(N, C)``/``(B, C)`` multi-hot.
        sample_ids: ``(N,)`` ids grouping the views of one sample (``(N, D)`` input only).
        mask: ``(N, N)`` boolean positive mask over the flattened batch (view-major rows).
        indices_tuple: PML miner output over the flattened batch (the gathered batch when
            ``gather_distributed``).
        ref_embeddings: ``(R, D)`` extra candidates (e.g. a memory queue); never anchors.
        ref_labels: ``(R,)`` labels of ``ref_embeddings``.
        contrast_mode: ``"all"`` or ``"one"`` (only view 0 anchors; needs ``(B, V, D)``).
        gather_distributed: Gather rows from every rank (see :mod:`supcon.losses.gather`).

    Returns:
        The flat, validated batch.

    Raises:
        ValueError: naming the argument at fault and how to fix it.
    """
    rows = flatten_batch(
        embeddings,
        labels,
        sample_ids=sample_ids,
        mask=mask,
        indices_tuple=indices_tuple,
        contrast_mode=contrast_mode,
    )
    refs, ref_t = attach_references(rows, ref_embeddings, ref_labels)
    anchor_offset, distributed = 0, False
    if gather_distributed:
        rows, anchor_offset, distributed = gather_rows(rows)

    device = rows.flat.device
    num_rows = rows.flat.shape[0]
    candidates, keys, multi_hot = rows.flat, rows.keys, rows.multi_hot
    if refs is not None:
        assert ref_t is not None
        candidates = torch.cat([candidates, refs.to(candidates.dtype)], dim=0)
        if keys is not None:
            keys = torch.cat([keys, ref_t.to(keys.dtype)])
        else:
            assert multi_hot is not None
            multi_hot = torch.cat([multi_hot, ref_t])
    num_candidates = candidates.shape[0]
    if rows.indices_tuple is not None:
        pos_pairs, neg_pairs = _check_pairs(rows.indices_tuple, num_rows, device)
        pos_pairs = (pos_pairs[0] - anchor_offset, pos_pairs[1])
        neg_pairs = (neg_pairs[0] - anchor_offset, neg_pairs[1])
        structure = PairStructure(
            rows.num_anchors,
            num_candidates,
            pos_pairs=pos_pairs,
            neg_pairs=neg_pairs,
            anchor_offset=anchor_offset,
        )
    else:
        structure = PairStructure(
            rows.num_anchors,
            num_candidates,
            keys=keys,
            multi_hot=multi_hot,
            dense_positive=rows.dense_positive,
            anchor_offset=anchor_offset,
        )
    if candidates.dtype in (torch.float16, torch.bfloat16):
        candidates = candidates.float()
    return FlatBatch(
        candidates=candidates,
        num_batch_rows=num_rows,
        structure=structure,
        anchor_offset=anchor_offset,
        distributed=distributed,
    )
