"""Parameter groups, optimizers, the schedule and backbone freezing."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from supcon.builders import build_model, build_optimizer
from supcon.config import ModelConfig, OptimConfig
from supcon.training.optim import (
    BACKBONE,
    GROUP_NAMES,
    HEAD,
    build_scheduler,
    group_rates,
    parameter_groups,
    set_backbone_frozen,
    warmup_cosine,
)


@pytest.fixture
def model():
    return build_model(ModelConfig(backbone="test_resnet", pool="gem", embedding_dim=8), 3)


def test_groups_split_backbone_head_and_decay(model) -> None:
    groups = {g["name"]: g for g in parameter_groups(model, lr=1e-3, weight_decay=0.05,
                                                     backbone_lr=1e-4)}  # fmt: skip
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each exactly once
    backbone = {id(p) for p in model.backbone.parameters()}
    for name, group in groups.items():
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert in_backbone == {name.startswith("backbone")}
        assert group["lr"] == (1e-4 if name.startswith("backbone") else 1e-3)
        no_decay = name.endswith("no_decay")
        assert group["weight_decay"] == (0.0 if no_decay else 0.05)
        assert all((p.ndim <= 1) == no_decay for p in group["params"])
    # Norms, biases and GeM's exponent are never decayed.
    assert any(p is model.pool.p for p in groups["head_no_decay"]["params"])
    norm = model.backbone.bn1 if hasattr(model.backbone, "bn1") else None
    if norm is not None:
        assert any(p is norm.weight for p in groups["backbone_no_decay"]["params"])


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_optimizers_keep_group_lrs(model, name: str) -> None:
    config = OptimConfig(name=name, lr=0.1, backbone_lr=0.01, momentum=0.8, weight_decay=0.0)
    optimizer = build_optimizer(config, model)
    expected = torch.optim.AdamW if name == "adamw" else torch.optim.SGD
    assert type(optimizer) is expected
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"backbone": 0.01, "backbone_no_decay": 0.01, "head": 0.1, "head_no_decay": 0.1}
    if name == "sgd":
        assert all(g["momentum"] == 0.8 and g["nesterov"] for g in optimizer.param_groups)
    # A default backbone_lr follows lr.
    same = build_optimizer(OptimConfig(name=name, lr=0.1), model)
    assert {g["lr"] for g in same.param_groups} == {0.1}


def test_frozen_backbone_is_untouched_by_a_step(model) -> None:
    optimizer = build_optimizer(OptimConfig(lr=0.1), model)
    model.train()
    set_backbone_frozen(model, True)
    assert not model.backbone.training and model.head.training
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model(torch.rand(4, 3, 32, 32), output="head").sum().backward()
    optimizer.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    set_backbone_frozen(model, False)
    assert model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())


def test_warmup_then_cosine() -> None:
    values = [warmup_cosine(s, total_steps=10, warmup_steps=2, min_ratio=0.1) for s in range(11)]
    assert values[0] == 0.5 and values[1] == 1.0 and values[2] == 1.0
    assert values[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(values[2:]))


def _hand_lr(peak: float, step: int, total: int, warmup: int, ratio: float) -> float:
    """The documented schedule, written out in float64: linear warmup that reaches ``peak`` at
    step ``warmup - 1``, then a half cosine from ``peak`` to ``ratio * peak`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    done = min(step - warmup, total - warmup) / (total - warmup)
    return peak * (ratio + (1 - ratio) * (1 + math.cos(math.pi * done)) / 2)


@pytest.mark.parametrize(("warmup", "ratio"), [(0, 0.0), (3, 0.01), (5, 0.25)])
def test_schedule_matches_the_formula_per_group_at_every_step_and_after_resume(
    warmup: int, ratio: float
) -> None:
    peaks = {"head": 1e-3, "backbone": 1e-4, "loss": 0.1}  # each group keeps its own ratio
    total, resume_at = 20, 9

    def optimizer() -> torch.optim.Optimizer:
        groups = [{"name": n, "params": [torch.nn.Parameter(torch.ones(2))], "lr": lr}
                  for n, lr in peaks.items()]  # fmt: skip
        return torch.optim.SGD(groups, lr=1.0)

    opt = optimizer()
    schedule = build_scheduler(opt, total_steps=total, warmup_steps=warmup, min_ratio=ratio)
    straight, saved = [], None
    for step in range(total + 2):  # two steps past the end stay at the floor
        for group in opt.param_groups:
            expected = _hand_lr(peaks[group["name"]], step, total, warmup, ratio)
            assert group["lr"] == pytest.approx(expected, rel=1e-12, abs=0), (step, group["name"])
        straight.append([group["lr"] for group in opt.param_groups])
        if step == resume_at:
            saved = schedule.state_dict(), opt.state_dict()
        opt.step()
        schedule.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(ratio * peaks["head"], abs=1e-15)

    # A fresh optimizer + schedule restored at step `resume_at` continues bit for bit.
    again = optimizer()
    resumed = build_scheduler(again, total_steps=total, warmup_steps=warmup, min_ratio=ratio)
    resumed.load_state_dict(saved[0])
    again.load_state_dict(saved[1])
    for step in range(resume_at, total + 2):
        assert [group["lr"] for group in again.param_groups] == straight[step], step
        again.step()
        resumed.step()


def test_group_names_and_rates_come_from_optim(model) -> None:
    optimizer = build_optimizer(OptimConfig(lr=0.1, backbone_lr=0.01), model)
    assert tuple(group_rates(optimizer)) == GROUP_NAMES
    assert group_rates(optimizer)[HEAD] == 0.1 and group_rates(optimizer)[BACKBONE] == 0.01
