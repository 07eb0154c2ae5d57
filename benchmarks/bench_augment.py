"""Is augmentation the bottleneck? Views/s of each preset, and training images/s with
``data.num_workers`` 0 and 2.

    python benchmarks/bench_augment.py [--size 64] [--images 384] [--epochs 3] [--backbone NAME]

1. Augmentation alone: each preset turns a 64 px PIL image into a normalised view, one process,
   one thread (views/s).
2. Training: ``supcon train`` on a generated folder (8 classes of 64 px images), a small timm
   model, ``train.batch_size=64``, 2 views, for each preset and ``data.num_workers`` 0 and 2
   (workers persist across epochs). Reported: the median of the logged ``images_per_s`` (views
   through the model per second) after the first step of each epoch, and wall time of the run.

Prints a markdown table and writes JSON to ``benchmarks/results/bench_augment.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supcon.io import atomic_write_json  # noqa: E402

PRESETS = ("simclr", "retrieval", "geometric", "randaugment")


def make_folder(root: Path, classes: int, per_class: int, size: int) -> Path:
    """``root/class_k/img_i.png``: noisy class-coloured images with a class-dependent shape."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(classes):
        colour = rng.integers(40, 220, 3)
        for i in range(per_class):
            pixels = rng.normal(colour, 30, (size, size, 3))
            step = 4 + k
            pixels[::step] += 60
            folder = root / f"class_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def views_per_second(preset: str, size: int, seconds: float = 2.0) -> float:
    import torch
    from PIL import Image

    from supcon.data import build_augmentation

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    pipeline = build_augmentation(preset, size)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        pipeline(image)
        count += 1
    return count / (time.perf_counter() - start)


def train_run(folder: Path, preset: str, workers: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        command = [
            sys.executable,
            "-m",
            "supcon",
            "train",
            str(ROOT / "recipes" / "digits.yaml"),
            "data.dataset=folder",
            f"data.root={folder}",
            "data.channels=3",
            f"data.image_size={args.size}",
            f"data.num_workers={workers}",
            "eval.resize=crop",
            f"augment.preset={preset}",
            f"model.backbone={args.backbone}",
            f"train.epochs={args.epochs}",
            "train.batch_size=64",
            "train.threads=1",
            "train.tensorboard=false",
            "optim.warmup_epochs=0",
            "--no-progress",
            "--out",
            str(out),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        with (out / "log.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        first_steps, seen = set(), set()
        for i, row in enumerate(rows):  # the first step of an epoch includes loader start-up
            if row["epoch"] not in seen:
                seen.add(row["epoch"])
                first_steps.add(i)
        rates = [float(r["images_per_s"]) for i, r in enumerate(rows) if i not in first_steps]
        return {"images_per_s": statistics.median(rates), "wall_s": wall, "steps": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=384, help="training folder size")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--backbone", default="test_resnet")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "bench_augment.json")
    )
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "images", 8, args.images // 8, args.size)
        for preset in args.presets:
            row = {"preset": preset, "views_per_s": views_per_second(preset, args.size)}
            for workers in (0, 2):
                run = train_run(folder, preset, workers, args)
                row[f"train_images_per_s_w{workers}"] = run["images_per_s"]
                row[f"wall_s_w{workers}"] = run["wall_s"]
            results.append(row)
            print(json.dumps(row), flush=True)

    header = (
        "| preset | augmentation views/s (1 thread) | train img/s, 0 workers | "
        "train img/s, 2 workers | wall s, 0 / 2 workers |"
    )
    print("\n" + header + "\n|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['preset']} | {r['views_per_s']:.0f} | {r['train_images_per_s_w0']:.0f} | "
            f"{r['train_images_per_s_w2']:.0f} | {r['wall_s_w0']:.1f} / {r['wall_s_w2']:.1f} |"
        )
    atomic_write_json(
        args.out,
        {
            "benchmark": "bench_augment",
            "settings": vars(args),
            "machine": {
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg(),
                "python": platform.python_version(),
            },
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "results": results,
        },
    )
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
