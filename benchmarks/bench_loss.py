"""Benchmark the SupCon loss engine against pytorch-metric-learning's ``SupConLoss``.

    python benchmarks/bench_loss.py                 # CPU: B = 1024, 4096, 8192 at D = 128
    python benchmarks/bench_loss.py --huge          # + B = 65,536 (ours only; PML infeasible)
    python benchmarks/bench_loss.py --device cuda   # GPU target: B = 65,536, D = 256, TF32

Time: median of ``--repeats`` forward + backward passes (after one warm-up round) on ``(B, D)``
float32 embeddings with integer labels (``B // 8`` classes, 8 samples each on average), all in
one process and interleaved round-robin (one pass of each implementation per round), so the
ratios compare like with like even on a shared machine. Memory: peak extra RSS of one forward +
backward, each implementation in a fresh subprocess (the kernel's peak-RSS mark, reset just
before the call, minus the RSS before it; a small warm-up call first so lazy library
initialisation is not counted). Torch uses its
default thread count. Prints a markdown table and writes ``benchmarks/results/loss.json``
atomically.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from supcon.io import atomic_write_json  # noqa: E402
from supcon.losses import supcon_loss  # noqa: E402

TEMPERATURE = 0.1
IMPLEMENTATIONS = ("pml", "dense", "tiled", "auto")


def make_batch(
    batch: int, dim: int, device: str, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float32 embeddings and labels with about 8 samples per class."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dim, generator=gen).to(device)
    labels = torch.randint(0, max(1, batch // 8), (batch,), generator=gen).to(device)
    return x, labels


def loss_call(name: str):
    """``f(embeddings, labels) -> loss`` for one implementation."""
    if name == "pml":
        from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss

        pml = PMLSupConLoss(temperature=TEMPERATURE)
        return lambda x, y: pml(x, y)
    tiled = {"dense": False, "tiled": True, "auto": None}[name]
    return lambda x, y: supcon_loss(x, y, temperature=TEMPERATURE, tiled=tiled)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_fwd_bwd(name: str, x: torch.Tensor, labels: torch.Tensor, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` forward + backward passes (after one warm-up)."""
    fn = loss_call(name)
    times = [_one_pass(fn, x, labels) for _ in range(repeats + 1)]
    return times[1:]


def _one_pass(fn, x: torch.Tensor, labels: torch.Tensor) -> float:
    leaf = x.detach().clone().requires_grad_()
    gc.collect()
    _sync(x.device.type)
    start = time.perf_counter()
    fn(leaf, labels).backward()
    _sync(x.device.type)
    return time.perf_counter() - start


