"""The ``augment:`` section, ``data.channels/mean/std`` and ``eval.resize`` in recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from supcon.cli import main
from supcon.config import ConfigError, config_from_dict, config_to_dict, resolve_defaults


def test_default_preset_follows_use_labels_and_is_recorded() -> None:
    labelled = resolve_defaults(config_from_dict({"data": {"dataset": "folder", "root": "x"}}))
    assert labelled.augment.preset == "retrieval"
    assert labelled.data.channels == 3 and labelled.eval.resize == "crop"
    unlabelled = resolve_defaults(config_from_dict({"loss": {"use_labels": False}}))
    assert unlabelled.augment.preset == "simclr"
    assert unlabelled.data.channels == 1 and unlabelled.eval.resize == "full"  # the digits
    chosen = resolve_defaults(config_from_dict({"augment": {"preset": "geometric"}}))
    assert chosen.augment.preset == "geometric"
    custom = resolve_defaults(config_from_dict({"augment": {"transforms": ["RandomInvert"]}}))
    assert custom.augment.preset is None  # the list replaces the preset
    # What config.yaml records loads back to the same config.
    assert config_from_dict(config_to_dict(labelled)) == labelled


def test_deprecated_color_jitter_becomes_augment_jitter() -> None:
    old = config_from_dict({"data": {"color_jitter": 0.5}, "loss": {"use_labels": False}})
    resolved = resolve_defaults(old)
    assert resolved.augment.jitter == 0.5 and resolved.data.color_jitter is None
    ignored = resolve_defaults(
        config_from_dict({"data": {"color_jitter": 0.5}, "augment": {"preset": "none"}})
    )
    assert ignored.augment.jitter is None and ignored.data.color_jitter is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"augment": {"preset": "geometrc"}},
            "unknown augment.preset 'geometrc'; valid presets: geometric",
        ),
        ({"augment": {"crop_scale": [0.0, 1.0]}}, r"augment.crop_scale .* in \(0, 1\]"),
        ({"augment": {"crop_scale": [0.5, 1.2]}}, r"augment.crop_scale .* in \(0, 1\]"),
        ({"augment": {"crop_scale": [0.5]}}, "two numbers"),
        ({"augment": {"preset": "geometric", "rotation": -3}}, r"augment.rotation .* \[0, 180\]"),
        ({"augment": {"hflip": 1.5}}, r"augment.hflip is a probability .* \[0, 1\]"),
        (
            {"augment": {"rotation": 5}},
            "augment.rotation not used by augment.preset=retrieval "
            r"\(the default with loss.use_labels=true\)",
        ),
        ({"augment": {"preset": "randaugment", "magnitude": 40}}, r"augment.magnitude .* 30\]"),
        ({"augment": {"preset": "autoaugment", "policy": "imagenett"}}, "valid policies: imagenet"),
        ({"augment": {"preset": "simclr", "transforms": ["RandomInvert"]}}, "replaces the preset"),
        ({"augment": {"hflip": 0.0, "transforms": ["RandomInvert"]}}, "augment.hflip apply to"),
        ({"augment": {"transforms": [{"RandomRotate": {"degrees": 3}}]}}, "valid: RandomRotation"),
        (
            {"augment": {"transforms": [{"RandomRotation": {"degree": 3}}]}},
            "valid arguments: degrees",
        ),
        ({"augment": {"transforms": [7]}}, "augment.transforms must be list of"),
        ({"data": {"channels": 2}}, "data.channels must be 1 .*, 3 .* or null"),
        ({"data": {"dataset": "folder", "root": "x", "mean": [0.5]}}, "data.mean needs 3 value"),
        ({"data": {"channels": 1, "std": [0.0]}}, "data.std values must be > 0"),
        ({"eval": {"resize": "fit"}}, "eval.resize must be 'crop' | 'full' | null"),
    ],
)
def test_bad_augment_settings_are_one_line_errors(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict(raw)
    assert "\n" not in str(info.value)


def test_cli_reports_a_bad_transform_before_training(tmp_path: Path, capsys) -> None:
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "digits.yaml"
    code = main(
        [
            "train",
            str(recipe),
            "augment.preset=null",
            "augment.transforms=[{RandomRotation: {degres: 5}}]",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown argument 'degres'; valid arguments: degrees" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
