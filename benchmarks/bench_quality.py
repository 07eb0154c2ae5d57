"""Retrieval quality on unseen classes: the shipped symbols recipe against a plain PML script.

    nice -n 10 python benchmarks/bench_quality.py [--quick] [--threads 1] [--data DIR]

Generates the class-disjoint symbols task (``benchmarks/symbols.py``: 40 training and 20 unseen
test glyph classes × 50 grayscale 32×32 images, seeded), then trains, each as its own
subprocess with the same backbone (timm ``resnet18`` from scratch, 1 input channel), epochs,
batch size, M-per-class sampler and optimizer (AdamW, learning rate and weight decay read from
the recipe):

- (a) ``supcon train recipes/symbols.yaml``;
- (b) ``benchmarks/pml_baseline.py``: PML ``SupConLoss`` + PML ``MPerClassSampler``, random
  crop + small rotation, as a new user would write it;
- (c) (a) with ``augment.preset=simclr``;
- (d) (a) with ``loss.name=arcface`` (a proxy loss);
- (e) raw pixels (no training).

Every model is scored the same way: the pooled backbone features of the test images (the
whole image resized, no crop; each model's own normalisation), leave-one-out cosine retrieval
with :func:`supcon.retrieval_metrics`. Wall time is that of the training subprocess (start-up
and, for ``supcon train``, its own final evaluation and checkpoints included). Prints a
markdown table and writes ``benchmarks/results/bench_quality.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import symbols  # noqa: E402

from supcon.config import load_config  # noqa: E402
from supcon.evaluation import retrieval_metrics  # noqa: E402
from supcon.io import atomic_write_json  # noqa: E402

RECIPE = ROOT / "recipes" / "symbols.yaml"
PML_SCRIPT = ROOT / "benchmarks" / "pml_baseline.py"
KS = (1, 8)
FULL = {"train_classes": 40, "test_classes": 20, "per_class": 50}
QUICK = {"train_classes": 8, "test_classes": 4, "per_class": 8, "epochs": 1}


def supcon_variants() -> dict[str, list[str]]:
    """Name → recipe overrides of the ``supcon train`` variants."""
    return {
        "(a) supcon, recipes/symbols.yaml": [],
        "(c) supcon, augment.preset=simclr": ["augment.preset=simclr"],
        "(d) supcon, loss.name=arcface": ["loss.name=arcface"],
    }


def run(command: list[str], log: Path) -> float:
    """Run ``command`` (PYTHONPATH = this checkout), return its wall time; fail loudly."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return wall


def load_test(root: Path) -> tuple[list, np.ndarray]:
    """The test images (grayscale PIL, as ``data.channels: 1`` loads them) and class ids."""
    from supcon.data import scan_image_folder

    split = dataclasses.replace(scan_image_folder(root / "test"), mode="L")
    return [split.load(i) for i in range(len(split))], split.labels


@torch.no_grad()
def embed(
    encode: Callable[[torch.Tensor], torch.Tensor], images: list, transform: Callable
) -> np.ndarray:
    """``(N, D)`` embeddings of ``images`` after ``transform``, in batches of 256."""
    tensors = torch.stack([transform(image) for image in images])
    return torch.cat([encode(chunk) for chunk in tensors.split(256)]).numpy()


