"""A batch the data cannot form is reported before any weights load, with the largest that fits."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from supcon.cli import main
from supcon.samplers import MPerClassSampler
from supcon.samplers.fit import largest_m_per_class_batch, m_per_class_problem
from tests.images import make_image_folder

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "folder_resnet50.yaml"


def sampler_accepts(labels: np.ndarray, batch_size: int, m: int, replicas: int) -> bool:
    """The reference: does the sampler itself (rank 0) accept the global batch?"""
    try:
        MPerClassSampler(
            labels, m=m, batch_size=batch_size // replicas, num_replicas=replicas, rank=0
        )
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(("classes", "m", "replicas"), [(4, 4, 1), (7, 2, 1), (9, 4, 2), (5, 3, 4)])
def test_largest_batch_is_the_sampler_limit(classes: int, m: int, replicas: int) -> None:
    labels = np.repeat(np.arange(classes), 10)
    best = largest_m_per_class_batch(classes, m, replicas)
    step = m * replicas
    feasible = [
        b for b in range(step, 4 * classes * m + 1, step) if sampler_accepts(labels, b, m, replicas)
    ]
    assert best == (max(feasible) if feasible else 0)


def test_problem_names_the_fits_by_hand() -> None:
    labels = np.repeat(np.arange(4), [9, 10, 10, 9])  # 4 classes x 12 images, 20 % held out
    message = m_per_class_problem(labels, 256, 4)
    assert message == (
        "train.batch_size=256 with sampler.args.m=4 needs 64 classes per batch, but the training "
        "split has 4 (9–10 images each): use train.batch_size=16 (m=4) or "
        "train.batch_size=32 sampler.args.m=8 (every class has ≥ 8 images), or add classes"
    )
    for suggestion in ((16, 4), (32, 8)):
        assert sampler_accepts(labels, *suggestion, replicas=1)
    assert m_per_class_problem(labels, 16, 4) is None
    assert m_per_class_problem(np.repeat(np.arange(3), 3), 64, 4) == (
        "train.batch_size=64 with sampler.args.m=4 needs 16 classes per batch, but the training "
        "split has 3 (3 images each): use train.batch_size=12 (m=4), or add classes"
    )


def test_first_run_on_a_small_folder_says_what_fits_before_loading_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The own-images recipe on 4 classes x 12 images: one line, exit 2, no model built."""
    import supcon.training.setup as run_setup

    make_image_folder(tmp_path / "images", classes=4, per_class=12)
    monkeypatch.setattr(run_setup, "build_model", lambda *a, **k: pytest.fail("model built first"))
    start = time.perf_counter()
    code = main(
        ["train", str(RECIPE), f"data.root={tmp_path / 'images'}", "--out", str(tmp_path / "run"),
         "--no-progress"]
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "train.batch_size=16 (m=4)" in err[0] and "sampler.args.m=8" in err[0]
    assert elapsed < 5
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
