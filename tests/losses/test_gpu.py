"""CUDA: the same values and gradients as on CPU (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from supcon import CrossBatchMemory, supcon_loss

pytestmark = pytest.mark.gpu


def _value_and_grad(emb: torch.Tensor, labels, **kwargs) -> tuple[float, torch.Tensor]:
    leaf = emb.detach().clone().requires_grad_()
    loss = supcon_loss(leaf, labels, **kwargs)
    loss.backward()
    return loss.item(), leaf.grad.cpu()


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("kind", ["labels", "views", "multi_hot", "hcl", "pairs"])
def test_cuda_matches_cpu(tiled: bool, kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(96, 2, 32, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 12, (96,), generator=gen)
    kwargs: dict = {"tiled": tiled, "block_size": 40}
    if kind == "views":
        labels = None
    elif kind == "multi_hot":
        labels = (torch.rand(96, 5, generator=gen) < 0.3).long()
    elif kind == "hcl":
        kwargs["hcl_beta"] = 1.0
    elif kind == "pairs":
        a = torch.randint(0, 192, (500,), generator=gen)
        kwargs["indices_tuple"] = (
            a,
            torch.randint(0, 192, (500,), generator=gen),
            a.flip(0),
            torch.randint(0, 192, (500,), generator=gen),
        )
    cpu_value, cpu_grad = _value_and_grad(emb, labels, **kwargs)
    cuda_kwargs = {
        k: tuple(t.cuda() for t in v) if k == "indices_tuple" else v for k, v in kwargs.items()
    }
    cuda_labels = None if labels is None else labels.cuda()
    cuda_value, cuda_grad = _value_and_grad(emb.cuda(), cuda_labels, **cuda_kwargs)
    assert cuda_value == pytest.approx(cpu_value, rel=1e-9)
    torch.testing.assert_close(cuda_grad, cpu_grad, rtol=1e-7, atol=1e-10)


def test_cuda_half_precision_and_memory_queue() -> None:
    memory = CrossBatchMemory(size=256, dim=64).cuda()
    for _ in range(3):
        emb = torch.randn(128, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        labels = torch.randint(0, 16, (128,), device="cuda")
        loss = supcon_loss(emb, labels, tiled=True, **memory.as_refs())
        loss.backward()
        # Against float32 on the CPU with the same (rounded) inputs and queue.
        ref = emb.detach().float().cpu().requires_grad_()
        refs = {k: v.cpu() for k, v in memory.as_refs().items()}
        ref_loss = supcon_loss(ref, labels.cpu(), tiled=False, **refs)
        ref_loss.backward()
        eps = torch.finfo(torch.bfloat16).eps
        assert loss.float().item() == pytest.approx(ref_loss.item(), rel=2 * eps)
        scale = ref.grad.abs().max().item()
        torch.testing.assert_close(
            emb.grad.float().cpu(), ref.grad, rtol=4 * eps, atol=4 * eps * scale
        )
        memory.enqueue(emb, labels)
    assert len(memory) == 256
