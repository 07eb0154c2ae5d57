"""``train.on_nonfinite: stop | skip``: bad steps change nothing, are counted and reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import supcon.training.setup as run_setup
from supcon import SupConLoss
from supcon.builders import build_batch_sampler
from supcon.data import load_splits
from supcon.training import TrainingError, train
from supcon.training.checkpoint import load_checkpoint
from supcon.training.guard import NonFiniteGuard, describe_batch, first_nonfinite, step_problem
from tests.training.helpers import tiny


class NanAtCalls(SupConLoss):
    """SupCon whose value is NaN at the given (1-based) calls."""

    def __init__(self, calls: set[int]) -> None:
        super().__init__(0.1)
        self.calls, self.bad = 0, calls

    def forward(self, *args, **kwargs) -> torch.Tensor:
        self.calls += 1
        loss = super().forward(*args, **kwargs)
        return loss * float("nan") if self.calls in self.bad else loss


def batch_ids(config, step: int) -> list[int]:
    """The sample ids of global step ``step`` (1-based) in epoch 0, from the sampler itself."""
    train_split, _ = load_splits(config.data, config.train.seed)
    batches = build_batch_sampler(config, train_split.labels)
    batches.set_epoch(0)
    return list(batches)[step - 1]


def test_skipped_step_leaves_model_optimizer_scheduler_untouched(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # NaN at steps 3 and 4, at most 2 in a row: step 3 is skipped, step 4 stops the run.
    monkeypatch.setattr(run_setup, "build_loss", lambda config, **_: NanAtCalls({3, 4}))
    config = tiny(
        images,
        train={"checkpoint_every": 1, "on_nonfinite": "skip", "max_nonfinite_steps": 2},
    )
    with pytest.raises(
        TrainingError, match=r"loss became nan at step 4 .*2 non-finite steps in a row"
    ):
        train(config, tmp_path, progress=False)
    after_skip = load_checkpoint(tmp_path / "checkpoints" / "last.pt")  # written after step 3
    before = load_checkpoint(tmp_path / "checkpoints" / "prev.pt")  # written after step 2
    assert (before["step"], after_skip["step"]) == (2, 3)
    assert after_skip["progress"]["skipped_steps"] == 1
    assert after_skip["progress"]["nonfinite_in_row"] == 1
    for name, tensor in before["model"].items():  # weights and BatchNorm statistics
        assert torch.equal(after_skip["model"][name], tensor), name
    assert after_skip["scheduler"] == before["scheduler"]
    for key, slots in before["optimizer"]["state"].items():
        for slot, value in slots.items():
            assert torch.equal(after_skip["optimizer"]["state"][key][slot], value), slot

    warning = capsys.readouterr().err
    expected = ", ".join(str(i) for i in batch_ids(config, 3)[:8])
    assert f"loss became nan at step 3 (batch sample ids {expected}" in warning
    assert "step skipped (1 in a row" in warning


def test_isolated_bad_steps_are_skipped_and_the_run_finishes(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_setup, "build_loss", lambda config, **_: NanAtCalls({2, 5}))
    config = tiny(images, train={"on_nonfinite": "skip", "max_nonfinite_steps": 2})
    metrics = train(config, tmp_path, progress=False)
    assert 0.0 <= metrics["recall@1"] <= 1.0
    final = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["progress"]
    assert (final["step"], final["skipped_steps"], final["nonfinite_in_row"]) == (6, 2, 0)


def test_stop_reports_the_step_and_its_sample_ids(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_setup, "build_loss", lambda config, **_: NanAtCalls({2}))
    config = tiny(images)
    with pytest.raises(TrainingError) as caught:
        train(config, tmp_path, progress=False)
    ids = batch_ids(config, 2)
    message = str(caught.value)
    assert f"at step 2 (batch sample ids {', '.join(str(i) for i in ids[:8])}, …" in message
    assert "train.on_nonfinite=skip" in message and "No checkpoint kept" in message


def test_step_problem_checks_loss_gradients_and_buffers() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    model(torch.randn(4, 3)).sum().backward()
    assert step_problem(torch.tensor(1.0), model, check_grads=True) is None
    assert step_problem(torch.tensor(float("inf")), model, check_grads=True) == "loss became inf"
    model[0].bias.grad[1] = float("nan")
    assert "gradient of 0.bias" in step_problem(torch.tensor(1.0), model, check_grads=True)
    assert step_problem(torch.tensor(1.0), model, check_grads=False) is None  # scaler's job
    model[1].running_var[0] = float("inf")
    assert "buffer 1.running_var" in step_problem(torch.tensor(1.0), model, check_grads=False)


def test_first_nonfinite_and_guard_counting() -> None:
    named = [("a", torch.ones(3)), ("b", torch.tensor([1.0, float("nan")])), ("c", torch.ones(1))]
    assert first_nonfinite(named) == "b" and first_nonfinite(named[:1]) is None
    assert first_nonfinite([("big", torch.full((4,), 3e38))]) is None  # huge but finite
    guard = NonFiniteGuard("skip", max_in_row=2)
    assert guard.bad_step("loss became nan", 7, [1, 2]) is None
    guard.good_step()
    assert guard.bad_step("loss became nan", 9, [1, 2]) is None
    assert re.search(r"step 10 .*2 non-finite steps in a row", guard.bad_step("x", 10, [3]))
    assert NonFiniteGuard("stop", 5).bad_step("loss became nan", 1, [0]) is not None
    assert describe_batch(list(range(10)), shown=3) == "batch sample ids 0, 1, 2, … (10 in all)"


def test_first_nonfinite_names_the_bad_tensor_and_ignores_overflowing_sums() -> None:
    from supcon.training.guard import first_nonfinite

    ok_ = torch.ones(10)
    big = torch.full((4,), 3e38)  # finite, but its sum overflows float32
    half = torch.full((3,), 6e4, dtype=torch.float16)  # likewise in float16
    for bad_value in (float("nan"), float("inf"), -float("inf")):
        bad = torch.ones(5)
        bad[2] = bad_value
        assert first_nonfinite([("ok", ok_), ("big", big), ("bad", bad)]) == "bad"
    assert first_nonfinite([("ok", ok_), ("big", big), ("half", half)]) is None
    assert first_nonfinite([]) is None
