"""Training-step throughput: a full supcon step vs the bare timm backbone at the same settings.

    python benchmarks/bench_train.py                    # CPU: resnet18, 64 px, batch 64, fp32
    python benchmarks/bench_train.py --device cuda      # GPU: resnet50 + vit_small, 224 px,
                                                        # batch 256, bf16, channels_last

*bare*: ``backbone(x)`` (timm, ``num_classes=0``) → mean of squared features → backward.
*supcon*: :class:`supcon.models.EmbeddingModel` (same backbone + MLP head + L2 norm) →
top-k miner (when ``supcon.miners`` is available) → SupCon loss over the global batch via
:func:`supcon.training.contrast.batch_loss` (the all-gather is a no-op in one process) →
backward. Both zero the gradients first; neither steps an optimizer (that cost is the same).
The batch is ``batch`` images = ``batch / 2`` samples × 2 views. The two modes alternate in
rounds and the median round is reported, which keeps slow drifts (a shared CPU) out of the
ratio; on a shared CPU, ``--threads 1 --clock cpu`` times this process's CPU time instead of
wall time, which other jobs disturb less. *extra* times the added work on its own (head,
L2 norm, miner, loss, and their backward from cached backbone features), a direct measure of
the overhead that a noisy difference of two large numbers cannot hide. Prints a markdown table
and writes JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import timm
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supcon import SupConLoss  # noqa: E402
from supcon.io import atomic_write_json  # noqa: E402
from supcon.models import EmbeddingModel  # noqa: E402
from supcon.training.amp import autocast  # noqa: E402
from supcon.training.contrast import batch_loss  # noqa: E402

VIEWS = 2


def build_miner(k: int):
    """The top-k hard-negative miner, or ``None`` where ``supcon.miners`` has not landed."""
    try:
        from supcon.miners import TopKNegativeMiner
    except ImportError:
        return None
    return TopKNegativeMiner(k=k)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step, device: torch.device, steps: int, clock=time.perf_counter) -> float:
    """Seconds per step over ``steps`` steps, by ``clock``."""
    sync(device)
    start = clock()
    for _ in range(steps):
        step()
    sync(device)
    return (clock() - start) / steps


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    backbone = timm.create_model(name, pretrained=False, num_classes=0)
    model = EmbeddingModel(backbone, 128, "mlp").to(device=device, memory_format=memory_format)
    model.train()
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    images = images.contiguous(memory_format=memory_format)
    labels = torch.arange(args.batch // VIEWS, device=device) % max(2, args.batch // 8)
    loss_fn = SupConLoss(0.1)
    miner = build_miner(args.k) if args.miner else None
    amp = lambda: autocast(device, args.precision)  # noqa: E731
    bare_model = model.backbone
    if args.compile:
        bare_model = torch.compile(bare_model)
        full_model = torch.compile(model)
    else:
        full_model = model

    def bare() -> None:
        model.zero_grad(set_to_none=True)
        with amp():
            features = bare_model(images)
        features.float().pow(2).mean().backward()

    def full() -> None:
        model.zero_grad(set_to_none=True)
        with amp():
            embeddings = full_model(images, output="head")
        batch_loss(loss_fn, embeddings, labels, VIEWS, miner).backward()

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    with torch.no_grad(), amp():
        cached = model.backbone(images)

    def extra() -> None:
        model.zero_grad(set_to_none=True)
        features = cached.detach().requires_grad_(True)
        with amp():
            embeddings = torch.nn.functional.normalize(model.head(features), dim=-1)
        batch_loss(loss_fn, embeddings, labels, VIEWS, miner).backward()

    modes = {"bare": bare, "supcon": full, "extra": extra}
    for fn in modes.values():  # warm up (cudnn autotune, compile, allocator)
        measure(fn, device, args.warmup)
    rounds: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode, fn in modes.items():
            rounds[mode].append(measure(fn, device, args.steps, clock))
    bare_s, full_s, extra_s = (statistics.median(rounds[k]) for k in modes)
    ratios = [f / b for b, f in zip(rounds["bare"], rounds["supcon"], strict=True)]
    return {
        "model": name,
        "batch": args.batch,
        "image_size": args.size,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "miner": f"topk(k={args.k})" if miner is not None else "none",
        "clock": args.clock,
        "bare_images_per_s": args.batch / bare_s,
        "supcon_images_per_s": args.batch / full_s,
        "overhead_pct": 100.0 * (full_s / bare_s - 1.0),
        "overhead_pct_median_of_rounds": 100.0 * (statistics.median(ratios) - 1.0),
        "extra_ms": 1000.0 * extra_s,
        "extra_pct_of_bare": 100.0 * extra_s / bare_s,
        "rounds": rounds,
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", nargs="+", help="timm names (default by device)")
    parser.add_argument("--batch", type=int, help="images per step (default 64 CPU, 256 GPU)")
    parser.add_argument("--size", type=int, help="image side (default 64 CPU, 224 GPU)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction)
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--miner", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--k", type=int, default=32, help="top-k negatives per anchor")
    parser.add_argument("--steps", type=int, help="steps per round (default 3 CPU, 20 GPU)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: default)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: this process's CPU time (steadier on a shared CPU with --threads 1)",
    )
    parser.add_argument("--out", type=Path, help="JSON file (default under benchmarks/results)")
    args = parser.parse_args(argv)
    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    args.models = args.models or (["resnet50", "vit_small_patch16_224"] if gpu else ["resnet18"])
    args.batch = args.batch or (256 if gpu else 64)
    args.size = args.size or (224 if gpu else 64)
    args.precision = args.precision or ("bf16" if gpu else "fp32")
    args.channels_last = gpu if args.channels_last is None else args.channels_last
    args.steps = args.steps or (20 if gpu else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if gpu:
        torch.backends.cudnn.benchmark = True

    results = [bench_model(name, args, device) for name in args.models]
    header = (
        "| model | batch | px | precision | miner | bare img/s | supcon img/s | "
        "step overhead | extra work | extra ÷ bare |"
    )
    print(f"Device: {device_name(device)}; torch {torch.__version__}, timm {timm.__version__}\n")
    print(header)
    print("|---|---:|---:|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['model']} | {r['batch']} | {r['image_size']} | {r['precision']} | "
            f"{r['miner']} | {r['bare_images_per_s']:.1f} | {r['supcon_images_per_s']:.1f} | "
            f"{r['overhead_pct']:+.1f} % | {r['extra_ms']:.1f} ms | "
            f"{r['extra_pct_of_bare']:.2f} % |"
        )
    out = args.out or ROOT / "benchmarks" / "results" / f"bench_train_{args.device}.json"
    atomic_write_json(
        out,
        {
            "benchmark": "bench_train",
            "device": device_name(device),
            "torch": torch.__version__,
            "timm": timm.__version__,
            "argv": sys.argv,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "results": results,
        },
    )
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
