"""Plots are written as real PNG files and reflect what they are given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from supcon.evaluation.plots import CORRECT, WRONG, recall_curve, retrieval_grid

PNG = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_size: tuple[int, int]) -> None:
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as image:
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]


def test_recall_curve_png(tmp_path: Path) -> None:
    figure = recall_curve(
        {"a": {1: 0.5, 2: 0.7, 4: 0.9}, "b": {1: 0.6, 2: 0.8, 4: 0.95}},
        path=tmp_path / "curve.png",
    )
    assert_png(tmp_path / "curve.png", (300, 200))
    assert len(figure.axes[0].lines) == 2
    assert figure.axes[0].lines[0].get_ydata().tolist() == [0.5, 0.7, 0.9]


def test_retrieval_grid_frames_correct_green_and_wrong_red(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = {
        0: Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)),  # PIL
        1: rng.random((20, 20)),  # grey array
        2: torch.rand(3, 20, 20),  # tensor, channels first
        3: torch.randn(1, 20, 20),  # normalised tensor
    }
    neighbours = np.array([[1, 2, 3], [0, 3, -1]])
    correct = np.array([[True, False, True], [False, True, False]])
    figure = retrieval_grid(
        [0, 1],
        neighbours,
        correct,
        images.__getitem__,
        scores=np.full((2, 3), 0.5),
        captions=str,
        path=tmp_path / "grid.png",
    )
    assert_png(tmp_path / "grid.png", (300, 150))
    axes = np.array(figure.axes).reshape(2, 4)
    edge = lambda ax: ax.spines["top"].get_edgecolor()  # noqa: E731
    from matplotlib.colors import to_rgba

    assert edge(axes[0, 1]) == to_rgba(CORRECT) and edge(axes[0, 2]) == to_rgba(WRONG)
    assert not axes[1, 3].axison  # no neighbour: blank


def test_grid_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="must agree"):
        retrieval_grid([0], np.zeros((2, 3), int), np.zeros((2, 3), bool), lambda i: None)
