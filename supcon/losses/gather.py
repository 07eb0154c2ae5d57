"""Gather a contrastive batch across data-parallel ranks, exactly.

With ``gather_distributed=True`` every rank contrasts its *local* anchors against the rows of
*all* ranks. The gathered row order is rank-major: rank 0's locally flattened rows (view-major
for ``(B, V, D)`` input), then rank 1's, and so on; ranks may hold different batch sizes. Class
labels are global, so they are gathered as they are; sample ids (the view grouping of an
unlabelled batch, or user ``sample_ids``) only mean something within a rank, so each rank's ids
are renumbered into a range of its own before gathering. Mined ``indices_tuple`` entries index
the gathered batch; each rank keeps the pairs whose anchor is one of its own rows.

Every rank must call the loss (collectives inside), with a non-empty batch and the same
kind of positives (all with labels, or all without).

The embeddings travel through :func:`supcon.distributed.all_gather_variable_with_grad`, whose
backward sums every rank's gradient for a row and hands it to the rank that owns the row. The
loss module then scales its output so that DDP's gradient averaging yields the single-process
full-batch gradient (see :func:`supcon.losses.functional.supcon_loss`).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from supcon.distributed import (
    all_gather_variable_no_grad,
    all_gather_variable_with_grad,
    gather_sizes,
    get_rank,
    is_distributed,
)
from supcon.losses.rows import LocalRows


def gather_rows(rows: LocalRows) -> tuple[LocalRows, int, bool]:
    """Concatenate every rank's rows (a no-op outside an initialised multi-rank group).

    Args:
        rows: This rank's validated, flattened rows.

    Returns:
        ``(gathered rows, anchor_offset, distributed)``: the rows of all ranks, the position of
        this rank's first anchor in them, and whether a gather happened.

    Raises:
        ValueError: for a user ``mask``, which has no meaning across ranks.
    """
    if not is_distributed():
        return rows, 0, False
    if rows.dense_positive is not None:
        raise ValueError(
            "mask cannot be combined with gather_distributed=True (a per-rank mask does not "
            "describe pairs across ranks); pass labels or sample_ids instead."
        )
    device = rows.flat.device
    num_local = rows.flat.shape[0]
    sizes = gather_sizes(num_local, device)
    rank = get_rank()
    offset = sum(sizes[:rank])
    padded = max(sizes)

    flat = all_gather_variable_with_grad(rows.flat, sizes)
    keys = rows.keys
    if keys is not None:
        if not rows.keys_are_labels:
            # Sample ids are per rank: renumber them into [rank * padded, rank * padded + n).
            _, compact = torch.unique(keys, return_inverse=True)
            keys = compact + rank * padded
        keys = all_gather_variable_no_grad(keys, sizes)
    multi_hot = rows.multi_hot
    if multi_hot is not None:
        multi_hot = all_gather_variable_no_grad(multi_hot.to(torch.uint8), sizes).bool()
    gathered = replace(rows, flat=flat, keys=keys, multi_hot=multi_hot)
    return gathered, offset, True
