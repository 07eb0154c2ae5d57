"""Exact k-nearest neighbours by inner product, computed block by block (never ``N × N``).

Scores of a ``(rows, cols)`` block come from one matrix product; each row keeps its ``k`` best
in a FAISS heap (C++ insertion that rejects most candidates with one comparison). Two CPU
layouts:

* :func:`search_blocks`: queries against a gallery; memory ``O(rows · k + rows · block)``.
  Lists deeper than ``HEAP_MAX_K`` (mAP@R over large classes) are selected by partitioning
  whole score rows (``np.argpartition``) instead of heaps.
* :func:`search_self`: leave-one-out on one set. The score matrix is symmetric, so only the
  blocks on and above the diagonal are multiplied and each feeds the heaps of its rows *and* of
  its columns: half the multiply-adds of a query-against-gallery search, for
  ``O(N · k)`` heap memory.

On CUDA (:func:`search_blocks` with ``device="cuda"``) a chunk of queries is scored against the
whole gallery with one float32 product (TF32 off) and reduced with ``torch.topk``.

Pairs whose *keys* are equal are never returned (a query and itself, or two photos of one
product). Results are sorted by score, then by gallery position; missing neighbours (fewer than
``k`` candidates) are ``id = -1`` with score ``-inf``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from supcon import blocks


def _faiss() -> Any:
    """The faiss module, imported on first use (``import supcon`` stays light)."""
    import faiss

    return faiss


NO_NEIGHBOUR = -1
#: Deeper lists than this are selected by partitioning whole score rows instead of heaps
#: (a heap insertion costs ``O(log k)`` and deep heaps take many).
HEAP_MAX_K = 512


@contextmanager
def _faiss_threads(n: int) -> Iterator[None]:
    """Run FAISS with ``n`` OpenMP threads (heap insertion is faster single-threaded)."""
    old = _faiss().omp_get_max_threads()
    _faiss().omp_set_num_threads(n)
    try:
        yield
    finally:
        _faiss().omp_set_num_threads(old)


class _Heaps:
    """``rows`` min-heaps of size ``k`` over caller-owned score/id arrays."""

    def __init__(self, scores: np.ndarray, ids: np.ndarray) -> None:
        self.scores, self.ids = scores, ids
        self.heaps = _faiss().float_minheap_array_t()
        self.heaps.k = scores.shape[1]
        self.heaps.nh = scores.shape[0]
        self.heaps.val = _faiss().swig_ptr(scores)
        self.heaps.ids = _faiss().swig_ptr(ids)
        self.heaps.heapify()

    def add(self, block: np.ndarray, row0: int, col0: int) -> None:
        """Offer ``block[i, j]`` (id ``col0 + j``) to heap ``row0 + i``; ``-inf`` never enters."""
        rows, cols = block.shape
        self.heaps.addn(cols, _faiss().swig_ptr(block), col0, row0, rows)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Sort every heap by score (descending), ties by id; empty slots become ``-inf, -1``."""
        self.heaps.reorder()
        empty = self.ids < 0
        self.scores[empty] = -np.inf
        return _sort_ties(self.scores, self.ids)


