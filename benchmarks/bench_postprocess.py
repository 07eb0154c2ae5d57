"""Retrieval post-processing: what αQE, DBA and exact re-ranking of IVF-PQ shortlists buy, and cost.

    nice -n 10 python benchmarks/bench_postprocess.py            # 20k gallery, 2k queries
    nice -n 10 python benchmarks/bench_postprocess.py --quick    # smoke test

Data: "random but clustered" unit vectors, D = 128: ``classes`` Gaussian centres, each point
a centre plus noise (σ per coordinate, ``--noise``), labels uniform; queries and gallery are
disjoint draws of the same classes (query → gallery protocol, so DBA never sees a query).

Part 1, the same embeddings scored by :func:`supcon.evaluation.postprocess.postprocessed_metrics`
(exact search): plain, αQE, DBA, DBA + αQE; recall@1 and MAP@R, and the time each adds over the
plain evaluation (median of ``--repeats``).

Part 2, IVF-PQ (``nlist = 4·√N``, ``nprobe = 16``, ``pq_m = 16`` bytes/vector) without and with
``refine=K`` (shortlist of K re-scored exactly from the stored vectors, ``store_exact``):
recall@10 against the exact top-10 and the search time per query (all queries in one batch).

Prints markdown tables and writes ``benchmarks/results/postprocess.json`` atomically.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from supcon.io import atomic_write_json  # noqa: E402


def clustered(n: int, classes: int, noise: float, dim: int, seed: int) -> tuple:
    """``(n, dim)`` unit vectors around ``classes`` fixed centres (seed 0) and their labels."""
    centres = np.random.default_rng(0).normal(size=(classes, dim))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    x = centres[labels] + noise * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def part_postprocess(x, labels, is_query, args) -> list[dict]:
    from supcon.evaluation.postprocess import postprocessed_metrics

    settings = [
        ("plain", {}),
        (f"αQE (n={args.qe}, α=3)", {"qe": args.qe}),
        (f"DBA (n={args.dba}, α=3)", {"dba": args.dba}),
        ("DBA + αQE", {"qe": args.qe, "dba": args.dba}),
    ]
    rows = []
    for name, kwargs in settings:
        metrics, seconds = timed(
            lambda kwargs=kwargs: postprocessed_metrics(
                x, labels, is_query=is_query, is_gallery=~is_query, ks=(1,), device="cpu", **kwargs
            ),
            args.repeats,
        )
        rows.append(
            {"setting": name, "recall@1": metrics["recall@1"], "map@r": metrics["map@r"],
             "seconds": seconds}
        )  # fmt: skip
    base = rows[0]["seconds"]
    for row in rows:
        row["added_s"] = row["seconds"] - base
    return rows


def part_refine(gallery, queries, args) -> list[dict]:
    from supcon.evaluation.index import IndexParams, build_index

    k = 10
    exact = build_index(gallery)
    truth = exact.search(queries, k)[1]
    index = build_index(gallery, params=IndexParams("ivfpq", nprobe=16, pq_m=16, store_exact=True))
    plain = build_index(gallery, params=IndexParams("ivfpq", nprobe=16, pq_m=16))
    rows = []
    for name, idx, refine in [
        ("ivfpq", plain, None),
        *[(f"ivfpq + refine {r}", index, r) for r in args.refine],
        ("flat (exact)", exact, None),
    ]:
        (_, found), seconds = timed(
            lambda idx=idx, refine=refine: idx.search(queries, k, refine=refine), args.repeats
        )
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth, strict=True)])
        rows.append({"setting": name, "recall@10_vs_exact": float(recall),
                     "ms_per_query": 1000 * seconds / len(queries)})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gallery", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=1.6)
    parser.add_argument("--qe", type=int, default=2)
    parser.add_argument("--dba", type=int, default=2)
    parser.add_argument("--refine", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "postprocess.json"))
    args = parser.parse_args()
    if args.quick:
        args.gallery, args.queries, args.classes, args.repeats = 3000, 300, 150, 1
    dim = 128
    gallery, g_labels = clustered(args.gallery, args.classes, args.noise, dim, seed=1)
    queries, q_labels = clustered(args.queries, args.classes, args.noise, dim, seed=2)
    x = np.concatenate([queries, gallery])
    labels = np.concatenate([q_labels, g_labels])
    is_query = np.arange(len(x)) < len(queries)

    post = part_postprocess(x, labels, is_query, args)
    refine = part_refine(gallery, queries, args)
    print(f"{args.queries} queries → {args.gallery} gallery, D = {dim}, {args.classes} classes")
    print()
    print("| post-processing | recall@1 | MAP@R | time added |")
    print("|---|---:|---:|---:|")
    for r in post:
        print(f"| {r['setting']} | {r['recall@1']:.4f} | {r['map@r']:.4f} | "
              f"{r['added_s']:+.2f} s |")  # fmt: skip
    print()
    print("| index | recall@10 vs exact | ms / query |")
    print("|---|---:|---:|")
    for r in refine:
        print(f"| {r['setting']} | {r['recall@10_vs_exact']:.3f} | {r['ms_per_query']:.3f} |")
    atomic_write_json(args.out, {"settings": vars(args), "postprocess": post, "refine": refine})
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
