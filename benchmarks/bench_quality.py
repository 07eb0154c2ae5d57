"""Retrieval quality on unseen classes: the shipped symbols recipe against a plain PML script.

    nice -n 10 python benchmarks/bench_quality.py [--quick] [--threads 1] [--data DIR] [--seeds N]

Generates the class-disjoint symbols task (``benchmarks/symbols.py``: 40 training and 20 unseen
test glyph classes × 50 grayscale 32×32 images, seeded), then trains, each as its own
subprocess with the same backbone (timm ``resnet18`` from scratch, 1 input channel), epochs,
batch size, M-per-class sampler and optimizer (AdamW, learning rate and weight decay read from
the recipe):

- (a) ``supcon train recipes/symbols.yaml``;
- (b) ``benchmarks/pml_baseline.py``: PML ``SupConLoss`` + PML ``MPerClassSampler``, random
  crop + small rotation, as a new user would write it, given as many batches per epoch as
  (a)'s sampler makes (equal optimizer steps);
- (c) (a) with ``augment.preset=simclr``;
- (d) (a) with ``loss.name=arcface`` (a proxy loss);
- (e) raw pixels (no training).

Every model is scored the same way: the pooled backbone features of the test images (the
whole image resized, no crop; each model's own normalisation), leave-one-out cosine retrieval
with :func:`supcon.retrieval_metrics`. Wall time is that of the training subprocess (start-up
and, for ``supcon train``, its own final evaluation and checkpoints included). Prints a
markdown table and writes ``benchmarks/results/bench_quality.json``.

``--seeds N`` trains every variant with training seeds ``seed .. seed + N - 1`` (the data stay
those of ``--seed``; ``--train-seed`` starts elsewhere), interleaved seed by seed ((a), (b), …
for one seed, then the next) so the machine's load falls on all variants alike; the table
shows mean ± standard deviation over the seeds and the JSON adds every run and the per-seed
differences (a) − (b). With ``--only``, the runs are added to those of an earlier JSON of the
same setup (a run of the same variant and seed is replaced); ``--merge A.json B.json`` combines
result files of the same setup (e.g. (a) and (b) run side by side as two processes) into
``--out`` without training.

``--set KEY=VALUE ...`` adds recipe overrides to every ``supcon train`` variant, to try a
setting against the same baseline (e.g. ``--only "(a)" --set augment.shear=8``); those runs
are named ``(a+) … + KEY=VALUE`` so that a JSON keeps them apart from the shipped recipe's, and
the PML script and raw pixels are unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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
from harness import machine_info  # noqa: E402

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


def variant_name(name: str, overrides: list[str]) -> str:
    """``name`` as reported: ``(a) …`` becomes ``(a+) … + KEY=VALUE …`` with ``overrides``."""
    if not overrides:
        return name
    letter, rest = name.split(")", 1)
    return f"{letter}+){rest} + {' '.join(overrides)}"


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


def supcon_steps_per_epoch(root: Path, overrides: list[str]) -> int:
    """Batches per epoch of ``supcon train`` with the recipe's sampler on ``root/train`` (the
    PML script is given as many, so both make the same number of optimizer steps: supcon's
    m-per-class epoch covers every image, PML's stops at ``len(dataset) // batch``)."""
    from supcon.builders import build_batch_sampler
    from supcon.data import scan_image_folder

    config = load_config(RECIPE, [f"data.root={root}", *overrides])
    return len(build_batch_sampler(config, scan_image_folder(root / "train").labels))


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
    """Rows of ``results``; ``±`` the standard deviation over seeds where there are several."""

    def cell(row: dict, key: str, digits: int) -> str:
        if row.get(key) is None:
            return "–"
        spread = row.get(f"{key}_std")
        text = f"{row[key]:.{digits}f}"
        return f"{text} ± {spread:.{digits}f}" if spread is not None else text

    lines = ["| variant | recall@1 | recall@8 | MAP@R | wall s |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['variant']} | {cell(r, 'recall@1', 3)} | {cell(r, 'recall@8', 3)} "
            f"| {cell(r, 'map@r', 3)} | {cell(r, 'wall_s', 0)} |"
        )
    return "\n".join(lines)


METRICS = ("recall@1", "recall@8", "map@r", "wall_s")


