"""Embedding throughput on the CPU: an exported ONNX model (ONNX Runtime) against PyTorch eager.

    nice -n 10 python benchmarks/bench_export.py              # resnet18, vit_small, batch 32
    nice -n 10 python benchmarks/bench_export.py --quick      # test_resnet / test_vit, smoke test

Each model is a supcon ``EmbeddingModel`` (timm backbone, random init: no download; MLP head
to 128-d; L2 norm) at its timm input size (224 px), exported by :func:`supcon.export.export_model`
from a checkpoint as ``supcon export`` does. Both runtimes get the same thread count
(``--threads``, default 2) and the same float32 batch; eager runs under ``torch.inference_mode``.
After ``--warmup`` untimed batches, ``--repeats`` batches are timed alternately (eager, ONNX,
eager, …) so that machine load hits both alike; the median time per batch gives images/s, and
the ratio ONNX / eager is reported from the same run. The max abs difference of the embeddings
is printed as a check.

Prints a markdown table and writes ``benchmarks/results/export.json`` atomically.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from supcon.io import atomic_write_json  # noqa: E402

MODELS = {"full": ("resnet18", "vit_small_patch16_224"), "quick": ("test_resnet", "test_vit")}


def _run_dir(root: Path, backbone: str) -> Path:
    """A checkpoint of a randomly initialised model, as ``supcon train`` writes it."""
    from supcon.builders import build_model
    from supcon.config import config_from_dict, config_to_dict
    from supcon.training.checkpoint import save_checkpoint

    config = config_from_dict(
        {
            "model": {"backbone": backbone, "embedding_dim": 128},
            "data": {"dataset": "folder", "root": str(root)},
        }
    )
    torch.manual_seed(0)
    model = build_model(config.model, 3, pretrained=False)
    state = {"model": model.state_dict(), "config": config_to_dict(config), "in_chans": 3}
    save_checkpoint(root / backbone / "checkpoints" / "last.pt", state)
    return root / backbone


def bench_model(backbone: str, batch: int, threads: int, warmup: int, repeats: int) -> dict:
    """Throughput of eager PyTorch and ONNX Runtime for one backbone."""
    import onnxruntime as ort

    from supcon.export import export_model
    from supcon.runs import load_run

    with tempfile.TemporaryDirectory() as tmp:
        run = load_run(_run_dir(Path(tmp), backbone))
        started = time.perf_counter()
        onnx_path = export_model(run, Path(tmp) / "model.onnx", format="onnx")
        export_s = time.perf_counter() - started
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    _, height, width = run.model.backbone.pretrained_cfg["input_size"]
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(1))
    x_np = x.numpy()
    name = session.get_inputs()[0].name
    torch.set_num_threads(threads)

    def eager() -> torch.Tensor:
        with torch.inference_mode():
            return run.model(x)

    def onnx() -> Any:
        return session.run(None, {name: x_np})[0]

    for _ in range(warmup):
        eager()
        onnx()
    times: dict[str, list[float]] = {"eager": [], "onnx": []}
    for _ in range(repeats):
        for label, fn in (("eager", eager), ("onnx", onnx)):
            t0 = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t0)
    diff = float((eager() - torch.from_numpy(onnx())).abs().max())
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "backbone": backbone,
        "input": [batch, 3, height, width],
        "export_s": export_s,
        "eager_images_per_s": batch / med["eager"],
        "onnx_images_per_s": batch / med["onnx"],
        "ratio_onnx_over_eager": med["eager"] / med["onnx"],
        "max_abs_diff": diff,
        "times_s": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny timm test models")
    parser.add_argument("--models", nargs="+", help="timm names (default resnet18, vit_small)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export.json"))
    args = parser.parse_args()
    rows = []
    for backbone in args.models or MODELS["quick" if args.quick else "full"]:
        rows.append(bench_model(backbone, args.batch, args.threads, args.warmup, args.repeats))
        r = rows[-1]
        print(f"{backbone}: eager {r['eager_images_per_s']:.1f} img/s, ONNX "
              f"{r['onnx_images_per_s']:.1f} img/s", flush=True)  # fmt: skip
    print(f"CPU, {args.threads} threads, batch {args.batch}, median of {args.repeats} batches")
    print()
    print(
        "| model | input | PyTorch eager (img/s) | ONNX Runtime (img/s) | ONNX / eager "
        "| max abs diff |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        size = "×".join(str(s) for s in r["input"][2:])
        print(
            f"| {r['backbone']} | {size} | {r['eager_images_per_s']:.1f} | "
            f"{r['onnx_images_per_s']:.1f} | {r['ratio_onnx_over_eager']:.2f}× | "
            f"{r['max_abs_diff']:.1e} |"
        )
    import onnxruntime

    atomic_write_json(
        args.out,
        {
            "settings": vars(args),
            "machine": {
                "platform": platform.platform(),
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
            },
            "results": rows,
        },
    )
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
