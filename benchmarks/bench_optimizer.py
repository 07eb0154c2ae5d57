"""Optimizer step time: supcon's optimizer (PyTorch's fused kernel) against PyTorch's default.

    python benchmarks/bench_optimizer.py [--backbone resnet18] [--threads 1] [--steps 30]

Builds the timm backbone of ``recipes/symbols.yaml`` (1 input channel, no classifier), gives
every parameter a random gradient and times ``optimizer.step()`` for AdamW and SGD: the anchor
is ``torch.optim.<Name>(model.parameters())`` as a plain script builds it (PyTorch's default
per-tensor implementation on CPU), against :func:`supcon.training.optim.create_optimizer`
(decay groups, ``fused=True`` where the device has the kernel). The two alternate step by
step so that the machine's load falls on both alike; the table shows medians and the ratio.
Writes ``benchmarks/results/bench_optimizer.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import machine_info  # noqa: E402

from supcon.io import atomic_write_json  # noqa: E402
from supcon.training.optim import create_optimizer  # noqa: E402


def step_seconds(optimizer: torch.optim.Optimizer) -> float:
    """Wall time of one ``optimizer.step()``."""
    start = time.perf_counter()
    optimizer.step()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per optimizer")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/bench_optimizer.json"
    )
    args = parser.parse_args(argv)
    import timm

    torch.set_num_threads(args.threads)
    rows = []
    for name, plain_class in (("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        models = [
            timm.create_model(args.backbone, pretrained=False, num_classes=0, in_chans=1)
            for _ in range(2)
        ]
        for model in models:
            for parameter in model.parameters():
                parameter.grad = torch.randn_like(parameter) * 1e-3
        options = {"momentum": 0.9, "nesterov": True} if name == "sgd" else {}
        plain = plain_class(models[0].parameters(), lr=1e-3, weight_decay=0.05, **options)
        ours = create_optimizer(models[1], name, lr=1e-3, weight_decay=0.05)
        times: dict[str, list[float]] = {"plain": [], "supcon": []}
        for step in range(args.steps + 3):  # 3 warm-up steps, then alternate
            for key, optimizer in (("plain", plain), ("supcon", ours)):
                seconds = step_seconds(optimizer)
                if step >= 3:
                    times[key].append(seconds)
        plain_ms = 1000 * statistics.median(times["plain"])
        ours_ms = 1000 * statistics.median(times["supcon"])
        rows.append(
            {
                "optimizer": name,
                "parameters": sum(p.numel() for p in models[0].parameters()),
                "plain_ms": plain_ms,
                "supcon_ms": ours_ms,
                "supcon_fused": bool(ours.defaults.get("fused")),
                "speed_up": plain_ms / ours_ms,
            }
        )
    print(f"{args.backbone}, {args.threads} thread(s), median of {args.steps} steps")
    print("| optimizer | plain torch step ms | supcon step ms | fused | speed-up |")
    print("|---|---:|---:|---|---:|")
    for row in rows:
        print(
            f"| {row['optimizer']} | {row['plain_ms']:.1f} | {row['supcon_ms']:.1f} | "
            f"{row['supcon_fused']} | {row['speed_up']:.2f}× |"
        )
    atomic_write_json(
        args.out,
        {
            "setup": vars(args) | {"out": str(args.out)},
            "rows": rows,
            "machine": machine_info(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