def summarise(runs: list[dict]) -> list[dict]:
    """One row per variant (first-seen order): the mean of each metric over its runs, and with
    several runs its sample standard deviation (``<metric>_std``) and the seeds."""
    rows: dict[str, dict] = {}
    for run in runs:
        rows.setdefault(run["variant"], {"variant": run["variant"], "runs": []})["runs"].append(run)
    out = []
    for row in rows.values():
        group = row.pop("runs")
        for key in METRICS:
            values = [r[key] for r in group if r.get(key) is not None]
            row[key] = float(np.mean(values)) if values else None
            if len(values) > 1:
                row[f"{key}_std"] = float(np.std(values, ddof=1))
        row["command"] = group[0]["command"]
        row["seeds"] = [r["seed"] for r in group]
        out.append(row)
    return out


def paired_differences(runs: list[dict], first: str = "(a)", second: str = "(b)") -> dict | None:
    """Per-seed ``first − second`` of every metric (runs of one seed ran back to back), with
    the mean and the sample standard deviation; ``None`` without both variants."""
    by_seed: dict[int, dict[str, dict]] = {}
    for run in runs:
        for tag in (first, second):
            if run["variant"].startswith(tag):
                by_seed.setdefault(run["seed"], {})[tag] = run
    pairs = {seed: both for seed, both in sorted(by_seed.items()) if len(both) == 2}
    if not pairs:
        return None
    out: dict = {"variants": [first, second], "seeds": list(pairs)}
    for key in METRICS:  # a run without a value (e.g. a wall time not comparable) is left out
        diffs = {
            seed: both[first][key] - both[second][key]
            for seed, both in pairs.items()
            if both[first].get(key) is not None and both[second].get(key) is not None
        }
        values = list(diffs.values())
        out[key] = {
            "per_seed": values,
            "seeds": list(diffs),
            "mean": float(np.mean(values)) if values else None,
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
        }
    return out


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


def merge_runs(earlier: list[dict], fresh: list[dict]) -> list[dict]:
    """``earlier`` runs plus ``fresh`` ones, a fresh run replacing one of the same variant and
    seed; sorted by variant, then seed."""
    key = lambda r: (r["variant"], r["seed"])  # noqa: E731
    replaced = {key(r) for r in fresh}
    return sorted([r for r in earlier if key(r) not in replaced] + fresh, key=key)


