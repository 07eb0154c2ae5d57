"""Every recipe loads, has its header, and trains for a few steps on a fake tree of its data.

Only command-line-style overrides are used (a tiny timm backbone, 32 px, one epoch, small
batches), so what runs is the recipe as shipped, scaled down.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from supcon.cli import main
from supcon.config import load_config
from supcon.data import DataError
from supcon.training import train
from tests.data.fake_benchmarks import (
    make_cars,
    make_cifar,
    make_cub,
    make_fewshot_csv,
    make_inshop,
    make_omniglot,
    make_sop,
)
from tests.images import make_csv_manifest, make_image_folder

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
HEADER = ("# Task:", "# Data:", "# Hardware:", "# Time:", "# Target:", "# Run:")
NEW_RECIPES = {
    "cub200_vits16",
    "cub200_resnet50",
    "cars196_vits16",
    "sop_vits16",
    "inshop_vits16",
    "cifar100_supcon",
    "simclr_folder",
    "fewshot_miniimagenet",
    "fewshot_omniglot",
}

#: data.dataset -> (builds a fake tree under the given folder, the data.* overrides for it).
FAKES: dict[str, Callable[[Path], list[str]]] = {
    "cub200": lambda d: [f"data.root={make_cub(d, classes=8, per_class=4)}"],
    "cars196": lambda d: [f"data.root={make_cars(d, classes=8, per_class=4)}"],
    "sop": lambda d: [f"data.root={make_sop(d, classes=16, per_class=2)}"],
    "inshop": lambda d: [f"data.root={make_inshop(d, train_items=4, test_items=3, per_item=4)}"],
    "cifar100": lambda d: [f"data.root={make_cifar(d, fine=True, per_batch=4)}"],
    "cifar10": lambda d: [f"data.root={make_cifar(d, per_batch=4)}"],
    "fewshot_csv": lambda d: [f"data.root={make_fewshot_csv(d, base=4, novel=3, per_class=8)}"],
    "omniglot": lambda d: [f"data.root={make_omniglot(d, characters=3, drawers=4)}"],
    "folder": lambda d: [f"data.root={make_image_folder(d, classes=4, per_class=6)}"],
    "csv": lambda d: [
        f"data.manifest={make_csv_manifest(d, classes=4, per_class=6, labels=False)}"
    ],
    "digits": lambda d: [],
}


def recipe_paths() -> list[Path]:
    return sorted(RECIPES.glob("*.yaml"))


def test_the_issue_recipes_exist() -> None:
    assert {p.stem for p in recipe_paths()} >= NEW_RECIPES


@pytest.mark.parametrize("path", [RECIPES / f"{n}.yaml" for n in sorted(NEW_RECIPES)], ids=str)
def test_recipe_header(path: Path) -> None:
    lines = path.read_text().splitlines()
    for field in HEADER:
        assert any(line.startswith(field) for line in lines), f"{path.name}: no {field!r} line"


def _scaled_down(path: Path) -> list[str]:
    raw = yaml.safe_load(path.read_text())
    m = (raw.get("sampler") or {}).get("args", {}).get("m", 1)
    batch = 256 if raw["data"]["dataset"] == "digits" else max(8, 2 * m)
    overrides = [
        "model.backbone=test_resnet",
        "model.pretrained=false",
        "model.weights=null",
        "train.epochs=1",
        f"train.batch_size={batch}",
        "train.micro_batch_size=null",
        "train.precision=fp32",
        "train.channels_last=false",
        "train.compile=false",
        "train.device=cpu",
        "train.threads=1",
        "train.eval_every=0",
        "train.checkpoint_every=0",
        "train.tensorboard=false",
        "optim.freeze_backbone_epochs=0",
        "data.num_workers=0",
        "eval.batch_size=64",
    ]
    if raw["data"]["dataset"] != "digits":
        overrides.append("data.image_size=32")
    return overrides


@pytest.mark.parametrize("path", recipe_paths(), ids=lambda p: p.stem)
def test_recipe_trains_on_its_fake_data(path: Path, tmp_path: Path) -> None:
    dataset = yaml.safe_load(path.read_text())["data"]["dataset"]
    overrides = _scaled_down(path) + FAKES[dataset](tmp_path / "data")
    config = load_config(path, overrides)
    metrics = train(config, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    if config.loss.use_labels:
        assert 0.0 <= metrics["recall@1"] <= 1.0
    else:  # the SimCLR recipe reads an unlabeled manifest: nothing to score
        assert metrics == {}


def test_fewshot_recipe_then_fewshot_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = RECIPES / "fewshot_miniimagenet.yaml"
    overrides = _scaled_down(path) + FAKES["fewshot_csv"](tmp_path / "data")
    train(load_config(path, overrides), tmp_path / "run", progress=False)
    run = str(tmp_path / "run")
    args = ["fewshot", run, "--n-way", "3", "--k-shot", "1", "5", "--n-query", "3"]
    assert main([*args, "--episodes", "20", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3-way" in out and "1-shot" in out and "5-shot" in out
    # The 3 novel classes of 8 images allow 3 ways with k_shot + n_query <= 8.
    assert main(["fewshot", run, "--n-way", "5", "--episodes", "5", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("use n_way = 3 with n_query <= 7."), err
    assert (
        main([*args[:2], "--n-way", "2", "--k-shot", "5", "--n-query", "4", "--no-progress"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("use n_query <= 3."), err


def test_recipe_on_a_missing_root_names_the_file(tmp_path: Path) -> None:
    path = RECIPES / "cub200_vits16.yaml"
    config = load_config(path, [*_scaled_down(path), f"data.root={tmp_path}"])
    with pytest.raises(DataError, match=r"images.txt' is missing.*published at"):
        train(config, tmp_path / "run", progress=False)


def test_cli_names_the_first_missing_file_of_a_partly_extracted_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    make_sop(tmp_path / "sop", classes=4, per_class=2)
    (tmp_path / "sop" / "Ebay_test.txt").unlink()
    args = ["train", str(RECIPES / "sop_vits16.yaml"), f"data.root={tmp_path / 'sop'}"]
    assert main([*args, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Ebay_test.txt' is missing" in err[0], err


def test_cifar_recipe_then_linear_probe(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = RECIPES / "cifar100_supcon.yaml"
    overrides = [*_scaled_down(path), "data.dataset=cifar10", *FAKES["cifar10"](tmp_path / "d")]
    train(load_config(path, overrides), tmp_path / "run", progress=False)
    capsys.readouterr()
    args = ["eval", str(tmp_path / "run"), "--linear-probe", "--no-progress"]
    assert main([*args, "--json", str(tmp_path / "probe.json")]) == 0
    metrics = json.loads((tmp_path / "probe.json").read_text())["metrics"]
    # The fake CIFAR-10 has 20 training images in all 10 classes and 4 test images.
    assert metrics["linear_probe_num_train"] == 20 and metrics["linear_probe_num_test"] == 4
    assert metrics["linear_probe_classes"] == 10 and "recall@1" in metrics
