"""Property tests (hypothesis): invariances and finite gradients in hard numerical corners."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supcon import supcon_loss

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def labelled_batches(draw) -> tuple[torch.Tensor, torch.Tensor]:
    n = draw(st.integers(2, 24))
    d = draw(st.integers(2, 8))
    classes = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (n,), generator=gen)
    return emb, labels


def _loss_and_grad(emb: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = emb.detach().clone().requires_grad_()
    loss = supcon_loss(leaf, *args, **kwargs)
    loss.backward()
    return loss.detach(), leaf.grad


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@SETTINGS
@given(batch=labelled_batches(), tiled=st.booleans(), data=st.data())
def test_invariant_to_batch_permutation(batch, tiled: bool, data) -> None:
    emb, labels = batch
    perm = torch.tensor(data.draw(st.permutations(range(len(emb)))))
    base, grad = _loss_and_grad(emb, labels, tiled=tiled, block_size=5)
    permuted, grad_p = _loss_and_grad(emb[perm], labels[perm], tiled=tiled, block_size=5)
    assert permuted.item() == pytest.approx(base.item(), rel=1e-10, abs=1e-12)
    torch.testing.assert_close(grad_p, grad[perm], rtol=1e-8, atol=1e-12)


@SETTINGS
@given(
    samples=st.integers(2, 10),
    views=st.integers(2, 4),
    seed=st.integers(0, 2**31 - 1),
    data=st.data(),
)
def test_views_invariant_to_sample_permutation(samples: int, views: int, seed: int, data) -> None:
    emb = torch.randn(samples, views, 4, generator=torch.Generator().manual_seed(seed)).double()
    perm = torch.tensor(data.draw(st.permutations(range(samples))))
    assert supcon_loss(emb[perm]).item() == pytest.approx(supcon_loss(emb).item(), rel=1e-10)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@SETTINGS
@given(
    batch=labelled_batches(),
    log_scales=st.lists(st.floats(-25, 25), min_size=24, max_size=24),
    tiled=st.booleans(),
)
def test_invariant_to_embedding_scale(batch, log_scales: list[float], tiled: bool) -> None:
    emb, labels = batch
    scales = torch.tensor(log_scales[: len(emb)], dtype=torch.float64).exp()[:, None]
    base = supcon_loss(emb, labels, tiled=tiled)
    scaled = supcon_loss(emb * scales, labels, tiled=tiled)
    assert scaled.item() == pytest.approx(base.item(), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("temperature", [0.01, 0.1, 1.0])
def test_identical_embeddings_give_finite_loss_and_gradients(tiled: bool, temperature) -> None:
    emb = torch.ones(12, 2, 8)
    loss, grad = _loss_and_grad(emb, torch.arange(12) % 3, temperature=temperature, tiled=tiled)
    # All similarities are 1: every anchor's term is log(M - 1) exactly.
    assert loss.item() == pytest.approx(torch.log(torch.tensor(23.0)).item(), rel=1e-5)
    # Every logit equals every other, so the softmax is uniform and its gradient along the
    # shared direction is removed by the normalisation: the gradient is exactly 0.
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-6)


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("magnitude", [1e-30, 1e-12, 1e12, 1e30])
def test_extreme_norms_in_float32_stay_finite_and_scale_free(tiled: bool, magnitude) -> None:
    gen = torch.Generator().manual_seed(7)
    emb = torch.randn(16, 2, 8, generator=gen)
    labels = torch.arange(16) % 4
    reference, reference_grad = _loss_and_grad(emb, labels, tiled=tiled)
    loss, grad = _loss_and_grad(emb * magnitude, labels, tiled=tiled)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    # The loss is scale-free, so its gradient scales as 1 / magnitude.
    torch.testing.assert_close(grad * magnitude, reference_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 1e4])  # 1e4·randn stays below fp16 max
def test_half_precision_inputs_give_finite_gradients(tiled: bool, dtype, magnitude) -> None:
    gen = torch.Generator().manual_seed(8)
    emb = (torch.randn(16, 2, 8, generator=gen) * magnitude).to(dtype)
    loss, grad = _loss_and_grad(emb, torch.arange(16) % 4, temperature=0.05, tiled=tiled)
    assert loss.dtype == dtype and grad.dtype == dtype
    # Against float32 on the same (rounded) inputs: the loss to the half type's rounding, the
    # gradient to a few half-precision ulps of its largest entry.
    ref_loss, ref_grad = _loss_and_grad(emb.float(), torch.arange(16) % 4, temperature=0.05)
    eps = torch.finfo(dtype).eps
    assert loss.float().item() == pytest.approx(ref_loss.item(), rel=2 * eps)
    scale = ref_grad.abs().max().item()
    torch.testing.assert_close(grad.float(), ref_grad, rtol=4 * eps, atol=4 * eps * scale)


@pytest.mark.parametrize("tiled", [False, True])
def test_small_temperature_with_orthogonal_rows_does_not_underflow(tiled: bool) -> None:
    # τ = 0.005: logits span ±200, far outside exp's float32 range; the row max keeps it exact.
    emb = torch.eye(8).repeat(2, 1)  # 16 rows, each class's two rows identical
    labels = torch.arange(8).repeat(2)
    loss, grad = _loss_and_grad(emb, labels, temperature=0.005, tiled=tiled)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    # Positive at logit 200, 14 negatives at 0: ℓ = log(1 + 14 e^{-200}) ≈ 0.
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
