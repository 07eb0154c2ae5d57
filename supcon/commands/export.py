"""``supcon export RUN_OR_CKPT --format onnx|torchscript --out FILE [--opset N]``."""

from __future__ import annotations

import argparse
import json
import time

from supcon.outputs import add_force_argument


def run(args: argparse.Namespace) -> int:
    """Export a run's eval-mode embedding model with its JSON sidecar."""
    from supcon.errors import UserError
    from supcon.export import DEFAULT_OPSET, EXPORT_FORMATS, export_model, sidecar_path
    from supcon.outputs import check_export_outputs, run_inputs
    from supcon.reporting import format_table
    from supcon.runs import load_run

    if args.format is not None and args.format not in EXPORT_FORMATS:
        raise UserError(
            f"unknown export format {args.format!r}; use --format onnx or --format torchscript"
        )
    if args.opset is not None and args.opset < 7:
        raise UserError(f"--opset must be ≥ 7, got {args.opset}")
    check_export_outputs(args.out, force=args.force, inputs=run_inputs(args.run))
    started = time.perf_counter()
    loaded = load_run(args.run, device="cpu")
    out = export_model(loaded, args.out, format=args.format, opset=args.opset or DEFAULT_OPSET)
    meta = json.loads(sidecar_path(out).read_text(encoding="utf-8"))
    rows = [
        ("format", meta["kind"] + (f" (opset {meta['opset']})" if meta["opset"] else "")),
        ("input", "×".join(str(s) for s in meta["input"]["shape"])),
        ("embedding dimension", meta["embedding_dim"]),
        ("transform", f"{meta['transform']['resize']} to {meta['transform']['input_size'][1:]}"),
        ("model fingerprint", meta["model"]["fingerprint"]),
        ("written", f"{out} (+ {sidecar_path(out).name})"),
    ]
    print(format_table(rows, ["", "value"]))
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export`` to the CLI."""
    parser = subparsers.add_parser(
        "export",
        help="export a trained model to ONNX or TorchScript",
        description="Write the eval-mode embedding model of a run (backbone, pooling, head, L2 "
        "normalisation; dynamic batch size) as ONNX or TorchScript, with FILE.json beside it: "
        "eval transform, embedding dimension, class names and weight fingerprint. supcon embed "
        "and supcon search accept the exported file in place of a run.",
    )
    parser.add_argument("run", metavar="RUN_OR_CKPT", help="run directory or checkpoint file")
    parser.add_argument(
        "--format",
        metavar="FORMAT",
        help="onnx or torchscript (default: from --out: .onnx → onnx, .pt/.ts → torchscript)",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="exported model file")
    parser.add_argument("--opset", type=int, help="ONNX opset version (default 17)")
    add_force_argument(parser)
    parser.set_defaults(func=run)
