"""The ``loss:`` section in training: PML losses, proxies, memory, config errors, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from supcon.builders import build_loss, build_model, build_optimizer
from supcon.cli import main
from supcon.config import ConfigError, LossConfig, ModelConfig, OptimConfig
from supcon.training import saving
from supcon.training.checkpoint import load_checkpoint
from supcon.training.loop import TrainingError, train
from tests.training.helpers import rows, tiny


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"loss": {"name": "arcfce"}}, "unknown loss.name 'arcfce'; choose one of: arcface,"),
        ({"loss": {"name": "arcface", "args": {"margn": 1}}}, "valid: margin, scale,"),
        (
            {"loss": {"name": "proxy_anchor", "use_labels": False}},
            "loss.name=proxy_anchor learns one weight per class, so it needs labels",
        ),
        ({"loss": {"name": "ntxent", "temperature": 0.2}}, "loss.temperature applies to"),
        ({"loss": {"args": {"margin": 1}}}, "loss.args is for PML losses"),
        ({"loss": {"path": "sparse"}}, "loss.path=sparse needs mined pairs"),
        ({"loss": {"path": "fast"}}, "loss.path must be 'auto' | 'dense' | 'tiled' | 'sparse'"),
        ({"loss": {"hcl_beta": -1.0}}, "loss.hcl_beta must be ≥ 0"),
        (
            {"loss": {"memory_size": 64}, "miner": {"name": "topk"}},
            "loss.memory_size needs miner.name=none",
        ),
        (
            {"loss": {"name": "arcface", "memory_size": 64}},
            "loss.memory_size works with supcon and the PML losses angular, circle,",
        ),
        (
            {"loss": {"name": "contrastive", "memory_size": 16}},
            "loss.memory_size must be ≥ train.batch_size × data.views = 20 for a PML loss",
        ),
        (
            {"loss": {"name": "contrastive", "memory_size": 40, "use_labels": False}},
            "loss.memory_size with loss.name=contrastive needs labels",
        ),
        ({"loss": {"memory_start_epoch": 2}}, "loss.memory_start_epoch must be in [0, "),
        ({"optim": {"loss_lr": -1.0}}, "optim.loss_lr must be ≥ 0 or null"),
    ],
)
def test_config_errors_name_the_key_and_the_valid_choices(
    images: Path, sections: dict, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        tiny(images, **sections)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_cli_unknown_loss_is_one_line_and_exit_2(capsys) -> None:
    assert main(["train", "recipes/digits.yaml", "loss.name=proxyanchor", "--no-progress"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "choose one of: proxy_anchor," in line


def test_unlabeled_data_with_a_proxy_loss_says_it_needs_labels(tmp_path: Path) -> None:
    from tests.images import make_csv_manifest

    manifest = make_csv_manifest(tmp_path / "data", labels=False)
    config = tiny(
        tmp_path,
        data={"dataset": "csv", "root": None, "manifest": str(manifest)},
        loss={"name": "normalized_softmax"},
    )
    with pytest.raises(TrainingError, match="normalized_softmax learns one weight per class"):
        train(config, tmp_path / "run", progress=False)


def test_loss_parameters_get_their_own_group_at_loss_lr() -> None:
    model = build_model(ModelConfig(backbone="test_resnet", embedding_dim=8), 3)
    proxy = build_loss(LossConfig(name="proxy_anchor"), num_classes=5, embedding_size=8)
    groups = build_optimizer(OptimConfig(lr=1e-3, loss_lr=0.25), model, proxy).param_groups
    (group,) = [g for g in groups if g["name"] == "loss"]
    assert group["lr"] == 0.25 and group["weight_decay"] == 0.0
    assert [id(p) for p in group["params"]] == [id(proxy.proxies)]
    default = build_optimizer(OptimConfig(lr=1e-3), model, proxy).param_groups[-1]
    assert default["name"] == "loss" and default["lr"] == pytest.approx(1e-2)
    pair = build_loss(LossConfig(name="multi_similarity"))
    assert "loss" not in {
        g["name"] for g in build_optimizer(OptimConfig(), model, pair).param_groups
    }


def test_digits_recipe_trains_arcface_end_to_end(tmp_path: Path, capsys) -> None:
    argv = ["train", "recipes/digits.yaml", "loss.name=arcface", "loss.args={margin: 28.6, "
            "scale: 64}", "train.epochs=1", "train.batch_size=256", "optim.loss_lr=0.01",
            "eval.ks=[1]", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "recall@1" in capsys.readouterr().out
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert saved["loss"]["W"].shape == (64, 10)
    (group,) = [g for g in saved["optimizer"]["param_groups"] if g["name"] == "loss"]
    assert group["initial_lr"] == 0.01
    log = rows(tmp_path / "log.csv")
    assert len(log) == 5 and all(float(r["loss"]) > 0 for r in log)
    assert all(r.get("anchors_without_positives", "") == "" for r in log)  # supcon only


class CrashError(Exception):
    pass


def _crash_after_saving_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    real = saving.save_rotating  # last.pt is written by rotation (prev.pt kept)

    def save_then_crash(path, content):
        real(path, content)
        if content["step"] == step:
            raise CrashError

    monkeypatch.setattr(saving, "save_rotating", save_then_crash)


@pytest.mark.parametrize(
    "loss",
    [
        {"name": "proxy_anchor", "args": {"margin": 0.1}},
        {"memory_size": 12, "memory_start_epoch": 1},
        {"name": "contrastive", "memory_size": 50, "memory_start_epoch": 1},
    ],
    ids=["proxies", "memory", "pml_memory"],
)
def test_resume_restores_proxies_and_memory_exactly(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loss: dict
) -> None:
    """A run stopped mid-epoch 2 and resumed ends bit-identical to an uninterrupted one."""
    config = tiny(images, loss=loss, train={"checkpoint_every": 1})
    train(config, tmp_path / "straight", progress=False)
    with monkeypatch.context() as patch:
        _crash_after_saving_step(patch, 4)  # 3 steps per epoch: inside epoch 2
        with pytest.raises(CrashError):
            train(config, tmp_path / "resumed", progress=False)
    train(config, tmp_path / "resumed", progress=False, resume=True)
    final, expected = (
        load_checkpoint(tmp_path / run / "checkpoints" / "last.pt")
        for run in ("resumed", "straight")
    )
    part = "loss" if "name" in loss else "memory"
    assert expected.get(part)
    for key in ("model", part):
        for name, value in expected[key].items():
            same = torch.equal if isinstance(value, torch.Tensor) else (lambda a, b: a == b)
            assert same(final[key][name], value), (key, name)
    if part == "memory":
        assert int(expected["memory"]["filled"]) == 12  # from epoch 1: 3 steps × 20 rows
    if "memory_size" in loss and part == "loss":  # PML memory: 20 rows per step from epoch 1
        assert expected["loss"]["_extra_state"] == {
            "queue_idx": 20 * 3 % 50,
            "has_been_filled": True,
        }
    straight, resumed = (
        rows(tmp_path / "straight" / "log.csv"),
        rows(tmp_path / "resumed" / "log.csv"),
    )
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]


def test_gradcache_gives_proxies_the_whole_batch_gradient() -> None:
    """Micro-batches of 2 samples: model and proxy gradients equal one pass on the batch."""
    from supcon.training.criterion import step_loss
    from supcon.training.gradcache import cached_backward

    def setup() -> tuple[torch.nn.Module, torch.nn.Module]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))
        loss_fn = build_loss(LossConfig(name="proxy_anchor"), num_classes=3, embedding_size=4)
        return model.double(), loss_fn.double()

    images = torch.randn(16, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    labels = torch.arange(8) % 3

    def gradients(model: torch.nn.Module, loss_fn: torch.nn.Module) -> list[torch.Tensor]:
        return [p.grad for p in (*model.parameters(), *loss_fn.parameters())]

    model, loss_fn = setup()
    step_loss(loss_fn, model(images), labels, views=2).backward()
    expected = gradients(model, loss_fn)
    model, loss_fn = setup()
    cached_backward(model, images.split(4), lambda e: step_loss(loss_fn, e, labels, views=2))
    for got, want in zip(gradients(model, loss_fn), expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    assert expected[-1].abs().sum() > 0  # the proxies do get a gradient


def test_view_major_order_puts_gathered_rows_in_one_process_order() -> None:
    """Ranks of 2 and 3 samples, 2 views: rank-major view-major rows → global view-major."""
    from supcon.distributed import view_major_order

    sizes, views = [2, 3], 2
    samples = torch.arange(5)  # global sample ids, rank 0 holds 0-1, rank 1 holds 2-4
    per_rank = [samples[:2], samples[2:]]
    # Each rank sends (view, sample) rows view-major; encode a row as 10·view + sample.
    gathered = torch.cat([torch.cat([10 * v + s for v in range(views)]) for s in per_rank])
    expected = torch.cat([10 * v + samples for v in range(views)])
    assert torch.equal(gathered[view_major_order(sizes, views)], expected)
