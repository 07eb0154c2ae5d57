"""CUDA paths: fp16 with a gradient scaler, bf16, channels-last, compile, CUDA RNG replay.

Skipped without CUDA (``gpu`` marker, see ``tests/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from supcon.training import train
from supcon.training.gradcache import cached_backward
from tests.training.helpers import rows, tiny
from tests.training.test_gradcache import VIEWS, loss_on

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize(
    "settings",
    [
        {"precision": "fp16", "channels_last": True},
        {"precision": "bf16", "micro_batch_size": 4},
        {"precision": "bf16", "compile": True},
    ],
)
def test_cuda_training_matches_a_cpu_float32_run(
    images: Path, tmp_path: Path, settings: dict
) -> None:
    """The first loss (same weights, same batch) to half-precision rounding; the held-out
    recall@1 within a margin of the same run in float32 on the CPU."""
    config = tiny(images, train={"device": "cuda", **settings})
    metrics = train(config, tmp_path / "cuda", progress=False)
    cpu = tiny(
        images, train={"device": "cpu", "micro_batch_size": settings.get("micro_batch_size")}
    )
    cpu_metrics = train(cpu, tmp_path / "cpu", progress=False)
    losses = [float(r["loss"]) for r in rows(tmp_path / "cuda" / "log.csv")]
    cpu_losses = [float(r["loss"]) for r in rows(tmp_path / "cpu" / "log.csv")]
    assert len(losses) == len(cpu_losses)
    assert losses[0] == pytest.approx(cpu_losses[0], rel=2e-2)
    assert losses == pytest.approx(cpu_losses, rel=0.2)
    assert abs(metrics["recall@1"] - cpu_metrics["recall@1"]) <= 0.2


def test_gradcache_replays_cuda_dropout() -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.Dropout(0.5), nn.Linear(32, 8)).to(device)
    inputs = torch.randn(24 * VIEWS, 12, device=device)
    labels = torch.arange(24, device=device) % 4
    torch.cuda.manual_seed(5)
    model.zero_grad()
    loss_on(labels)(torch.cat([model(c) for c in inputs.split(12)])).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.cuda.manual_seed(5)
    model.zero_grad()
    cached_backward(model, inputs.split(12), loss_on(labels))
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], msg=name)