def _order_keys(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """uint64 keys whose ascending order is score descending, then id ascending (id -1 last)."""
    bits = (scores.astype(np.float32) + np.float32(0.0)).view(np.uint32)  # -0.0 becomes 0.0
    ascending = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
    return ((~ascending).astype(np.uint64) << np.uint64(32)) | (
        ids.astype(np.int64) & 0xFFFFFFFF
    ).astype(np.uint64)


def _ids_of(keys: np.ndarray) -> np.ndarray:
    ids = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    ids[ids == 0xFFFFFFFF] = NO_NEIGHBOUR
    return ids


def _sort_ties(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within runs of equal scores, order by id (only rows that have such runs are touched)."""
    tied = np.flatnonzero(((scores[:, 1:] == scores[:, :-1]) & (ids[:, 1:] >= 0)).any(axis=1))
    if len(tied):
        sub_scores = scores[tied]
        order = np.argsort(_order_keys(sub_scores, ids[tied]), axis=1)
        scores[tied] = np.take_along_axis(sub_scores, order, axis=1)
        ids[tied] = np.take_along_axis(ids[tied], order, axis=1)
    return scores, ids


def _block_view(buffer: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """A contiguous ``(rows, cols)`` view on the front of a flat buffer."""
    return buffer[: rows * cols].view(rows, cols)


def _mask_keys(
    block: torch.Tensor, row_keys: torch.Tensor | None, col_keys: torch.Tensor | None
) -> None:
    if row_keys is not None and col_keys is not None:
        block.masked_fill_(row_keys[:, None] == col_keys[None, :], -torch.inf)


def _keys(
    keys: np.ndarray | torch.Tensor | None, device: torch.device | str = "cpu"
) -> torch.Tensor | None:
    if keys is None:
        return None
    if isinstance(keys, torch.Tensor):
        return keys.to(device=device, dtype=torch.int64)
    return torch.as_tensor(np.asarray(keys, dtype=np.int64), device=device)


def search_self_chunks(
    x: np.ndarray,
    k: int,
    *,
    keys: np.ndarray | None = None,
    order: np.ndarray | None = None,
    block_size: int = 2048,
    chunk_size: int = 4096,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Leave-one-out top-``k`` of every row of ``x`` among the other rows (CPU, symmetric).

    Block ``(i, j)`` with ``j ≥ i`` is multiplied once and feeds the heaps of its rows (dense
    insertion) and of its columns (only the scores above each column's current ``k``-th best
    are gathered). Blocks are visited diagonal by diagonal, so each row meets its own block
    first: with ``order`` grouping likely neighbours (rows sorted by label), heaps fill with good
    candidates early and later blocks are mostly rejected by one comparison per score.

    Parallelism: one Python thread per torch thread, each multiplying and inserting whole
    blocks with single-threaded torch and FAISS (both release the GIL); a lock per block of
    rows keeps two threads off the same heaps. (One multi-threaded product at a time would
    leave its idle OpenMP threads spinning against the insertions.) Torch's thread count is
    set to 1 for the duration and restored.

    Args:
        x: ``(N, D)`` float32, C-contiguous (L2-normalise first for cosine).
        k: Neighbours per row, ``1 ≤ k < N``.
        keys: ``(N,)`` int64; rows sharing a key never see each other (beyond the row itself).
        order: ``(N,)`` permutation of the rows to lay out blocks by; only speed depends on it.
        block_size: Side of the square score blocks (≤ 32768).
        chunk_size: Rows per yielded chunk.

    Yields:
        ``(rows, scores, ids)`` once all blocks are done, chunk by chunk (in ``order``):
        ``rows`` ``(n,)`` positions in ``x``; ``scores`` ``(n, k)`` float32 and ``ids``
        ``(n, k)`` int64 positions in ``x``. Memory: ``O(N · k)`` heaps plus one block per
        thread.
    """
    n = len(x)
    block_size = min(block_size, blocks.MAX_BLOCK)
    if order is not None:
        x = np.ascontiguousarray(x[order])
        keys = None if keys is None else np.asarray(keys)[order]
    scores = np.empty((n, k), dtype=np.float32)
    ids = np.empty((n, k), dtype=np.int64)
    heaps = _Heaps(scores, ids)
    xt = torch.from_numpy(x)
    key_t = _keys(keys)
    starts = range(0, n, block_size)
    nb = len(starts)
    pairs = iter([(i, i + d) for d in range(nb) for i in range(nb - d)])  # by diagonal
    next_pair = threading.Lock()
    block_locks = [threading.Lock() for _ in starts]
    threads = max(1, min(torch.get_num_threads(), nb))

    def work() -> None:
        _faiss().omp_set_num_threads(1)
        torch.set_num_threads(1)
        buffer = torch.empty(block_size * block_size, dtype=torch.float32)
        while True:
            with next_pair:
                pair = next(pairs, None)
            if pair is None:
                return
            i, j = (b * block_size for b in pair)
            rows, cols = xt[i : i + block_size], xt[j : j + block_size]
            block = _block_view(buffer, len(rows), len(cols))
            torch.mm(rows, cols.T, out=block)
            if key_t is not None:
                _mask_keys(block, key_t[i : i + len(rows)], key_t[j : j + len(cols)])
            values = block.numpy()
            with block_locks[pair[0]], block_locks[pair[1]] if i != j else nullcontext():
                if i == j:
                    np.fill_diagonal(values, -np.inf)
                    _seed_diagonal(heaps, block, i)
                    heaps.add(values, i, j)
                else:
                    heaps.add(values, i, j)
                    _add_columns(heaps, values, i, j)

    old_threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(threads) as pool, _faiss_threads(1):
            for done in [pool.submit(work) for _ in range(threads)]:
                done.result()
    finally:
        torch.set_num_threads(old_threads)
    heaps.heaps.reorder()
    for start in range(0, n, chunk_size):
        part = slice(start, start + chunk_size)
        chunk_ids = ids[part].copy()
        valid = chunk_ids >= 0
        if order is not None:
            chunk_ids[valid] = order[chunk_ids[valid]]
        chunk_scores = np.where(valid, scores[part], np.float32(-np.inf))
        rows = np.arange(start, min(start + chunk_size, n)) if order is None else order[part]
        yield (rows, *_sort_ties(chunk_scores, chunk_ids))


def search_self(
    x: np.ndarray,
    k: int,
    *,
    keys: np.ndarray | None = None,
    order: np.ndarray | None = None,
    block_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`search_self_chunks` gathered into ``(scores, ids)``, both ``(N, k)``.

    Rows come back in the original order; ``order`` only affects speed.
    """
    scores = np.empty((len(x), k), dtype=np.float32)
    ids = np.empty((len(x), k), dtype=np.int64)
    for rows, chunk_scores, chunk_ids in search_self_chunks(
        x, k, keys=keys, order=order, block_size=block_size
    ):
        scores[rows], ids[rows] = chunk_scores, chunk_ids
    return scores, ids


def _seed_diagonal(heaps: _Heaps, block: torch.Tensor, start: int) -> None:
    """Fill empty heaps from the tiles along a diagonal block's own diagonal, then hide them.

    Every score offered to a heap that is not full costs an insertion; filling it from the
    tile of rows placed next to it first sets a threshold that rejects most of the rest.
    """
    size = len(block)
    tile = max(256, 2 * heaps.heaps.k)
    if tile >= size:
        return
    values = block.numpy()
    for t in range(0, size, tile):
        part = values[t : t + tile, t : t + tile]
        heaps.add(np.ascontiguousarray(part), start + t, start + t)
        part[...] = -np.inf


def _add_columns(
    heaps: _Heaps, values: np.ndarray, row0: int, col0: int, first: int = 0, last: int | None = None
) -> None:
    """Offer column ``c`` of ``values`` (ids ``row0 + r``) to heap ``col0 + c``, for columns
    ``first ≤ c < last``.

    Only scores above the heap's current worst are gathered, grouped per column (padded
    with ``-inf``) and inserted: no transposed copy of the block.
    """
    last = values.shape[1] if last is None else last
    part = values[:, first:last]
    c = part.shape[1]
    col0 += first
    worst = np.ascontiguousarray(heaps.scores[col0 : col0 + c, 0])
    hits = np.flatnonzero(part > worst)
    if len(hits) == 0:
        return
    row, col = np.divmod(hits, c)
    by_col = np.argsort(col.astype(np.int16), kind="stable")  # radix; rows stay ascending
    row, col = row[by_col], col[by_col]
    vals = part[row, col]
    count = np.bincount(col, minlength=c)
    present = np.flatnonzero(count)
    count = count[present]
    width = int(count.max())
    slot = np.arange(len(col)) - np.repeat(np.cumsum(count) - count, count)
    flat = np.repeat(np.arange(len(present)) * width, count) + slot
    padded = np.full(len(present) * width, -np.inf, dtype=np.float32)
    padded_ids = np.full(len(present) * width, NO_NEIGHBOUR, dtype=np.int64)
    padded[flat] = vals
    padded_ids[flat] = row + row0
    subset = np.ascontiguousarray(present + col0, dtype=np.int64)
    heaps.heaps.addn_query_subset_with_ids(
        len(subset),
        _faiss().swig_ptr(subset),
        width,
        _faiss().swig_ptr(padded),
        _faiss().swig_ptr(padded_ids),
        width,
    )


def search_blocks(
    query: np.ndarray | torch.Tensor,
    gallery: np.ndarray | torch.Tensor,
    k: int,
    *,
    query_keys: np.ndarray | torch.Tensor | None = None,
    gallery_keys: np.ndarray | torch.Tensor | None = None,
    block_size: int = 2048,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` gallery rows of each query row by inner product.

    Args:
        query: ``(Nq, D)`` float32, C-contiguous (may already be a tensor on ``device``).
        gallery: ``(Ng, D)`` float32, C-contiguous (may already be a tensor on ``device``).
        k: Neighbours per query, ``1 ≤ k``.
        query_keys: ``(Nq,)`` int64; with ``gallery_keys``, pairs with equal keys are skipped.
        gallery_keys: ``(Ng,)`` int64.
        block_size: Gallery rows scored per product (CPU).
        device: ``"cpu"`` or a CUDA device.

    Returns:
        ``(scores, ids)``, both ``(Nq, k)``: float32 and int64 positions in ``gallery``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return _search_cuda(query, gallery, k, query_keys, gallery_keys, device)
    if k > HEAP_MAX_K:
        return _search_partition(query, gallery, k, query_keys, gallery_keys)
    scores = np.empty((len(query), k), dtype=np.float32)
    ids = np.empty((len(query), k), dtype=np.int64)
    heaps = _Heaps(scores, ids)
    q = torch.as_tensor(query)
    g = torch.as_tensor(gallery)
    q_keys, g_keys = _keys(query_keys), _keys(gallery_keys)
    # As in search_self_chunks: single-threaded torch in one Python thread per torch thread,
    # each owning a slice of the query rows (and so of the heaps).
    threads = max(1, min(torch.get_num_threads(), len(q) // 64))
    bounds = np.linspace(0, len(q), threads + 1).astype(int)

    def work(first: int, last: int) -> None:
        _faiss().omp_set_num_threads(1)
        torch.set_num_threads(1)
        rows = q[first:last]
        row_keys = None if q_keys is None else q_keys[first:last]
        buffer = torch.empty(len(rows) * min(block_size, len(g)), dtype=torch.float32)
        for j in range(0, len(g), block_size):
            cols = g[j : j + block_size]
            block = _block_view(buffer, len(rows), len(cols))
            torch.mm(rows, cols.T, out=block)
            _mask_keys(block, row_keys, None if g_keys is None else g_keys[j : j + len(cols)])
            heaps.add(block.numpy(), first, j)

    old_threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(threads) as pool, _faiss_threads(1):
            jobs = [pool.submit(work, int(a), int(b)) for a, b in pairwise(bounds)]
            for job in jobs:
                job.result()
    finally:
        torch.set_num_threads(old_threads)
    return heaps.finish()


def _search_cuda(
    query: np.ndarray | torch.Tensor,
    gallery: np.ndarray | torch.Tensor,
    k: int,
    query_keys: np.ndarray | torch.Tensor | None,
    gallery_keys: np.ndarray | torch.Tensor | None,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    g = torch.as_tensor(gallery, device=device)
    q_all = torch.as_tensor(query, device=device)
    q_keys_all, g_keys = _keys(query_keys, device), _keys(gallery_keys, device)
    kk = min(k, len(g))
    scores = np.full((len(q_all), k), -np.inf, dtype=np.float32)
    ids = np.full((len(q_all), k), NO_NEIGHBOUR, dtype=np.int64)
    rows = blocks.rows_per_block(blocks.CUDA_BLOCK_ELEMENTS, len(g))
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # exact float32 products
    try:
        for start in range(0, len(q_all), rows):
            q = q_all[start : start + rows]
            block = torch.mm(q, g.T)
            q_keys = None if q_keys_all is None else q_keys_all[start : start + rows]
            _mask_keys(block, q_keys, g_keys)
            top_scores, top_ids = torch.topk(block, kk, dim=1)
            _lowest_ids_at_cut(block, top_scores, top_ids)
            del block
            # Order by id, then stably by score: ties come out by gallery position.
            order = torch.argsort(top_ids, dim=1)
            top_scores, top_ids = top_scores.gather(1, order), top_ids.gather(1, order)
            order = torch.sort(top_scores, dim=1, descending=True, stable=True).indices
            top_scores, top_ids = top_scores.gather(1, order), top_ids.gather(1, order)
            top_ids = torch.where(torch.isinf(top_scores), NO_NEIGHBOUR, top_ids)
            scores[start : start + len(q), :kk] = top_scores.cpu().numpy()
            ids[start : start + len(q), :kk] = top_ids.cpu().numpy()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return scores, ids


def _lowest_ids_at_cut(
    block: torch.Tensor, top_scores: torch.Tensor, top_ids: torch.Tensor
) -> None:
    """Where a row's ``k``-th score is tied beyond the cut, keep the lowest tied ids (in place).

    ``torch.topk`` returns an arbitrary subset of equal scores at the cut; the CPU paths keep
    the lowest gallery positions. Only rows with such a straddling tie are recomputed.

    Args:
        block: ``(R, Ng)`` scores of ``R`` query rows.
        top_scores: ``(R, kk)`` ``torch.topk(block, kk)`` values (sorted descending).
        top_ids: ``(R, kk)`` its indices; both are rewritten for the straddling rows.
    """
    kk = top_scores.shape[1]
    cut = top_scores[:, -1:]  # (R, 1) k-th score
    # (a -inf cut is a short list: those slots become NO_NEIGHBOUR whichever ids they hold)
    straddle = ((block == cut).sum(dim=1) > (top_scores == cut).sum(dim=1)) & (
        cut[:, 0] > -torch.inf
    )
    rows = straddle.nonzero().squeeze(1)
    if rows.numel() == 0:
        return
    sub, cut = block[rows], cut[rows]
    above = sub > cut
    tied = sub == cut
    need = kk - above.sum(dim=1, keepdim=True)  # tied ids to keep, lowest first
    keep = above | (tied & (tied.cumsum(dim=1) <= need))  # exactly kk per row
    ids = keep.nonzero()[:, 1].view(len(rows), kk)  # ascending positions
    top_ids[rows] = ids
    top_scores[rows] = sub.gather(1, ids)


def _search_partition(
    query: np.ndarray | torch.Tensor,
    gallery: np.ndarray | torch.Tensor,
    k: int,
    query_keys: np.ndarray | torch.Tensor | None,
    gallery_keys: np.ndarray | torch.Tensor | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Deep top-``k`` by partitioning whole score rows (``np.argpartition``), then sorting the
    ``k`` survivors by (score, id). Rows whose ``k``-th score is tied beyond the cut take the
    lowest ids among the tied, as the heaps do."""
    q, g = torch.as_tensor(query), torch.as_tensor(gallery)
    n_gallery = len(g)
    kk = min(k, n_gallery)
    scores = np.full((len(q), k), -np.inf, dtype=np.float32)
    ids = np.full((len(q), k), NO_NEIGHBOUR, dtype=np.int64)
    g_keys = _keys(gallery_keys)
    step = blocks.rows_per_block(blocks.PARTITION_ELEMENTS, n_gallery)
    for start in range(0, len(q), step):
        block = torch.mm(q[start : start + step], g.T)
        if g_keys is not None:
            row_keys = None if query_keys is None else query_keys[start : start + step]
            _mask_keys(block, _keys(row_keys), g_keys)
        values = block.numpy()
        top = np.argpartition(values, n_gallery - kk, axis=1)[:, n_gallery - kk :]
        keys = np.sort(_order_keys(np.take_along_axis(values, top, axis=1), top), axis=1)
        top = _ids_of(keys)  # positions: never -1 here
        top_values = np.take_along_axis(values, top, axis=1)
        cut = top_values[:, -1]
        tied = np.flatnonzero(
            (values == cut[:, None]).sum(axis=1) > (top_values == cut[:, None]).sum(axis=1)
        )
        for r in tied:  # the cut fell inside a run of equal scores: keep the lowest ids
            above = np.flatnonzero(values[r] > cut[r])
            above = above[np.lexsort((above, -values[r, above]))]
            at_cut = np.flatnonzero(values[r] == cut[r])[: kk - len(above)]
            top[r] = np.concatenate([above, at_cut])
            top_values[r] = values[r, top[r]]
        rows = slice(start, start + len(values))
        scores[rows, :kk] = top_values
        ids[rows, :kk] = np.where(np.isinf(top_values), NO_NEIGHBOUR, top)
    return scores, ids


def symmetric_fits(n: int, k: int) -> bool:
    """Whether leave-one-out heaps for ``n`` rows of ``k`` neighbours fit the budget (and
    are shallow enough for heaps to beat partitioning)."""
    return k <= HEAP_MAX_K and n * k * 12 <= blocks.SYMMETRIC_BUDGET_BYTES
