"""Benchmark exact retrieval evaluation against PML's ``AccuracyCalculator``, and FAISS indexes.

    python benchmarks/bench_eval.py                 # CPU: leave-one-out at N = 50k, 100k; indexes
    python benchmarks/bench_eval.py --quick         # small sizes, a smoke test
    python benchmarks/bench_eval.py --device cuda   # the same on the GPU + 1M × 1M recall@1

Data: "random but clustered" unit vectors, D = 128: ``N / per_class`` Gaussian centres, each
point a centre plus noise (σ = 1.5 per coordinate), labels drawn uniformly (so class sizes vary
around ``per_class``), rows in random order.

Metrics: leave-one-out. Ours: ``retrieval_metrics(x, labels, ks=(1, 2, 4, 8))`` (recall@1/2/4/8,
precision@1, mAP@R, R-precision in one call). PML: ``AccuracyCalculator(include=(precision_at_1,
r_precision, mean_average_precision_at_r), k="max_bin_count")`` on the same unit vectors (its
FAISS ``IndexFlatL2`` ranks unit vectors as cosine does). Each call runs in a fresh subprocess,
alternating ours / PML, ``--repeats`` times (median time reported). Memory: the process's peak
RSS (kernel high-water mark, reset just before the call) minus its RSS before the call, i.e.
the call's own working memory on top of the input.

Large classes (``--large-r N PER_CLASS``): ours alone, to show that mAP@R's depth (``R`` ≈ the
class size) costs ``O(chunk · R)`` memory, not ``O(N · R)`` (PML holds ``N × k`` neighbour
arrays: gigabytes here).

Indexes: gallery of ``--index-n`` vectors, 1,000 held-out queries; recall@10 = fraction of the
exact top-10 found; query time = batch search of all queries / number of queries (one thread
count, FAISS default).

Prints markdown tables and writes ``benchmarks/results/eval.json`` atomically.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from supcon.io import atomic_write_json  # noqa: E402

DIM = 128
NOISE = 1.5
PML_KEYS = {
    "precision@1": "precision_at_1",
    "r_precision": "r_precision",
    "map@r": "mean_average_precision_at_r",
}


def clustered(n: int, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 128)`` unit float32 vectors around ``n / per_class`` centres, and their labels."""
    rng = np.random.default_rng(seed)
    classes = max(1, n // per_class)
    centres = rng.normal(size=(classes, DIM)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    x = centres[labels] + NOISE * rng.normal(size=(n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def worker(kind: str, n: int, per_class: int, device: str, at_r: bool) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import resource

    import torch

    x, labels = clustered(n, per_class)
    if kind == "ours":
        from supcon.evaluation import retrieval_metrics

        ks = (1, 2, 4, 8) if at_r else (1,)
        retrieval_metrics(x[:200], labels[:200], ks=ks, device=device)  # warm-up: lazy inits
        inputs = torch.from_numpy(x).to(device) if device == "cuda" else x

        def call() -> dict[str, float]:
            return retrieval_metrics(
                inputs, labels, ks=ks, precision_ks=(1,) if at_r else (), at_r=at_r, device=device
            )
    else:
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calc = AccuracyCalculator(include=tuple(PML_KEYS.values()), k="max_bin_count")
        calc.device = torch.device(device)
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(labels).to(device)
        calc.get_accuracy(xt[:200], yt[:200])  # warm-up

        def call() -> dict[str, float]:
            out = calc.get_accuracy(xt, yt)
            return {ours: float(out[theirs]) for ours, theirs in PML_KEYS.items()}

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = _rss_bytes("VmRSS")
    exact_peak = _reset_peak()
    cpu_before = time.process_time()
    started = time.perf_counter()
    metrics = call()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_before
    peak = (
        _rss_bytes("VmHWM")
        if exact_peak
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    result = {
        "kind": kind,
        "n": n,
        "per_class": per_class,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_extra_mib": (peak - before) / 2**20,
        "peak_rss_mib": peak / 2**20,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)},
    }
    if device == "cuda":
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def spawn(kind: str, n: int, per_class: int, device: str, at_r: bool = True) -> dict[str, Any]:
    """Run :func:`worker` in a fresh interpreter and parse its result."""
    cmd = [sys.executable, __file__, "--worker", kind, "--n", str(n), "--per-class", str(per_class)]
    cmd += ["--device", device] + ([] if at_r else ["--no-at-r"])
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(sizes: list[tuple[int, int]], device: str, repeats: int) -> list[dict[str, Any]]:
    """Ours vs PML per size, alternating, ``repeats`` times each."""
    rows = []
    for n, per_class in sizes:
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "pml": []}
        for _ in range(repeats):
            for kind in ("ours", "pml"):
                runs[kind].append(spawn(kind, n, per_class, device))
                took, cpu = runs[kind][-1]["seconds"], runs[kind][-1]["cpu_seconds"]
                print(f"  {kind:4s} N={n:>7}: {took:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        ours, pml = runs["ours"][0], runs["pml"][0]
        t_ours = statistics.median(r["seconds"] for r in runs["ours"])
        t_pml = statistics.median(r["seconds"] for r in runs["pml"])
        diff = max(abs(ours["metrics"][k] - pml["metrics"][k]) for k in PML_KEYS)
        rows.append(
            {
                "n": n,
                "per_class": per_class,
                "classes": n // per_class,
                "ours_s": t_ours,
                "pml_s": t_pml,
                "speedup": t_pml / t_ours,
                "ours_peak_extra_mib": max(r["peak_extra_mib"] for r in runs["ours"]),
                "pml_peak_extra_mib": max(r["peak_extra_mib"] for r in runs["pml"]),
                "max_abs_diff": diff,
                "ours": ours["metrics"],
                "pml": pml["metrics"],
                "ours_runs_s": [r["seconds"] for r in runs["ours"]],
                "pml_runs_s": [r["seconds"] for r in runs["pml"]],
                "ours_cpu_s": [r["cpu_seconds"] for r in runs["ours"]],
                "pml_cpu_s": [r["cpu_seconds"] for r in runs["pml"]],
            }
        )
    return rows


TRADE_OFFS: dict[str, list[dict[str, int]]] = {
    "flat": [{}],
    "ivf": [{"nprobe": 16}, {"nprobe": 64}],
    "hnsw": [{"ef_search": 64}, {"ef_search": 256}],
    "ivfpq": [{"nprobe": 16}, {"nprobe": 64}],
}


def _cpu(index: Any) -> Any:
    import faiss

    if (
        hasattr(faiss, "index_gpu_to_cpu")
        and "Gpu" in type(faiss.downcast_index(index.index)).__name__
    ):
        return faiss.index_gpu_to_cpu(index)
    return index


def index_table(n: int, queries: int, device: str) -> list[dict[str, Any]]:
    """Build time, query time and recall@10 (vs exact) of each index type."""
    import faiss

    from supcon.evaluation.index import IndexParams, build_index

    x, _ = clustered(n + queries, per_class=100, seed=1)
    gallery, query = x[queries:], x[:queries]
    rows, exact = [], None
    for kind, variants in TRADE_OFFS.items():
        started = time.perf_counter()
        index = build_index(gallery, params=IndexParams(kind), device=device)
        build_s = time.perf_counter() - started
        size = len(faiss.serialize_index(_cpu(index.index)))
        for settings in variants:
            index.configure(**settings)
            index.search(query[:10], 10)
            started = time.perf_counter()
            _, found = index.search(query, 10)
            query_s = time.perf_counter() - started
            if exact is None:
                exact = found
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
            rows.append(
                {
                    "kind": kind,
                    "settings": {k: v for k, v in index.params.as_dict().items() if k != "kind"},
                    "build_s": build_s,
                    "query_ms": 1000 * query_s / queries,
                    "recall@10": float(recall),
                    "size_mib": size / 2**20,
                }
            )
            took = rows[-1]["query_ms"]
            print(f"  {kind:6s} {settings} recall@10 {recall:.3f}  {took:.3f} ms/query")
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| N | classes | supcon | PML AccuracyCalculator | speedup (wall / CPU) | "
        "peak extra RSS supcon | peak extra RSS PML | max abs diff (P@1, R-prec, mAP@R) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["leave_one_out"]:
        ours_cpu, pml_cpu = statistics.median(r["ours_cpu_s"]), statistics.median(r["pml_cpu_s"])
        lines.append(
            f"| {r['n']:,} | {r['classes']:,} | {r['ours_s']:.1f} s ({ours_cpu:.1f} s CPU) | "
            f"{r['pml_s']:.1f} s ({pml_cpu:.1f} s CPU) | {r['speedup']:.2f}× / "
            f"{pml_cpu / ours_cpu:.2f}× | {r['ours_peak_extra_mib']:.0f} MiB | "
            f"{r['pml_peak_extra_mib']:.0f} MiB | {r['max_abs_diff']:.1e} |"
        )
    if result.get("large_r"):
        r = result["large_r"]
        lines += [
            "",
            f"Large classes (ours only): N = {r['n']:,}, about {r['per_class']:,} per class: "
            f"{r['seconds']:.1f} s, peak extra RSS {r['peak_extra_mib']:.0f} MiB",
        ]
    if result.get("recall_at_1_1m"):
        r = result["recall_at_1_1m"]
        lines += ["", f"1M × 1M exact recall@1 ({result['device']}): {r['seconds']:.1f} s"]
    if result.get("indexes"):
        lines += [
            "",
            f"Indexes: {result['index_n']:,} gallery vectors, D = 128, "
            f"{result['index_queries']:,} queries, k = 10",
            "",
            "| type | settings | recall@10 vs exact | query time | build time | size |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in result["indexes"]:
            settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "exact"
            lines.append(
                f"| {r['kind']} | {settings} | {r['recall@10']:.3f} | {r['query_ms']:.3f} ms | "
                f"{r['build_s']:.1f} s | {r['size_mib']:.1f} MiB |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000])
    parser.add_argument("--per-class", type=int, default=100, help="mean class size")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--index-n", type=int, default=100_000)
    parser.add_argument("--index-queries", type=int, default=1000)
    parser.add_argument("--no-indexes", action="store_true")
    parser.add_argument(
        "--large-r",
        type=int,
        nargs=2,
        default=[50_000, 10_000],
        metavar=("N", "PER_CLASS"),
        help="ours alone on large classes (deep mAP@R lists); 0 0 skips",
    )
    parser.add_argument("--quick", action="store_true", help="N = 5k, 10k; 20k-vector indexes")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "eval.json"))
    parser.add_argument("--worker", choices=("ours", "pml"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-at-r", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(
            json.dumps(worker(args.worker, args.n, args.per_class, args.device, not args.no_at_r))
        )
        return 0
    if args.quick:
        args.sizes, args.index_n, args.large_r = [5_000, 10_000], 20_000, [10_000, 2_000]
    import faiss
    import pytorch_metric_learning
    import torch

    result: dict[str, Any] = {
        "device": args.device,
        "platform": platform.platform(),
        "cpu_count": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
        "dim": DIM,
        "noise": NOISE,
        "per_class": args.per_class,
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    if args.device == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    print("leave-one-out metrics, ours vs PML:", flush=True)
    result["leave_one_out"] = compare(
        [(n, args.per_class) for n in args.sizes], args.device, args.repeats
    )
    if args.large_r[0]:
        n, per_class = args.large_r
        print(f"large classes, ours only: N={n}, per_class={per_class}", flush=True)
        result["large_r"] = spawn("ours", n, per_class, args.device)
    if args.device == "cuda":
        print("1M × 1M exact recall@1:", flush=True)
        result["recall_at_1_1m"] = spawn("ours", 1_000_000, args.per_class, "cuda", at_r=False)
    if not args.no_indexes:
        print("indexes:", flush=True)
        result["index_n"], result["index_queries"] = args.index_n, args.index_queries
        result["indexes"] = index_table(args.index_n, args.index_queries, args.device)
    print()
    print(markdown(result))
    atomic_write_json(args.out, result)
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
