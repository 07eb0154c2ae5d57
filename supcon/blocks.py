"""How big each blocked computation's blocks are: every memory budget of the package, in one table.

Large similarity matrices are never materialised whole: the loss works in tiles of anchor rows,
the miner in blocks of anchors, k-NN search and the metrics in query chunks, few-shot in batches
of episodes, row normalisation in float64 blocks. The budgets below bound those blocks; they
change speed and peak memory only, never a result. Modules read them as ``blocks.NAME`` at call
time, so a test may shrink one with ``monkeypatch.setattr(blocks, NAME, ...)``.
"""

from __future__ import annotations

from collections.abc import Mapping

# --- Loss (supcon.losses) --------------------------------------------------------------------
#: ``N_a · M`` at which ``tiled=None`` switches the loss to the tiled path (a 512 × 512 matrix).
AUTO_TILE_ELEMENTS = 512 * 512
#: Similarities per loss tile by device type when ``block_size`` is not given: 16 MiB of
#: float32 on the CPU (within the last-level cache; measured as fast as smaller tiles on an idle
#: 2-core machine and faster under load, with fewer parallel regions), 256 MiB on CUDA (few,
#: large kernels).
TILE_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 26}
#: Fewest rows per default tile. Every tile adds ``G^T z_block`` into the whole ``(M, D)``
#: gradient buffer, so with very thin tiles (huge M) that read-modify-write of ``M·D`` floats
#: per tile, not the tile itself, dominates memory traffic; ``b ≳ D`` keeps it secondary.
MIN_TILE_ROWS = 128
#: Anchor rows per chunk of the tiled loss's per-anchor bookkeeping.
CHUNK_ROWS = 4096

# --- Miner (supcon.miners) -------------------------------------------------------------------
#: Similarities per (anchors, candidates) mining block by device type: 16 MiB float32 blocks on
#: the CPU are faster than one big matrix (cache, fewer page faults); accelerators prefer fewer,
#: larger blocks.
MINER_BLOCK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 25}

# --- Search and metrics (supcon.evaluation) --------------------------------------------------
#: Leave-one-out uses the symmetric layout while its heaps (12 bytes per row and neighbour)
#: fit in this many bytes; larger ``N · k`` falls back to query chunks.
SYMMETRIC_BUDGET_BYTES = 1 << 30
#: CUDA scores at most this many query × gallery pairs at once (1 GiB of float32).
CUDA_BLOCK_ELEMENTS = 1 << 28
#: Rows × gallery scores partitioned at once on the CPU (64 MiB of float32).
PARTITION_ELEMENTS = 1 << 24
#: Largest leave-one-out block side (column offsets are radix-sorted as int16).
MAX_BLOCK = 1 << 15
#: Query-chunk neighbour lists hold at most this many entries (≈ 40 bytes each while scored).
CHUNK_ELEMENTS = 1 << 22
#: A batch of few-shot episodes holds at most this many gathered embedding values (≈ 64 MB).
BATCH_ELEMENTS = 1 << 24
#: Rows L2-normalised per float64 block (bounds the temporary copy to ~64 MiB at D = 512).
UNIT_BLOCK_ROWS = 1 << 14


def for_device(budgets: Mapping[str, int], device_type: str) -> int:
    """The budget of ``device_type`` in a by-device table (other accelerators: CUDA's)."""
    return budgets.get(device_type, budgets["cuda"])


def rows_per_block(budget: int, row_elements: int, *, at_least: int = 1) -> int:
    """Rows of ``row_elements`` values that fit in ``budget`` values, and at least ``at_least``."""
    return max(at_least, budget // max(row_elements, 1))
