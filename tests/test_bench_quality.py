"""The generated symbols task keeps its promises, and the symbols recipe trains on it."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from supcon.config import load_config
from supcon.training import train

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_quality  # noqa: E402
import symbols  # noqa: E402


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("symbols")
    return root, symbols.generate(root, train_classes=40, test_classes=20, per_class=2, seed=3)


def test_promised_class_counts_disjoint_classes_and_images(generated) -> None:
    root, classes = generated
    assert bench_quality.FULL["train_classes"] >= 40 and bench_quality.FULL["test_classes"] >= 20
    assert bench_quality.FULL["per_class"] >= 50
    for split, count in (("train", 40), ("test", 20)):
        folders = sorted(p.name for p in (root / split).iterdir())
        assert folders == sorted(classes[split]) and len(folders) == count
        for folder in folders:
            files = sorted((root / split / folder).iterdir())
            assert len(files) == 2
            with Image.open(files[0]) as image:
                assert image.mode == "L" and image.size == (32, 32)
    assert not set(classes["train"]) & set(classes["test"])
    with (root / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 120 and {r["split"] for r in rows} == {"train", "test"}
    assert {r["label"] for r in rows if r["split"] == "test"} == set(classes["test"])
    assert all((root / r["path"]).is_file() for r in rows)


def test_no_two_classes_share_a_shape() -> None:
    glyphs = symbols.distinct_glyphs()
    assert len(glyphs) >= 60  # room for 40 + 20 classes
    renders = np.stack([symbols._normalised_render(g.char, g.fonts[0]) for g in glyphs])
    similarity = renders @ renders.T
    np.fill_diagonal(similarity, 0)
    assert similarity.max() <= symbols.SIMILARITY_LIMIT
    chars = {g.char for g in glyphs}
    assert "O" in chars and "o" not in chars and "c" not in chars  # same shape at another size
    assert all(len(g.fonts) >= symbols.MIN_FONTS for g in glyphs)


def test_generation_is_deterministic(generated, tmp_path: Path) -> None:
    root, classes = generated
    again = symbols.generate(tmp_path, train_classes=40, test_classes=20, per_class=2, seed=3)
    assert again == classes
    name = classes["test"][0]
    first = np.asarray(Image.open(root / "test" / name / "0001.png"))
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "test" / name / "0001.png")))
    other = symbols.generate(tmp_path / "b", train_classes=4, test_classes=2, per_class=1, seed=4)
    assert other["train"] != classes["train"][:4]


def test_symbols_recipe_trains_one_step(tmp_path: Path) -> None:
    subset = tmp_path / "data"
    symbols.generate(subset, train_classes=4, test_classes=2, per_class=4, seed=3)
    config = load_config(
        ROOT / "recipes" / "symbols.yaml",
        [
            f"data.root={subset}",
            "model.backbone=test_resnet",
            "train.epochs=1",
            "train.batch_size=16",
            "train.threads=1",
            "train.tensorboard=false",
        ],
    )
    metrics = train(config, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    assert 0.0 <= metrics["recall@1"] <= 1.0
    steps = (tmp_path / "run" / "log.csv").read_text().strip().splitlines()[1:]
    assert len(steps) == 1


def test_geometric_preset_runs_with_a_bicubic_backbone() -> None:
    """timm's resnet18 asks for bicubic resampling; tensor affine warps only do bilinear."""
    import torch

    from supcon.data import build_augmentation

    augment = build_augmentation("geometric", 32, channels=1, interpolation="bicubic")
    out = augment(Image.fromarray(np.full((40, 36), 200, np.uint8)))
    assert tuple(out.shape) == (1, 32, 32) and torch.isfinite(out).all()


