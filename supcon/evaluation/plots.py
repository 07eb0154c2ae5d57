"""Evaluation figures (matplotlib, Agg canvas): recall@k curves and retrieval grids.

Figures are built with the object-oriented API (no ``pyplot`` state, no global backend
change). In a notebook a returned ``Figure`` displays once the inline backend is active
(``%matplotlib inline``, or any ``pyplot`` import); scripts and servers without a display
save PNG files.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from supcon.io import atomic_write_bytes

CORRECT, WRONG, QUERY = "#1a9850", "#d73027", "#4575b4"


def save_png(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Render ``figure`` to PNG and write it atomically."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def recall_curve(
    curves: Mapping[str, Mapping[int, float]],
    *,
    title: str = "recall@k",
    path: str | Path | None = None,
) -> Figure:
    """Recall@k against k (log-2 axis), one line per model or split.

    Args:
        curves: ``{name: {k: recall}}``, e.g. ``{"run A": {1: 0.8, 2: 0.9, 4: 0.95}}``.
        title: Axes title.
        path: Also write the PNG here.

    Returns:
        The figure.
    """
    figure = Figure(figsize=(5, 3.5))
    ax = figure.add_subplot()
    for name, points in curves.items():
        ks = sorted(points)
        ax.plot(ks, [points[k] for k in ks], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    figure.tight_layout()
    if path is not None:
        save_png(figure, path)
    return figure


def _as_image(image: Any) -> np.ndarray:
    """PIL image, ``(H, W[, C])`` array or ``(C, H, W)`` tensor → ``(H, W, 3)`` floats in [0, 1]."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.max(initial=0) > 1.0:
        arr = arr / 255.0
    lo, hi = arr.min(initial=0), arr.max(initial=1)
    if lo < 0:  # normalised tensors: stretch for display
        arr = (arr - lo) / max(hi - lo, 1e-6)
    return np.clip(arr, 0, 1)


def retrieval_grid(
    query_ids: Sequence[int],
    neighbour_ids: np.ndarray,
    correct: np.ndarray,
    load_image: Callable[[int], Any],
    *,
    load_query: Callable[[int], Any] | None = None,
    scores: np.ndarray | None = None,
    captions: Callable[[int], str] | None = None,
    path: str | Path | None = None,
    cell: float = 1.3,
) -> Figure:
    """Each query (left, blue) with its top-k neighbours framed green (same label) or red.

    Args:
        query_ids: ``Q`` query item ids.
        neighbour_ids: ``(Q, k)`` gallery item ids (``-1``: none, left blank).
        correct: ``(Q, k)`` bool, whether each neighbour shares the query's label.
        load_image: Gallery item id → image (PIL, ``(H, W[, C])`` array or ``(C, H, W)`` tensor).
        load_query: Query item id → image (default: ``load_image``).
        scores: ``(Q, k)`` similarities, written under each neighbour.
        captions: Item id → short text under each image (e.g. its class name).
        path: Also write the PNG here.
        cell: Inches per image.

    Returns:
        The figure.
    """
    neighbour_ids = np.asarray(neighbour_ids)
    correct = np.asarray(correct, dtype=bool)
    rows, k = neighbour_ids.shape
    if len(query_ids) != rows or correct.shape != (rows, k):
        raise ValueError(
            f"query_ids ({len(query_ids)}), neighbour_ids {neighbour_ids.shape} and correct "
            f"{correct.shape} must agree"
        )
    load_query = load_query or load_image
    figure = Figure(figsize=(cell * (k + 1), cell * 1.25 * max(rows, 1)))
    axes = figure.subplots(max(rows, 1), k + 1, squeeze=False)
    for r, query in enumerate(query_ids):
        _show(axes[r, 0], load_query(int(query)), QUERY, captions and captions(int(query)))
        axes[r, 0].set_ylabel("query", fontsize=8)
        for c in range(k):
            ax, item = axes[r, c + 1], int(neighbour_ids[r, c])
            if item < 0:
                ax.axis("off")
                continue
            text = captions(item) if captions else ""
            if scores is not None:
                text = f"{text} {scores[r, c]:.3f}".strip()
            _show(ax, load_image(item), CORRECT if correct[r, c] else WRONG, text)
    for c in range(k):
        axes[0, c + 1].set_title(f"#{c + 1}", fontsize=8)
    figure.tight_layout()
    if path is not None:
        save_png(figure, path)
    return figure


def _show(ax: Any, image: Any, colour: str, caption: str | None) -> None:
    ax.imshow(_as_image(image))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(4)
    if caption:
        ax.set_xlabel(caption, fontsize=7)