def merge_files(paths: list[Path], out: Path) -> int:
    """Combine result JSONs of one setup into ``out`` (later files win on equal variant and
    seed); print the table."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    setups = {json.dumps(r["setup"], sort_keys=True) for r in reports}
    if len(setups) != 1:
        raise SystemExit(f"cannot merge results of different setups: {sorted(setups)}")
    runs: list[dict] = []
    for report in reports:
        runs = merge_runs(runs, report["runs"])
    merged = {
        **reports[-1],
        "results": summarise(runs),
        "runs": runs,
        "a_minus_b": paired_differences(runs),
        "merged_from": [str(p) for p in paths],
    }
    atomic_write_json(out, merged)
    print(markdown_table(merged["results"]))
    print(f"written to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny data, 1 epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument(
        "--epochs", type=int, default=10, help="epochs of every trained variant (default 10)"
    )
    parser.add_argument("--data", type=Path, help="generate (or reuse) the data here")
    parser.add_argument("--seed", type=int, default=0, help="data and (first) training seed")
    parser.add_argument(
        "--seeds", type=int, default=1, help="training seeds per variant: seed .. seed+N-1"
    )
    parser.add_argument("--train-seed", type=int, help="first training seed (default: --seed)")
    parser.add_argument(
        "--merge", nargs="+", type=Path, help="combine these result JSONs into --out; no training"
    )
    parser.add_argument("--only", nargs="*", help="run only variants whose name has one of these")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bench_quality.json")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="recipe overrides for every supcon variant (their runs are named (a+), (c+), ...)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    bad = [word for word in args.set if "=" not in word]
    if bad:
        parser.error(f"--set takes section.key=value overrides, got {' '.join(bad)}")
    if args.merge:
        return merge_files(args.merge, args.out)
    first_seed = args.seed if args.train_seed is None else args.train_seed
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
        runs: list[dict] = []

        def report(
            name: str, seed: int, metrics: dict[str, float], wall: float | None, command: str
        ) -> None:
            runs.append(
                {"variant": name, "seed": seed, **metrics, "wall_s": wall, "command": command}
            )
            shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            print(
                f"{name} (seed {seed}): {shown}" + (f", {wall:.0f} s" if wall else ""), flush=True
            )

        variants = supcon_variants()
        order = [next(iter(variants)), "(b) plain PML script", *list(variants)[1:]]
        for seed in range(first_seed, first_seed + args.seeds):  # interleaved, seed by seed
            for name in order:
                if not keep(name):
                    continue
                if name.startswith("(b)"):
                    state_path = work / f"pml{seed}.pt"
                    optim = recipe.optim
                    command = [
                        sys.executable, str(PML_SCRIPT), str(data / "train"),
                        "--out", str(state_path),
                        "--backbone", recipe.model.backbone, "--image-size", str(size),
                        "--epochs", str(epochs), "--batch-size", str(batch), "--m", str(m),
                        "--lr", str(optim.lr), "--weight-decay", str(optim.weight_decay),
                        "--threads", str(args.threads), "--seed", str(seed),
                        "--steps-per-epoch", str(supcon_steps_per_epoch(data, common)),
                    ]  # fmt: skip
                    wall = run(command, work / f"pml{seed}.log")
                    import timm

                    model = timm.create_model(
                        recipe.model.backbone, pretrained=False, num_classes=0, in_chans=1
                    )
                    model.load_state_dict(torch.load(state_path, weights_only=True))
                    model.eval()
                    emb = embed(model, images, pml_eval_transform(size))
                    shown = f"python benchmarks/pml_baseline.py DATA/train --epochs {epochs} ..."
                    report(name, seed, score(emb, labels), wall, shown)
                    continue
                from supcon.runs import load_run

                out = work / f"run{len(runs)}"
                overrides = [
                    f"data.root={data}", *common, f"train.seed={seed}", *variants[name], *args.set
                ]  # fmt: skip
                command = [sys.executable, "-m", "supcon", "train", str(RECIPE), *overrides]
                wall = run([*command, "--out", str(out), "--no-progress"], work / f"{out.name}.log")
                loaded = load_run(out, device="cpu")
                emb = embed(
                    lambda x, model=loaded.model: model(x, output="backbone"),
                    images,
                    loaded.eval_transform,
                )
                shown = " ".join(["supcon train recipes/symbols.yaml", *variants[name], *args.set])
                report(variant_name(name, args.set), seed, score(emb, labels), wall, shown)

        if keep("(e) raw pixels"):
            pixels = embed(lambda x: x.flatten(1), images, pml_eval_transform(size))
            report("(e) raw pixels", first_seed, score(pixels, labels), None, "")

    setup = {
        **sizes,
        "image_size": size,
        "epochs": epochs,
        "batch_size": batch,
        "m": m,
        "backbone": recipe.model.backbone,
        "threads": args.threads,
        "data_seed": args.seed,
        "quick": args.quick,
    }
    report_json = {
        "setup": setup,
        "results": summarise(runs),
        "runs": runs,
        "a_minus_b": paired_differences(runs),
        "machine": machine_info(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if not args.quick:
        if args.only and args.out.is_file():  # add to the runs of an earlier file
            earlier = json.loads(args.out.read_text())
            if earlier.get("setup") == setup:
                merged = merge_runs(earlier.get("runs", []), runs)
                report_json.update(
                    results=summarise(merged), runs=merged, a_minus_b=paired_differences(merged)
                )
        atomic_write_json(args.out, report_json)
    print()
    print(markdown_table(report_json["results"]))
    if report_json["a_minus_b"]:
        diff = report_json["a_minus_b"]
        shown = ", ".join(
            f"{key} {diff[key]['mean']:+.3f}"
            + (f" ± {diff[key]['std']:.3f}" if diff[key]["std"] is not None else "")
            for key in METRICS
            if diff[key]["mean"] is not None
        )
        print(f"(a) − (b) per seed, seeds {diff['seeds']}: {shown}")
    if not args.quick:
        print(f"written to {args.out}")
    print(json.dumps(setup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
