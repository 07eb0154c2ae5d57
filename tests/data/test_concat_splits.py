"""Joining two splits of one kind (``eval --split all``), for files and in-memory images alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supcon.data.digits import TensorSplit
from supcon.data.sources import FileSplit
from supcon.data.views import concat_splits


def test_file_splits_join_paths_and_labels_and_drop_the_flags() -> None:
    first = FileSplit(("a.png", "b.png"), np.array([0, 1]), ("x", "y"), mode="L")
    second = FileSplit(("c.png",), np.array([1]), ("x", "y"), is_query=np.array([True]), mode="L")
    joined = concat_splits(first, second)
    assert isinstance(joined, FileSplit)
    assert joined.paths == ("a.png", "b.png", "c.png")
    assert joined.labels.tolist() == [0, 1, 1] and joined.class_names == ("x", "y")
    assert joined.is_query is None and joined.is_gallery is None and joined.mode == "L"


def test_tensor_splits_join_images_in_order() -> None:
    first = TensorSplit(torch.zeros(2, 1, 4, 4), np.array([0, 0]), ("a", "b"))
    second = TensorSplit(torch.ones(3, 1, 4, 4), np.array([1, 1, 0]), ("a", "b"))
    joined = concat_splits(first, second)
    assert len(joined) == 5 and joined.labels.tolist() == [0, 0, 1, 1, 0]
    assert joined.images[:2].sum() == 0 and bool((joined.images[2:] == 1).all())
    assert joined.class_names == ("a", "b")


def test_splits_of_different_kinds_are_refused() -> None:
    files = FileSplit(("a.png",), np.array([0]), ("a",))
    tensors = TensorSplit(torch.zeros(1, 1, 2, 2), np.array([0]), ("a",))
    with pytest.raises(TypeError, match="cannot join"):
        concat_splits(files, tensors)
