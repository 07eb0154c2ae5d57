"""The optimizer uses PyTorch's fused kernel where it exists, with the same update rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from supcon.training.optim import create_optimizer, fused_if_available


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_fused_steps_match_the_default_implementation(name: str) -> None:
    fast, plain = _model(), _model()
    optimizer = create_optimizer(fast, name, lr=0.01, weight_decay=0.05)
    assert optimizer.defaults["fused"] is True  # this torch has CPU fused kernels
    slow = create_optimizer(plain, name, lr=0.01, weight_decay=0.05)
    for group in slow.param_groups:  # the same groups, on the per-tensor implementation
        group["fused"] = None
    data = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(5):
        for model, opt in ((fast, optimizer), (plain, slow)):
            opt.zero_grad()
            model(data).square().mean().backward()
            opt.step()
    pairs = zip(fast.named_parameters(), plain.named_parameters(), strict=True)
    for (name_fast, a), (_, b) in pairs:
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name_fast
    assert not torch.equal(fast[0].weight, _model()[0].weight)  # the steps did move it


def test_falls_back_where_there_is_no_fused_kernel() -> None:
    class NoFusedKernel(torch.optim.AdamW):  # what PyTorch < 2.4 does with CPU parameters
        def __init__(self, params, fused: bool | None = None, **options) -> None:
            if fused:
                raise RuntimeError("`fused=True` requires all the params to be CUDA tensors")
            super().__init__(params, **options)

    params = [nn.Parameter(torch.ones(3))]
    optimizer = fused_if_available(NoFusedKernel, [{"params": params}], lr=0.1)
    assert not optimizer.defaults.get("fused") and optimizer.defaults["lr"] == 0.1
    params[0].grad = torch.ones(3)
    optimizer.step()
    assert params[0].detach().lt(1).all()
