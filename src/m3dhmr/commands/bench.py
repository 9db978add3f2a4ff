"""``m3dhmr bench``: frames per second end to end and per stage, PyTorch and ONNX Runtime
side by side (interleaved), batch 1. See :mod:`m3dhmr.inference.speed` for the stages.

Then, unless ``--no-detection``, whole 640 x 480 frames: the packaged hand detector on
every frame, and tracking from the previous frame's landmarks, each followed by the
same model on the hand's crop (the faster backend), printed as
``fps_end_to_end_whole_image_detect`` and ``..._track``.

``--precision int8`` times the statically quantised network (:mod:`m3dhmr.inference.quantize`,
ONNX Runtime; quantised once into the ONNX cache) as ``fps_end_to_end_int8``;
``--precision both`` times the fp32 and int8 ONNX Runtime networks side by side
(``fps_end_to_end_fp32``, ``fps_end_to_end_int8``), then compares their accuracy on the
same inputs (:func:`m3dhmr.inference.speed.precision_delta`): PA-MPJPE on the first
``--accuracy-images`` synthetic benchmark images (``int8_delta_pa_mpjpe_mm``) and the 2D
joint error, against the hand landmark model on as many real photos of ``--photos``
(default: ``../shared/data/sign-language-digits`` when that folder exists) or else against
the synthetic images' true joints (``int8_delta_err2d_px``, printed last).

With ``--config`` (or no model option: the default ModelConfig, i.e. M3DHMR ResNet18 at
128 px) the weights are random, which does not change the speed (but makes the int8
accuracy figures meaningless: use ``--pretrained`` or ``--checkpoint`` for those).
Figures are printed last as ``name=value`` lines.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from m3dhmr.errors import UserError
from m3dhmr.hardware import cpu_summary, torch_threads

#: Real photos for ``--precision both``'s 2D comparison when ``--photos`` is not given
#: (relative to the working directory: the project's data folder beside the checkout).
DEFAULT_PHOTOS = Path("../shared/data/sign-language-digits")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--config", help="experiment YAML (random weights), e.g. configs/m3dhmr_r18.yaml")
    src.add_argument("--checkpoint", help="model weights (.safetensors)")
    src.add_argument("--pretrained", action="store_true", help="the packaged model")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "both"), default=None,
                        help="which runtime to time (default: both side by side in one run; ONNX Runtime for "
                             "--precision int8 or both)")
    parser.add_argument("--precision", default="fp32",
                        help="fp32 (default), int8 (the quantised network, ONNX Runtime) or both (fp32 and int8 "
                             "side by side, then their accuracy on the same images)")
    parser.add_argument("--accuracy-images", type=int, default=100,
                        help="--precision both: synthetic benchmark images (and real photos) compared (default 100)")
    parser.add_argument("--photos", default=None,
                        help="--precision both: folder of real photos for the 2D comparison (default: "
                             f"{DEFAULT_PHOTOS} when it exists, else the synthetic images)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per backend (default 2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timing duration (default 10)")
    parser.add_argument("--onnx", help="ONNX model to time (default: the model's export in the per-user ONNX cache, made once)")
    parser.add_argument("--image-size", type=int, default=224, help="side of the synthetic frame (default 224)")
    parser.add_argument("--no-detection", action="store_true",
                        help="skip the whole-image timing (hand detector + model)")


#: Largest ``--image-size`` (a frame of that side is allocated per backend).
MAX_IMAGE_SIZE = 4096
PRECISION_CHOICES = ("fp32", "int8", "both")


def timed_runs(backend: str | None, precision: str) -> dict[str, tuple[str, str]]:
    """Name -> (backend, precision) of each predictor to time; names are those of the
    ``fps_end_to_end_<name>`` lines (``torch``/``onnxruntime`` for fp32, ``int8``, or
    ``fp32``/``int8`` for ``--precision both``)."""
    if precision not in PRECISION_CHOICES:
        raise UserError(f"--precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    if precision == "fp32":
        backends = ("torch", "onnxruntime") if backend in (None, "both") else (backend,)
        return {b: (b, "fp32") for b in backends}
    if backend not in (None, "onnxruntime"):
        raise UserError(f"--precision {precision} times ONNX Runtime: use --backend onnxruntime or leave it out")
    return {"int8": ("onnxruntime", "int8")} if precision == "int8" else {
        "fp32": ("onnxruntime", "fp32"), "int8": ("onnxruntime", "int8")}


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if not 0 < args.seconds < math.inf:
        raise UserError(f"--seconds must be a finite number > 0, got {args.seconds}")
    if not 16 <= args.image_size <= MAX_IMAGE_SIZE:
        raise UserError(f"--image-size must be in [16, {MAX_IMAGE_SIZE}], got {args.image_size}")
    for option, path in (("--checkpoint", args.checkpoint), ("--config", args.config), ("--onnx", args.onnx)):
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{option}: file not found: {path}")
    runs = timed_runs(args.backend, args.precision)
    if args.onnx and args.precision == "both":
        raise UserError("--onnx names one file: time it with --precision fp32 or int8 (what the file holds)")
    if args.accuracy_images < 1:
        raise UserError(f"--accuracy-images must be >= 1, got {args.accuracy_images}")
    if args.photos is not None and not Path(args.photos).is_dir():
        raise UserError(f"--photos {args.photos}: no such folder")
    with torch_threads(args.threads):
        _measure(args, runs)
    return 0


def _measure(args: argparse.Namespace, runs: dict[str, tuple[str, str]]) -> None:
    """Load or build the model, time each run, print the figures (``run`` checked the options)."""
    # heavy: torch and the model load when the command runs, so m3dhmr --help stays fast
    import torch

    from m3dhmr.inference.speed import (format_precision_delta, format_results, network_gflop, precision_delta,
                                        run_bench)
    from m3dhmr.inference.predictor import Predictor
    from m3dhmr.models import ModelConfig, build_model

    box_scale = 1.5
    if args.checkpoint or args.pretrained:
        if args.checkpoint:
            from m3dhmr.model_io import load_model_from_checkpoint

            model, exp = load_model_from_checkpoint(args.checkpoint, "cpu")
        else:
            from m3dhmr.pretrained import DEFAULT_MODEL, load_pretrained

            model, exp = load_pretrained(DEFAULT_MODEL, "cpu")
        mcfg, box_scale = exp.model, exp.data.augment.base_box_scale
    else:
        if args.config:
            from m3dhmr.experiment import load_experiment

            mcfg = load_experiment(args.config).model
        else:
            mcfg = ModelConfig()
        torch.manual_seed(0)
        model = build_model(mcfg).eval()
    predictors = {name: Predictor.from_model(model, backend=b, threads=args.threads, precision=p,
                                             onnx_path=args.onnx if b == "onnxruntime" else None)
                  for name, (b, p) in runs.items()}
    results = run_bench(predictors, seconds=args.seconds, image_size=args.image_size)
    gflop = network_gflop(model, mcfg.input_size)
    print(f"# model: backbone={mcfg.backbone} conv={mcfg.conv} input={mcfg.input_size} "
          f"vertices={model.num_vertices} gflop_per_crop={gflop:.3f}; threads={args.threads}; "
          f"load={os.getloadavg()[0]:.2f}")
    print(f"# cpu: {cpu_summary()}")  # every figure with the processor it was measured on
    whole_lines = [] if args.no_detection else whole_image_lines(predictors, results, args)
    accuracy_lines = []
    if args.precision == "both":
        photos = args.photos if args.photos is not None else (DEFAULT_PHOTOS if DEFAULT_PHOTOS.is_dir() else None)
        accuracy_lines = format_precision_delta(precision_delta(predictors["fp32"], predictors["int8"],
                                                                args.accuracy_images, photos, box_scale))
    for line in [*format_results(results, gflop), *whole_lines, *accuracy_lines]:
        print(line)


def whole_image_lines(predictors: dict, results: dict, args: argparse.Namespace) -> list[str]:
    """Whole 640 x 480 frames (detector + the fastest timed predictor, what a user would run):
    ``fps_end_to_end_whole_image_<mode>`` and the per-stage lines."""
    from m3dhmr.detect import HandDetector
    from m3dhmr.inference.speed import format_whole_image_results, run_whole_image_bench

    fastest = max(results, key=lambda b: results[b].fps)
    predictors[fastest].detector = HandDetector(threads=args.threads)
    whole = run_whole_image_bench(predictors[fastest], seconds=args.seconds)
    return format_whole_image_results(whole, fastest)