def score(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    metrics = retrieval_metrics(embeddings, labels, ks=KS)
    return {key: float(metrics[key]) for key in ("recall@1", "recall@8", "map@r")}


def markdown_table(results: list[dict]) -> str:
    lines = ["| variant | recall@1 | recall@8 | MAP@R | wall s |", "|---|---|---|---|---|"]
    for r in results:
        wall = f"{r['wall_s']:.0f}" if r["wall_s"] else "–"
        lines.append(
            f"| {r['variant']} | {r['recall@1']:.3f} | {r['recall@8']:.3f} | {r['map@r']:.3f} "
            f"| {wall} |"
        )
    return "\n".join(lines)


def pml_eval_transform(size: int) -> Callable:
    """What the PML script's model expects: grayscale, whole image resized, (x - .5) / .5."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.Grayscale(1),
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize((0.5,), (0.5,)),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny data, 1 epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument(
        "--epochs", type=int, default=10, help="epochs of every trained variant (default 10)"
    )
    parser.add_argument("--data", type=Path, help="generate (or reuse) the data here")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--only", nargs="*", help="run only variants whose name has one of these")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bench_quality.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(args.threads, 1))

    recipe = load_config(RECIPE)
    size = recipe.data.image_size or 32
    epochs = QUICK["epochs"] if args.quick else args.epochs
    sizes = (
        {k: QUICK[k] for k in ("train_classes", "test_classes", "per_class")}
        if args.quick
        else dict(FULL)
    )
    batch = recipe.train.batch_size
    m = int(recipe.sampler.args.get("m", 4))
    if args.quick:
        batch = min(batch, m * sizes["train_classes"])
    common = [
        f"train.epochs={epochs}",
        f"train.batch_size={batch}",
        f"train.threads={args.threads}",
        f"train.seed={args.seed}",
        "train.tensorboard=false",
    ]
    keep = lambda name: not args.only or any(s in name for s in args.only)  # noqa: E731

    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        work = Path(tmp)
        data = args.data or work / "symbols"
        started = time.perf_counter()
        if not (data / "manifest.csv").is_file():
            symbols.generate(data, size=size, seed=args.seed, **sizes)
        print(f"data: {data} ({time.perf_counter() - started:.1f} s)", flush=True)
        images, labels = load_test(data)
        results = []

        def report(name: str, metrics: dict[str, float], wall: float | None, command: str) -> None:
            row = {"variant": name, **metrics, "wall_s": wall, "command": command}
            results.append(row)
            shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            print(f"{name}: {shown}" + (f", {wall:.0f} s" if wall else ""), flush=True)

        variants = supcon_variants()
        order = [next(iter(variants)), "(b) plain PML script", *list(variants)[1:]]
        for name in order:
            if not keep(name):
                continue
            if name.startswith("(b)"):
                state_path = work / "pml.pt"
                command = [
                    sys.executable, str(PML_SCRIPT), str(data / "train"), "--out", str(state_path),
                    "--backbone", recipe.model.backbone, "--image-size", str(size),
                    "--epochs", str(epochs), "--batch-size", str(batch), "--m", str(m),
                    "--lr", str(recipe.optim.lr), "--weight-decay", str(recipe.optim.weight_decay),
                    "--threads", str(args.threads), "--seed", str(args.seed),
                ]  # fmt: skip
                wall = run(command, work / "pml.log")
                import timm

                model = timm.create_model(
                    recipe.model.backbone, pretrained=False, num_classes=0, in_chans=1
                )
                model.load_state_dict(torch.load(state_path, weights_only=True))
                model.eval()
                emb = embed(model, images, pml_eval_transform(size))
                shown = f"python benchmarks/pml_baseline.py DATA/train --epochs {epochs} ..."
                report(name, score(emb, labels), wall, shown)
                continue
            from supcon.runs import load_run

            out = work / f"run{len(results)}"
            overrides = [f"data.root={data}", *common, *variants[name]]
            command = [sys.executable, "-m", "supcon", "train", str(RECIPE), *overrides]
            wall = run([*command, "--out", str(out), "--no-progress"], work / f"{out.name}.log")
            loaded = load_run(out, device="cpu")
            emb = embed(
                lambda x, model=loaded.model: model(x, output="backbone"),
                images,
                loaded.eval_transform,
            )
            shown = " ".join(["supcon train recipes/symbols.yaml", *variants[name]])
            report(name, score(emb, labels), wall, shown)

        if keep("(e) raw pixels"):
            pixels = embed(lambda x: x.flatten(1), images, pml_eval_transform(size))
            report("(e) raw pixels", score(pixels, labels), None, "")

    setup = {
        **sizes,
        "image_size": size,
        "epochs": epochs,
        "batch_size": batch,
        "m": m,
        "backbone": recipe.model.backbone,
        "threads": args.threads,
        "seed": args.seed,
        "quick": args.quick,
    }
    report_json = {
        "setup": setup,
        "results": results,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_end": os.getloadavg(),
            "torch": torch.__version__,
        },
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if not args.quick:
        if args.only and args.out.is_file():  # update those rows of an earlier full run
            earlier = json.loads(args.out.read_text())
            if earlier.get("setup") == setup:
                fresh = {r["variant"] for r in results}
                kept = [r for r in earlier["results"] if r["variant"] not in fresh]
                report_json["results"] = sorted(kept + results, key=lambda r: r["variant"])
        atomic_write_json(args.out, report_json)
    print()
    print(markdown_table(report_json["results"]))
    if not args.quick:
        print(f"written to {args.out}")
    print(json.dumps(setup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
