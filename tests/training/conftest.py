"""Training tests run their in-process math on one thread (tiny tensors; shared CI cores)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory):
    """An image folder of 4 classes × 10 synthetic images."""
    from tests.images import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("data") / "images", classes=4, per_class=10)
