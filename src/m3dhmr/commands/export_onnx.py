"""``m3dhmr export-onnx CKPT --out model.onnx``: the network as ONNX, checked against PyTorch.

The graph maps ``images (B, 3, S, S)`` RGB in [0, 1] to ``vertices (B, V, 3)``,
``joints3d (B, 21, 3)`` (root-relative metres) and ``joints2d (B, 21, 2)`` (crop pixels),
with a dynamic batch axis. The command runs ONNX Runtime and PyTorch on a random batch
of 2, prints the largest difference and fails when it exceeds 1e-4.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="model weights (.safetensors from m3dhmr train)")
    parser.add_argument("--out", required=True, help="output .onnx file")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 16 for grid_sample; default 17)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from m3dhmr.cli import UserError
    from m3dhmr.fileio import check_output_folder
    from m3dhmr.inference.onnx_export import MIN_OPSET, PARITY_TOLERANCE, check_parity, export_onnx
    from m3dhmr.train.checkpoint import load_model_from_checkpoint

    if args.opset < MIN_OPSET:
        raise UserError(f"--opset {args.opset}: grid_sample needs opset >= {MIN_OPSET}")
    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"--out {out}: expected a .onnx file name")
    if not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    # A bad --out (a folder, under a file, not writable) is one line before the model is loaded.
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give the .onnx file's name")
    check_output_folder(out.parent, "--out")
    model, _ = load_model_from_checkpoint(args.checkpoint, "cpu")
    export_onnx(model, out, opset=args.opset)
    report = check_parity(model, out, batch=2)
    for name, d in report.max_abs_diff.items():
        print(f"max_abs_diff_{name}={d:.3g}")
    print(f"max_abs_diff={report.worst:.3g}")
    if not report.worst <= PARITY_TOLERANCE:
        out.unlink(missing_ok=True)
        raise UserError(f"ONNX Runtime differs from PyTorch by {report.worst:.3g} > {PARITY_TOLERANCE:g}; "
                        f"{out} was removed")
    print(f"wrote {out} (opset {args.opset}, dynamic batch)")
    return 0