def test_seed_summary_and_paired_differences_by_hand() -> None:
    runs = [
        {"variant": "(a) x", "seed": 0, "recall@1": 0.4, "recall@8": 0.8, "map@r": 0.10,
         "wall_s": 100.0, "command": "a"},
        {"variant": "(b) y", "seed": 0, "recall@1": 0.3, "recall@8": 0.9, "map@r": 0.12,
         "wall_s": 110.0, "command": "b"},
        {"variant": "(a) x", "seed": 1, "recall@1": 0.6, "recall@8": 0.8, "map@r": 0.14,
         "wall_s": 104.0, "command": "a"},
        {"variant": "(b) y", "seed": 1, "recall@1": 0.4, "recall@8": 0.7, "map@r": 0.12,
         "wall_s": 102.0, "command": "b"},
        {"variant": "(e) z", "seed": 0, "recall@1": 0.5, "recall@8": 0.6, "map@r": 0.05,
         "wall_s": None, "command": ""},
    ]  # fmt: skip
    rows = {r["variant"]: r for r in bench_quality.summarise(runs)}
    assert rows["(a) x"]["recall@1"] == pytest.approx(0.5)
    assert rows["(a) x"]["recall@1_std"] == pytest.approx(0.1 * 2**0.5)  # (0.4, 0.6): s = 0.1414
    assert rows["(a) x"]["seeds"] == [0, 1] and rows["(e) z"]["wall_s"] is None
    assert "recall@1_std" not in rows["(e) z"]
    diff = bench_quality.paired_differences(runs)
    assert diff["seeds"] == [0, 1]
    assert diff["recall@1"]["per_seed"] == pytest.approx([0.1, 0.2])
    assert diff["recall@1"]["mean"] == pytest.approx(0.15)
    assert diff["wall_s"]["per_seed"] == pytest.approx([-10.0, 2.0])
    assert diff["map@r"]["std"] == pytest.approx((0.02 * 0.02 * 2) ** 0.5)  # (-0.02, 0.02)
    table = bench_quality.markdown_table(list(rows.values()))
    assert "| (a) x | 0.500 ± 0.141 |" in table and "| – |" in table
    assert bench_quality.paired_differences(runs[4:]) is None


def test_merging_replaces_a_run_of_the_same_seed_and_skips_missing_walls(tmp_path) -> None:
    def run(variant: str, seed: int, r1: float, wall: float | None) -> dict:
        return {"variant": variant, "seed": seed, "recall@1": r1, "recall@8": 0.5,
                "map@r": 0.1, "wall_s": wall, "command": ""}  # fmt: skip

    merged = bench_quality.merge_runs(
        [run("(a) x", 0, 0.1, None), run("(b) y", 0, 0.2, None)],
        [run("(a) x", 0, 0.4, None), run("(a) x", 1, 0.5, 90.0), run("(b) y", 1, 0.3, 100.0)],
    )
    assert [(r["variant"], r["seed"], r["recall@1"]) for r in merged] == [
        ("(a) x", 0, 0.4), ("(a) x", 1, 0.5), ("(b) y", 0, 0.2), ("(b) y", 1, 0.3)
    ]  # fmt: skip
    diff = bench_quality.paired_differences(merged)
    assert diff["recall@1"]["per_seed"] == pytest.approx([0.2, 0.2])
    assert diff["wall_s"] == {"per_seed": [-10.0], "seeds": [1], "mean": -10.0, "std": None}
    setup = {"epochs": 10}
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"setup": setup, "runs": merged[:2]}))
    second.write_text(json.dumps({"setup": setup, "runs": merged[2:]}))
    out = tmp_path / "out.json"
    assert bench_quality.main(["--merge", str(first), str(second), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["runs"] == merged and written["a_minus_b"] == diff
    second.write_text(json.dumps({"setup": {"epochs": 3}, "runs": []}))
    with pytest.raises(SystemExit, match="different setups"):
        bench_quality.main(["--merge", str(first), str(second), "--out", str(out)])


def test_pml_script_gets_supcon_s_steps_per_epoch(generated) -> None:
    root, _ = generated  # 40 training classes × 2 images
    # m = 4: one chunk per class, 40 chunks, 128 // 4 = 32 classes per batch -> ceil(40 / 32)
    assert bench_quality.supcon_steps_per_epoch(root, ["train.batch_size=128"]) == 2
    # m = 4, batch 8: 2 classes per batch -> 40 / 2
    assert bench_quality.supcon_steps_per_epoch(root, ["train.batch_size=8"]) == 20


def test_set_overrides_name_their_runs_apart_from_the_shipped_recipe() -> None:
    name = bench_quality.variant_name("(a) supcon, recipes/symbols.yaml", ["augment.shear=8"])
    assert name == "(a+) supcon, recipes/symbols.yaml + augment.shear=8"
    assert bench_quality.variant_name("(c) x", []) == "(c) x"
    runs = [
        {"variant": "(a) x", "seed": 0, "recall@1": 0.4, "command": "a"},
        {"variant": name, "seed": 0, "recall@1": 0.9, "command": "a+"},
        {"variant": "(b) y", "seed": 0, "recall@1": 0.3, "command": "b"},
    ]
    diff = bench_quality.paired_differences(runs)  # (a) − (b): the (a+) run is not (a)
    assert diff["recall@1"]["per_seed"] == pytest.approx([0.1])
    assert len(bench_quality.summarise(runs)) == 3
    with pytest.raises(SystemExit) as exit_info:
        bench_quality.main(["--set", "augment.shear"])
    assert exit_info.value.code == 2
