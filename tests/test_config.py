"""Recipe loading, overrides and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from supcon.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    load_config,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_every_recipe_loads() -> None:
    recipes = sorted(RECIPES.glob("*.yaml"))
    assert recipes
    for path in recipes:
        assert isinstance(load_config(path), Config)


def test_overrides_are_typed_and_applied() -> None:
    config = load_config(
        RECIPES / "digits.yaml",
        ["train.epochs=2", "loss.temperature=0.2", "eval.ks=[1,5]", "loss.base_temperature=null"],
    )
    assert config.train.epochs == 2
    assert config.loss.temperature == 0.2
    assert config.eval.ks == (1, 5)
    assert config.loss.base_temperature is None


def test_int_accepted_for_float_but_not_the_reverse() -> None:
    assert config_from_dict({"loss": {"temperature": 1}}).loss.temperature == 1.0
    with pytest.raises(ConfigError, match="train.epochs must be int"):
        config_from_dict({"train": {"epochs": 2.5}})


def test_all_problems_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(
            {"train": {"epochz": 1, "batch_size": "x"}, "nope": {}, "loss": {"contrast_mode": "x"}}
        )
    text = str(info.value)
    for fragment in (
        "unknown key train.epochz",
        "valid keys: epochs",
        "train.batch_size must be int",
        "unknown section 'nope'",
        "loss.contrast_mode must be 'all' | 'one'",
    ):
        assert fragment in text


def test_range_checks() -> None:
    with pytest.raises(ConfigError, match="loss.temperature must be > 0"):
        config_from_dict({"loss": {"temperature": 0}})
    with pytest.raises(ConfigError, match="needs data.views"):
        config_from_dict({"loss": {"use_labels": False}, "data": {"views": 1}})


@pytest.mark.parametrize("override", ["train.epochs", "epochs=3", "a.b.c=1"])
def test_malformed_override(override: str) -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(RECIPES / "digits.yaml", [override])


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(scalar)


def test_resolved_yaml_round_trips() -> None:
    config = load_config(RECIPES / "digits.yaml", ["train.epochs=3"])
    again = config_from_dict(yaml.safe_load(config_to_yaml(config)))
    assert again == config
    assert config_to_dict(again)["eval"]["ks"] == [1, 2, 4, 8]