def time_interleaved(
    names: tuple[str, ...], x: torch.Tensor, labels: torch.Tensor, repeats: dict[str, int]
) -> dict[str, list[float]]:
    """Round-robin timing: one pass of each implementation per round, so that load from other
    processes on a shared machine hits all of them alike. One warm-up round is discarded."""
    fns = {name: loss_call(name) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(max(repeats.values()) + 1):
        for name in names:
            if round_ <= repeats[name]:
                seconds = _one_pass(fns[name], x, labels)
                if round_:
                    times[name].append(seconds)
    return times


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def measure_peak_rss(name: str, batch: int, dim: int) -> dict[str, Any]:
    """Run in a fresh process: peak extra RSS of one forward + backward.

    The peak mark is reset just before the call, so import-time peaks do not count.
    """
    fn = loss_call(name)
    warm_x, warm_y = make_batch(64, dim, "cpu", seed=1)
    fn(warm_x.requires_grad_(), warm_y).backward()  # lazy initialisation outside the window
    x, labels = make_batch(batch, dim, "cpu")
    leaf = x.requires_grad_()
    gc.collect()
    _reset_peak_rss()
    before = _status_bytes("VmRSS")
    start = time.perf_counter()
    fn(leaf, labels).backward()
    seconds = time.perf_counter() - start
    peak = _status_bytes("VmHWM")
    return {"extra_bytes": max(0, peak - before), "seconds": seconds}


def peak_rss_in_subprocess(name: str, batch: int, dim: int, timeout: float) -> dict[str, Any]:
    """:func:`measure_peak_rss` in a child process; ``{"error": ...}`` if it dies."""
    cmd = [sys.executable, __file__, "--_rss", name, "--_batch", str(batch), "--dim", str(dim)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["killed"]
        return {"error": f"exit {done.returncode}: {tail[0]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def pml_bytes_estimate(batch: int) -> int:
    """Lower bound on PML's memory: the B×B float32 similarity matrix and its two float masks."""
    return 3 * 4 * batch * batch


def cpu_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for batch in args.sizes:
        x, labels = make_batch(batch, args.dim, "cpu")
        row: dict[str, Any] = {"batch": batch, "dim": args.dim}
        slow = batch >= 8192
        repeats = {
            name: min(args.repeats, 3) if name in ("pml", "dense") and slow else args.repeats
            for name in IMPLEMENTATIONS
        }
        for name, times in time_interleaved(IMPLEMENTATIONS, x, labels, repeats).items():
            row[f"{name}_s"] = statistics.median(times)
            row[f"{name}_runs"] = times
        for name in ("dense", "tiled", "auto"):
            row[f"speedup_{name}"] = row["pml_s"] / row[f"{name}_s"]
        rows.append(row)
        print(
            f"  B={batch}: " + ", ".join(f"{n} {row[f'{n}_s']:.3f} s" for n in IMPLEMENTATIONS),
            flush=True,
        )
    result: dict[str, Any] = {"timing": rows}
    if not args.no_memory:
        mem = {"batch": args.memory_batch, "dim": args.dim}
        for name in ("pml", "dense", "tiled"):
            mem[name] = peak_rss_in_subprocess(name, args.memory_batch, args.dim, timeout=1800)
            print(f"  peak extra RSS {name} B={args.memory_batch}: {mem[name]}", flush=True)
        if "extra_bytes" in mem["pml"] and "extra_bytes" in mem["tiled"]:
            mem["tiled_fraction_of_pml"] = mem["tiled"]["extra_bytes"] / mem["pml"]["extra_bytes"]
        result["memory"] = mem
    if args.huge:
        huge = {"batch": 65536, "dim": args.dim}
        huge["ours"] = peak_rss_in_subprocess("auto", 65536, args.dim, timeout=3600)
        huge["pml_estimate_bytes"] = pml_bytes_estimate(65536)
        mem = result.get("memory", {})
        if "extra_bytes" in mem.get("pml", {}):
            scale = (65536 / mem["batch"]) ** 2
            huge["pml_extrapolated_bytes"] = mem["pml"]["extra_bytes"] * scale
        print(f"  B=65536: {huge['ours']}", flush=True)
        result["huge"] = huge
    return result


def cuda_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    if not torch.cuda.is_available():
        print("--device cuda: no CUDA device here; nothing measured.")
        return {"skipped": "no CUDA device"}
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    # The device's achievable TF32 matmul rate, from a large square product.
    n = 8192
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    tf32_rate = 10 * 2 * n**3 / (time.perf_counter() - start)
    del a, b
    rows = []
    sizes = args.sizes if args.sizes != DEFAULT_SIZES else [8192, 16384, 65536]
    for batch in sizes:
        x, labels = make_batch(batch, args.dim, "cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        times = time_fwd_bwd("auto", x, labels, args.repeats)
        peak = torch.cuda.max_memory_allocated() - base
        median = statistics.median(times)
        flop = 6 * batch * batch * args.dim
        floor = flop / tf32_rate
        rows.append(
            {
                "batch": batch,
                "dim": args.dim,
                "seconds": median,
                "achieved_tflops": flop / median / 1e12,
                "tf32_matmul_tflops": tf32_rate / 1e12,
                "floor_seconds": floor,
                "times_floor": median / floor,
                "peak_extra_cuda_bytes": peak,
            }
        )
        mib = peak / 2**20
        print(f"  B={batch}: {median * 1e3:.1f} ms, {median / floor:.2f}x floor, {mib:.0f} MiB")
    return {"device_name": torch.cuda.get_device_name(), "timing": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = []
    if "timing" in result and result.get("device") == "cpu":
        lines += [
            "| B | D | PML SupConLoss | ours dense | ours tiled | ours auto "
            "| speed-up (auto vs PML) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["timing"]:
            lines.append(
                f"| {r['batch']} | {r['dim']} | {r['pml_s']:.3f} s | {r['dense_s']:.3f} s | "
                f"{r['tiled_s']:.3f} s | {r['auto_s']:.3f} s | {r['speedup_auto']:.1f}× |"
            )
        mem = result.get("memory")
        if mem:
            lines += [
                "",
                f"Peak extra RSS, one forward + backward at B={mem['batch']}, D={mem['dim']}:",
                "",
            ]
            lines += ["| implementation | peak extra RSS |", "|---|---:|"]
            for name in ("pml", "dense", "tiled"):
                lines.append(f"| {name} | {_fmt_mem(mem[name])} |")
            if "tiled_fraction_of_pml" in mem:
                lines.append(f"| tiled / PML | {mem['tiled_fraction_of_pml']:.3f} |")
        huge = result.get("huge")
        if huge:
            est = huge.get("pml_extrapolated_bytes", huge["pml_estimate_bytes"])
            lines += [
                "",
                f"B=65,536, D={huge['dim']}: ours (auto → tiled) {_fmt_ours(huge['ours'])}; "
                f"PML infeasible (≈ {est / 2**30:.0f} GiB, its B=8192 peak × 64; the B×B "
                f"matrix alone is {4 * 65536**2 / 2**30:.0f} GiB).",
            ]
    elif "timing" in result:
        lines += [
            "| B | D | time | achieved TFLOP/s | TF32 matmul TFLOP/s | × floor "
            "| peak extra CUDA memory |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["timing"]:
            lines.append(
                f"| {r['batch']} | {r['dim']} | {r['seconds'] * 1e3:.1f} ms | "
                f"{r['achieved_tflops']:.1f} | "
                f"{r['tf32_matmul_tflops']:.1f} | {r['times_floor']:.2f} | "
                f"{r['peak_extra_cuda_bytes'] / 2**20:.0f} MiB |"
            )
    return "\n".join(lines)


def _fmt_mem(entry: dict[str, Any]) -> str:
    if "extra_bytes" not in entry:
        return entry.get("error", "n/a")
    return f"{entry['extra_bytes'] / 2**20:,.0f} MiB"


def _fmt_ours(entry: dict[str, Any]) -> str:
    if "extra_bytes" not in entry:
        return entry.get("error", "n/a")
    return f"{entry['seconds']:.1f} s, peak extra RSS {entry['extra_bytes'] / 2**20:,.0f} MiB"


DEFAULT_SIZES = [1024, 4096, 8192]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    parser.add_argument("--dim", type=int, default=None, help="default 128 (cpu), 256 (cuda)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-batch", type=int, default=8192)
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS subprocesses")
    parser.add_argument("--huge", action="store_true", help="also run B=65,536 (ours only)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "loss.json")
    parser.add_argument("--_rss", help=argparse.SUPPRESS)
    parser.add_argument("--_batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dim is None:
        args.dim = 256 if args.device == "cuda" else 128
    if args._rss:
        print(json.dumps(measure_peak_rss(args._rss, args._batch, args.dim)))
        return 0
    threads = torch.get_num_threads()
    print(f"supcon loss benchmark on {args.device}, torch {torch.__version__}, {threads} threads")
    load_before = os.getloadavg()
    result = cpu_benchmark(args) if args.device == "cpu" else cuda_benchmark(args)
    result.update(
        {
            # Other processes on the machine slow block-wise code more than one big kernel
            # (OpenMP threads spin-wait between regions): record the load to judge a run.
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "device": args.device,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "temperature": TEMPERATURE,
            "command": "python benchmarks/bench_loss.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
        }
    )
    table = markdown(result)
    print()
    print(table)
    out = args.out
    if args.device == "cuda":
        out = out.with_name(out.stem + "_cuda" + out.suffix)
    atomic_write_json(out, result)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
