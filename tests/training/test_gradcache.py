"""GradCache gives the gradient of the whole batch while embedding it in micro-batches."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import Tensor, nn

from supcon import SupConLoss
from supcon.models import EmbeddingModel
from supcon.training.gradcache import cached_backward

VIEWS = 2


def loss_on(labels: Tensor):
    loss_fn = SupConLoss(temperature=0.2)
    return lambda embeddings: loss_fn(embeddings.view(-1, VIEWS, embeddings.shape[-1]), labels)


def grads(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def whole_batch(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    model.zero_grad(set_to_none=True)
    loss = loss_on(labels)(model(images))
    loss.backward()
    return loss.detach()


def chunked_with_graph(model: nn.Module, images: Tensor, labels: Tensor, size: int) -> Tensor:
    """The reference GradCache must equal: every micro-batch forward kept in one graph."""
    model.zero_grad(set_to_none=True)
    loss = loss_on(labels)(torch.cat([model(c) for c in images.split(size)]))
    loss.backward()
    return loss.detach()


def gradcache(model: nn.Module, images: Tensor, labels: Tensor, size: int) -> Tensor:
    model.zero_grad(set_to_none=True)
    loss, _ = cached_backward(model, images.split(size), loss_on(labels))
    return loss


def assert_same_grads(a: dict[str, Tensor], b: dict[str, Tensor], atol: float = 1e-10) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=1e-7, msg=name)


def mlp(dropout: float = 0.0, norm: type[nn.Module] = nn.LayerNorm) -> nn.Module:
    return nn.Sequential(
        nn.Linear(12, 32),
        norm(32),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(32, 8),
    ).double()


def batch(n: int = 24, classes: int = 4) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(n * VIEWS, 12, generator=generator, dtype=torch.float64)
    labels = torch.arange(n) % classes
    return images, labels


def test_equals_the_whole_batch_at_once_without_batch_coupled_layers() -> None:
    torch.manual_seed(0)
    model = mlp()
    images, labels = batch()
    expected_loss = whole_batch(model, images, labels)
    expected = grads(model)
    for size in (2, 10, 16, 48):  # 8 even micro-batches ... one; uneven sizes too
        loss = gradcache(model, images, labels, size)
        torch.testing.assert_close(loss, expected_loss, atol=1e-12, rtol=0)
        assert_same_grads(grads(model), expected)


def test_dropout_replays_the_first_pass_masks() -> None:
    torch.manual_seed(0)
    model = mlp(dropout=0.5)
    images, labels = batch()
    torch.manual_seed(7)
    expected_loss = chunked_with_graph(model, images, labels, 12)
    expected, expected_rng = grads(model), torch.get_rng_state()
    torch.manual_seed(7)
    loss = gradcache(model, images, labels, 12)
    torch.testing.assert_close(loss, expected_loss, atol=1e-12, rtol=0)
    assert_same_grads(grads(model), expected)
    # The RNG stream continues where a single pass would leave it.
    assert torch.equal(torch.get_rng_state(), expected_rng)


def test_batchnorm_statistics_move_once_per_micro_batch() -> None:
    torch.manual_seed(0)
    reference, cached = mlp(norm=nn.BatchNorm1d), mlp(norm=nn.BatchNorm1d)
    cached.load_state_dict(reference.state_dict())
    images, labels = batch()
    chunked_with_graph(reference, images, labels, 16)
    gradcache(cached, images, labels, 16)
    assert_same_grads(grads(cached), grads(reference))
    for (name, expected), actual in zip(
        reference.state_dict().items(), cached.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(actual, expected, atol=1e-12, rtol=0, msg=name)
    assert int(cached[1].num_batches_tracked) == 3  # 48 rows in micro-batches of 16


def test_timm_vit_with_stochastic_depth() -> None:
    """A real backbone: exact vs the whole batch without drop-path, vs chunks with it."""
    torch.manual_seed(0)
    backbone = timm.create_model("test_vit", num_classes=0, img_size=32, drop_path_rate=0.3)
    model = EmbeddingModel(backbone, 16, "linear").double()
    images = torch.randn(8 * VIEWS, 3, 32, 32, dtype=torch.float64)
    labels = torch.arange(8) % 4

    model.eval()  # no stochastic depth: equal to the whole batch at once
    expected_loss = whole_batch(model, images, labels)
    expected = grads(model)
    torch.testing.assert_close(gradcache(model, images, labels, 6), expected_loss)
    assert_same_grads(grads(model), expected, atol=1e-9)

    model.train()  # stochastic depth on: the re-run must drop the same paths
    torch.manual_seed(3)
    expected_loss = chunked_with_graph(model, images, labels, 6)
    expected = grads(model)
    torch.manual_seed(3)
    torch.testing.assert_close(gradcache(model, images, labels, 6), expected_loss)
    assert_same_grads(grads(model), expected, atol=1e-9)


def test_scale_and_autocast_bf16() -> None:
    torch.manual_seed(0)
    model = mlp().float()
    images, labels = batch()
    images = images.float()
    whole_batch(model, images, labels)
    expected = grads(model)
    model.zero_grad(set_to_none=True)
    loss, embeddings = cached_backward(
        model,
        images.split(16),
        loss_on(labels),
        autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
        scale=lambda value: value * 8.0,
    )
    assert torch.isfinite(loss) and embeddings.dtype == torch.float32
    for name, grad in grads(model).items():  # scaled by 8, bf16-close to the fp32 gradient
        torch.testing.assert_close(grad / 8.0, expected[name], atol=5e-2, rtol=5e-2, msg=name)


def test_an_aborting_loss_leaves_parameter_gradients_alone() -> None:
    model = mlp()
    images, _ = batch()

    def fail(embeddings: Tensor) -> Tensor:
        raise RuntimeError("non-finite")

    model.zero_grad(set_to_none=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        cached_backward(model, images.split(8), fail)
    assert grads(model) == {}


def test_no_chunks_is_an_error_that_says_so() -> None:
    with pytest.raises(ValueError) as info:
        cached_backward(mlp(), [], loss_on(torch.arange(2)))
    assert str(info.value) == "cached_backward needs at least one chunk"


def test_a_plain_function_model_with_the_buffers_of_its_batchnorm() -> None:
    """``model`` need not be a module; ``buffers`` then names the module whose statistics move."""
    torch.manual_seed(0)
    reference, cached = mlp(norm=nn.BatchNorm1d), mlp(norm=nn.BatchNorm1d)
    cached.load_state_dict(reference.state_dict())
    images, labels = batch()
    chunked_with_graph(reference, images, labels, 16)
    cached.zero_grad(set_to_none=True)
    cached_backward(lambda x: cached(x), images.split(16), loss_on(labels), buffers=cached)
    assert_same_grads(grads(cached), grads(reference))
    torch.testing.assert_close(cached[1].running_mean, reference[1].running_mean, rtol=0, atol=0)
    assert int(cached[1].num_batches_tracked) == 3  # once per micro-batch, not twice


def test_a_plain_function_model_without_buffers() -> None:
    model = mlp()
    images, labels = batch()
    whole_batch(model, images, labels)
    expected = grads(model)
    model.zero_grad(set_to_none=True)
    cached_backward(lambda x: model(x), images.split(16), loss_on(labels))
    assert_same_grads(grads(model), expected)


def test_a_loss_that_ignores_the_embeddings_gives_the_model_zero_gradients() -> None:
    model, other = mlp(), torch.ones(3, requires_grad=True)
    images, _ = batch()
    loss, _ = cached_backward(model, images.split(16), lambda e: (2 * other).sum())
    assert float(loss) == 6.0
    torch.testing.assert_close(other.grad, torch.full((3,), 2.0))
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


def test_no_sync_wraps_every_replay_but_the_last() -> None:
    """DDP must all-reduce once per step: on the last chunk's backward, and only there."""
    model, inside, seen = mlp(), [False], []

    class NoSync:
        def __enter__(self) -> None:
            inside[0] = True

        def __exit__(self, *exc: object) -> None:
            inside[0] = False

    def recording(x: Tensor) -> Tensor:
        if torch.is_grad_enabled():  # the replays; the first pass runs under no_grad
            seen.append(inside[0])
        return model(x)

    images, labels = batch()
    cached_backward(recording, images.split(16), loss_on(labels), no_sync=NoSync, buffers=model)
    assert seen == [True, True, False]
