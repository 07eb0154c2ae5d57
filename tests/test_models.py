"""Backbones by timm name, local pretrained weights, pooling, head and embedding choice."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import save_file

from supcon.builders import build_model
from supcon.cli import main
from supcon.config import ModelConfig
from supcon.models import GeM, create_backbone, feature_dim

ROOT = Path(__file__).resolve().parents[1]


def test_gem_matches_its_formula() -> None:
    torch.manual_seed(0)
    features = torch.rand(3, 5, 4, 6, dtype=torch.float64) * 2
    features[0, 0, 0, 0] = -1.0  # clamped to eps
    gem = GeM(p=2.5)
    expected = torch.empty(3, 5, dtype=torch.float64)
    for b in range(3):
        for c in range(5):
            values = [max(float(v), 1e-6) ** 2.5 for v in features[b, c].flatten()]
            expected[b, c] = (sum(values) / len(values)) ** (1 / 2.5)
    torch.testing.assert_close(gem(features).double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(GeM(p=1.0)(features.clamp(min=1e-6)).double(),
                               features.clamp(min=1e-6).mean((-2, -1)))  # fmt: skip
    assert gem.p.requires_grad
    with pytest.raises(ValueError, match="model.pool=avg or token"):
        gem(torch.rand(2, 7, 5))


@pytest.mark.parametrize(
    ("pool", "width"), [("default", 96), ("avg", 96), ("catavgmax", 192), ("gem", 96)]
)
def test_pooling_choices(pool: str, width: int) -> None:
    config = ModelConfig(backbone="test_resnet", pool=pool, embedding_dim=8, head="linear")
    model = build_model(config, in_chans=3).eval()
    assert model.feature_dim == width
    assert isinstance(model.pool, GeM) == (pool == "gem")
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_embedding_output_is_a_config_choice() -> None:
    config = ModelConfig(backbone="test_resnet", embedding_dim=8, embedding="backbone")
    model = build_model(config, in_chans=1).eval()
    images = torch.rand(3, 1, 16, 16)
    retrieval, projected = model(images), model(images, output="head")
    assert model.embedding_dim == 96 and retrieval.shape == (3, 96) and projected.shape == (3, 8)
    torch.testing.assert_close(retrieval.norm(dim=1), torch.ones(3))
    pooled = model.backbone(images)
    torch.testing.assert_close(retrieval, pooled / pooled.norm(dim=1, keepdim=True))


@pytest.mark.parametrize("fmt", ["safetensors", "state_dict_with_classifier"])
def test_pretrained_weights_from_a_local_file_load_exactly(tmp_path: Path, fmt: str) -> None:
    torch.manual_seed(123)
    source = timm.create_model("test_resnet", num_classes=0 if fmt == "safetensors" else 10)
    if fmt == "safetensors":
        path = tmp_path / "backbone.safetensors"
        save_file(source.state_dict(), str(path))
    else:
        path = tmp_path / "backbone.pth"
        torch.save({"state_dict": source.state_dict()}, path)  # a training checkpoint's shape
    model = build_model(ModelConfig(backbone="test_resnet", weights=str(path)), in_chans=3)
    loaded = model.backbone.state_dict()
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name
    # A checkpoint follows: no weights are read (the file may be gone).
    path.unlink()
    build_model(ModelConfig(backbone="test_resnet", weights=str(path)), 3, pretrained=False)


def test_weights_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        create_backbone("test_resnet", weights=tmp_path / "missing.safetensors")
    other = tmp_path / "other.safetensors"
    save_file(timm.create_model("test_vit", num_classes=0).state_dict(), str(other))
    with pytest.raises(ValueError, match="does not fit timm model 'test_resnet'"):
        create_backbone("test_resnet", weights=other)


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ValueError, match="Did you mean: .*resnet18"):
        create_backbone("resnet_18")


def test_offline_pretrained_without_a_file_says_how_to_provide_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # What HF_HUB_OFFLINE=1 with an empty cache means, without a subprocess.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    argv = ["train", str(ROOT / "recipes" / "digits.yaml"), "model.pretrained=true"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "cannot get pretrained weights for 'test_resnet'" in lines[0]
    assert "model.weights=FILE" in lines[0] and "model.pretrained=false" in lines[0]
    assert not (tmp_path / "run").exists()


def test_feature_dim_follows_timm() -> None:
    assert feature_dim(timm.create_model("test_resnet", num_classes=0)) == 96
    assert feature_dim(timm.create_model("test_vit", num_classes=0)) == 64


def test_model_drop_rates_reach_timm_and_are_checked() -> None:
    from supcon.config import ConfigError, config_from_dict

    config = config_from_dict({"model": {"drop_rate": 0.3, "drop_path_rate": 0.2}})
    model = build_model(config.model, 3)
    assert model.backbone.drop_rate == 0.3
    rates = [m.drop_prob for m in model.backbone.modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) == pytest.approx(0.2)  # timm's linear ramp ends at the rate
    plain = build_model(config_from_dict({}).model, 3)
    assert plain.backbone.drop_rate == 0.0
    assert not any(type(m).__name__ == "DropPath" for m in plain.backbone.modules())
    with pytest.raises(ConfigError, match=r"model.drop_path_rate must be in \[0, 1\), got 1.5"):
        config_from_dict({"model": {"drop_path_rate": 1.5}})
