"""``m3dhmr export-onnx [CKPT] --out model.onnx``: the network as ONNX, checked against PyTorch.

CKPT is a training checkpoint (.safetensors) or a packaged model's name; without it the
packaged model (:data:`m3dhmr.pretrained.DEFAULT_MODEL`) is exported. The graph maps
``images (batch, 3, S, S)`` RGB in [0, 1] to ``vertices (batch, V, 3)``, ``joints3d
(batch, 21, 3)`` (root-relative metres, OpenCV axes) and ``joints2d (batch, 21, 2)`` (crop
pixels), with a dynamic batch axis; the file's ``metadata_props`` describe all of it
(:func:`m3dhmr.inference.onnx_export.onnx_metadata`). The command runs ONNX Runtime and
PyTorch on a random batch of 2, prints the largest difference and fails (removing the
file) when it exceeds 1e-4.

``--precision int8`` writes the statically quantised graph instead
(:mod:`m3dhmr.inference.quantize`: QDQ, per-channel int8 weights, calibrated on 256
synthetic crops, plus the hands found in ``--calibration-photos DIR`` when given; about a
minute). Its check runs PyTorch and ONNX Runtime on synthetic hand crops the calibration
did not see, prints the largest differences and the mean 2D-joint distance, and fails
(removing the file) when that distance exceeds 1 crop pixel (the packaged model: 0.3 px).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from m3dhmr.errors import UserError
from m3dhmr.fileio import check_output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", nargs="?", default=None,
                        help="model weights: a .safetensors checkpoint from m3dhmr train, or a packaged "
                             "model's name (default: the packaged model)")
    parser.add_argument("--out", required=True, help="output .onnx file")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 16 for grid_sample; default 17)")
    parser.add_argument("--precision", default="fp32",
                        help="fp32 (default) or int8 (statically quantised for ONNX Runtime on CPUs; calibrated on "
                             "synthetic crops, about a minute)")
    parser.add_argument("--calibration-photos", metavar="DIR", default=None,
                        help="int8: also calibrate on the hands found in these photos (128 spread over the folder)")


def resolve_checkpoint(arg: str | None) -> tuple[str, str | Path]:
    """What CKPT names, without loading it: ``("packaged", name)`` or ``("checkpoint", path)``.

    Raises a :class:`UserError` that says what CKPT may be when it is neither a file nor a
    packaged model's name, and for the packaged model's own files (manifest, shards,
    weights folder), which are not checkpoints: there the fix is its name or no CKPT.
    """
    # heavy: m3dhmr.pretrained imports torch; only when the command runs
    from m3dhmr.pretrained import DEFAULT_MODEL, WEIGHTS_DIR, available_models

    if arg is None:
        return "packaged", DEFAULT_MODEL
    names = available_models()
    fix = f"omit CKPT to export the packaged model {DEFAULT_MODEL}"
    expected = (f"expected a .safetensors checkpoint from m3dhmr train or a packaged model name "
                f"({', '.join(names) or 'none installed'}); {fix}")
    p = Path(arg)
    for name in names:
        # Its manifest or a shard, wherever it was copied (the shard names are package_weights').
        if p.name == f"{name}.json" or re.fullmatch(rf"{re.escape(name)}-\d+-of-\d+\.safetensors", p.name):
            raise UserError(f"CKPT {arg}: is a file of the packaged model {name}, not a checkpoint; "
                            f"give its name ({name}) or {fix}")
    if p.is_dir() and (p.resolve() == WEIGHTS_DIR.resolve() or any((p / f"{n}.json").is_file() for n in names)):
        raise UserError(f"CKPT {arg}: is the packaged weights folder, not a checkpoint; "
                        f"give a packaged model name ({', '.join(names)}) or {fix}")
    if p.is_file():
        if p.suffix.lower() == ".json":
            raise UserError(f"CKPT {arg}: is a .json file; {expected}")
        return "checkpoint", p
    if arg in names:
        return "packaged", arg
    if p.is_dir():
        raise UserError(f"CKPT {arg}: is a folder; {expected}")
    raise UserError(f"CKPT {arg}: checkpoint not found and not a packaged model name; {expected}")


def run(args: argparse.Namespace) -> int:
    from m3dhmr.inference.onnx_export import MIN_OPSET, PARITY_TOLERANCE, check_parity
    from m3dhmr.inference.quantize import (INT8_TOLERANCE_PX, CalibrationRecipe, check_int8, check_precision,
                                           export_network)

    if args.opset < MIN_OPSET:
        raise UserError(f"--opset {args.opset}: grid_sample needs opset >= {MIN_OPSET}")
    try:
        precision = check_precision(args.precision, "--precision")
    except ValueError as e:
        raise UserError(str(e)) from None
    recipe = None
    if args.calibration_photos is not None:
        if precision != "int8":
            raise UserError("--calibration-photos needs --precision int8")
        if not Path(args.calibration_photos).is_dir():
            raise UserError(f"--calibration-photos {args.calibration_photos}: no such folder")
        recipe = CalibrationRecipe(photos=args.calibration_photos)
    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"--out {out}: expected a .onnx file name")
    kind, what = resolve_checkpoint(args.checkpoint)
    # A bad --out (a folder, under a file, not writable) is one line before the model is loaded.
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give the .onnx file's name")
    check_output_folder(out.parent, "--out")
    if kind == "packaged":
        from m3dhmr.pretrained import load_pretrained

        model, _ = load_pretrained(str(what), "cpu")
        source = str(what)
    else:
        from m3dhmr.model_io import load_model_from_checkpoint

        model, _ = load_model_from_checkpoint(what, "cpu")
        source = Path(what).name  # the file's name only: the metadata travels with the model
    export_network(model, out, opset=args.opset, source=source, precision=precision, recipe=recipe)
    # Both precisions: the per-output differences, the deciding number, and the file removed
    # when that number is over its tolerance (``not x <= tol``: NaN fails too).
    if precision == "int8":
        int8 = check_int8(model, out)
        diffs, graph = int8.max_abs_diff, "int8 QDQ, "
        verdict = f"mean_diff_joints2d_px={int8.mean_joints2d_px:.3g}"
        failure = None if int8.mean_joints2d_px <= INT8_TOLERANCE_PX else (
            f"the int8 network's 2D joints differ from PyTorch's by {int8.mean_joints2d_px:.3g} "
            f"crop px on average > {INT8_TOLERANCE_PX:g}")
    else:
        report = check_parity(model, out, batch=2)
        diffs, graph = report.max_abs_diff, ""
        verdict = f"max_abs_diff={report.worst:.3g}"
        failure = None if report.worst <= PARITY_TOLERANCE else (
            f"ONNX Runtime differs from PyTorch by {report.worst:.3g} > {PARITY_TOLERANCE:g}")
    for name, d in diffs.items():
        print(f"max_abs_diff_{name}={d:.3g}")
    print(verdict)
    if failure is not None:
        out.unlink(missing_ok=True)
        raise UserError(f"{failure}; {out} was removed")
    print(f"wrote {out} ({source}, {graph}opset {args.opset}, dynamic batch, metadata in metadata_props)")
    return 0
