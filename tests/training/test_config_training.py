"""The training keys of a recipe: defaults, types and range checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from supcon.config import ConfigError, config_from_dict, load_config

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_digits_defaults_keep_the_plain_fast_path() -> None:
    config = load_config(RECIPES / "digits.yaml")
    assert config.train.precision == "fp32" and config.train.micro_batch_size is None
    assert config.sampler.name == "random" and config.miner.name == "none"
    assert config.optim.name == "adamw" and config.optim.freeze_backbone_epochs == 0


def test_miner_and_sampler_args_are_mappings() -> None:
    config = load_config(
        RECIPES / "digits.yaml", ["miner.name=topk", "miner.args={k: 8}", "sampler.args=null"]
    )
    assert config.miner.args == {"k": 8} and config.sampler.args == {}
    with pytest.raises(ConfigError, match="miner.args must be mapping"):
        config_from_dict({"miner": {"args": [1, 2]}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"micro_batch_size": 0}}, "train.micro_batch_size must be in"),
        ({"train": {"batch_size": 8, "micro_batch_size": 9}}, "train.micro_batch_size"),
        ({"train": {"precision": "fp8"}}, "train.precision must be 'fp32' | 'bf16' | 'fp16'"),
        ({"train": {"checkpoint_every": -1}}, "train.checkpoint_every must be ≥ 0"),
        ({"train": {"log_every": 0}}, "train.log_every must be ≥ 1"),
        ({"optim": {"clip_grad_norm": 0}}, "optim.clip_grad_norm must be > 0"),
        ({"optim": {"freeze_backbone_epochs": 20}}, "optim.freeze_backbone_epochs must be in"),
        ({"optim": {"name": "lamb"}}, "optim.name must be 'adamw' | 'sgd'"),
        ({"model": {"pool": "median"}}, "model.pool must be"),
        ({"model": {"embedding": "both"}}, "model.embedding must be 'head' | 'backbone'"),
        ({"miner": {"name": "topk"}, "loss": {"use_labels": False}}, "miner.name needs labels"),
        ({"sampler": {"name": "m_per_class"}, "loss": {"use_labels": False}}, "needs labels"),
    ],
)
def test_range_checks(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_every_recipe_loads_with_its_training_keys() -> None:
    for path in sorted(RECIPES.glob("*.yaml")):
        config = load_config(path)
        assert config.train.batch_size % 2 == 0, path
