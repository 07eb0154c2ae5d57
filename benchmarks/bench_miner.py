"""Cost of mining vs the loss it feeds: TopKNegativeMiner against SupCon fwd+bwd, PML for context.

For each batch size B (D-dim float32 embeddings, m=4 samples per class), it times, as the median
of interleaved repeats (every method once per round, so load changes hit all of them alike):

* the anchor: ``supcon_loss(embeddings, labels)`` forward + backward;
* ``TopKNegativeMiner(k)`` and ``TopKNegativeMiner(k, semi_hard=True)``;
* the loss forward + backward restricted to the top-k pairs (what a training step then pays);
* PML's ``BatchHardMiner`` and ``MultiSimilarityMiner`` (context: what PML users pay today).

Ratios are against the anchor from the same run. Prints a markdown table and writes JSON.

    python benchmarks/bench_miner.py [--sizes 1024 4096 8192] [--dim 128] [--k 32] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from pytorch_metric_learning import miners as pml_miners

from supcon import supcon_loss
from supcon.io import atomic_write_json
from supcon.miners import TopKNegativeMiner

RESULTS = Path(__file__).resolve().parent / "results" / "miner.json"


def _methods(embeddings: torch.Tensor, labels: torch.Tensor, k: int) -> dict[str, Callable]:
    topk = TopKNegativeMiner(k)
    semi = TopKNegativeMiner(k, semi_hard=True)
    pairs = topk(embeddings, labels)
    batch_hard = pml_miners.BatchHardMiner()
    multi_similarity = pml_miners.MultiSimilarityMiner()

    def loss() -> None:
        supcon_loss(embeddings.detach().requires_grad_(), labels).backward()

    def loss_with_pairs() -> None:
        x = embeddings.detach().requires_grad_()
        supcon_loss(x, labels, indices_tuple=pairs).backward()

    return {
        "loss": loss,
        "topk": lambda: topk(embeddings, labels),
        "topk_semi_hard": lambda: semi(embeddings, labels),
        "loss_with_topk_pairs": loss_with_pairs,
        "pml_batch_hard": lambda: batch_hard(embeddings, labels),
        "pml_multi_similarity": lambda: multi_similarity(embeddings, labels),
    }


def bench_size(batch: int, dim: int, k: int, repeats: int) -> dict[str, float]:
    """Median milliseconds of every method at one batch size."""
    gen = torch.Generator().manual_seed(batch)
    embeddings = torch.randn(batch, dim, generator=gen)
    labels = torch.randperm(batch, generator=gen) // 4  # m = 4 samples per class
    methods = _methods(embeddings, labels, k)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(repeats + 1):  # round 0 warms up
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}


COLUMNS = [
    ("topk", "top-k k={k}"),
    ("topk_semi_hard", "top-k semi-hard"),
    ("loss_with_topk_pairs", "loss on top-k pairs"),
    ("pml_batch_hard", "PML BatchHard"),
    ("pml_multi_similarity", "PML MultiSimilarity"),
]


def table(rows: list[dict], k: int) -> str:
    """Markdown table: ms and ratio to the loss's fwd+bwd for every method."""
    head = ["B", "loss fwd+bwd (ms)"]
    for _, title in COLUMNS:
        head += [f"{title.format(k=k)} (ms)", "÷ loss"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row["batch"]), f"{row['loss_ms']:.1f}"]
        for key, _ in COLUMNS:
            cells += [f"{row[key + '_ms']:.1f}", f"{row[key + '_ratio']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    rows = []
    for batch in args.sizes:
        ms = bench_size(batch, args.dim, args.k, args.repeats)
        row: dict = {"batch": batch, "loss_ms": ms["loss"]}
        for key, _ in COLUMNS:
            row[key + "_ms"] = ms[key]
            row[key + "_ratio"] = ms[key] / ms["loss"]
        rows.append(row)
        print(f"B={batch}: done", flush=True)
    print(table(rows, args.k))
    atomic_write_json(
        args.out,
        {
            "benchmark": "miner",
            "command": "python benchmarks/bench_miner.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "config": {"dim": args.dim, "k": args.k, "repeats": args.repeats, "m_per_class": 4},
            "environment": {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "python": platform.python_version(),
                "machine": platform.machine(),
                "processor": platform.processor(),
            },
            "results": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
