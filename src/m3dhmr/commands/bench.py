"""``m3dhmr bench``: frames per second end to end and per stage, PyTorch and ONNX Runtime
side by side (interleaved), batch 1. See :mod:`m3dhmr.inference.bench` for the stages.

Then, unless ``--no-detection``, whole 640 x 480 frames: the packaged hand detector on
every frame, and tracking from the previous frame's landmarks, each followed by the
same model on the hand's crop (the faster backend), printed as
``fps_end_to_end_whole_image_detect`` and ``..._track``.

With ``--config`` (or neither option: the default ModelConfig, i.e. M3DHMR ResNet18 at
128 px) the weights are random, which does not change the speed. Figures are printed
last as ``name=value`` lines.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--config", help="experiment YAML (random weights), e.g. configs/m3dhmr_r18.yaml")
    src.add_argument("--checkpoint", help="model weights (.safetensors)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "both"), default="both",
                        help="which runtime to time (default both, side by side in one run)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per backend (default 2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timing duration (default 10)")
    parser.add_argument("--onnx", help="ONNX model to time (default: the model's export in the per-user ONNX cache, made once)")
    parser.add_argument("--image-size", type=int, default=224, help="side of the synthetic frame (default 224)")
    parser.add_argument("--no-detection", action="store_true",
                        help="skip the whole-image timing (hand detector + model)")


#: Largest ``--image-size`` (a frame of that side is allocated per backend).
MAX_IMAGE_SIZE = 4096


def run(args: argparse.Namespace) -> int:
    import math
    import os
    import platform
    from pathlib import Path

    import torch

    from m3dhmr.cli import UserError
    from m3dhmr.inference.bench import (format_results, format_whole_image_results, run_bench,
                                        run_whole_image_bench)
    from m3dhmr.inference.predictor import Predictor
    from m3dhmr.models import ModelConfig, build_model

    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if not 0 < args.seconds < math.inf:
        raise UserError(f"--seconds must be a finite number > 0, got {args.seconds}")
    if not 16 <= args.image_size <= MAX_IMAGE_SIZE:
        raise UserError(f"--image-size must be in [16, {MAX_IMAGE_SIZE}], got {args.image_size}")
    for option, path in (("--checkpoint", args.checkpoint), ("--config", args.config), ("--onnx", args.onnx)):
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{option}: file not found: {path}")
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        from m3dhmr.train.checkpoint import load_model_from_checkpoint

        model, exp = load_model_from_checkpoint(args.checkpoint, "cpu")
        mcfg = exp.model
    else:
        if args.config:
            from m3dhmr.train.config import load_experiment

            mcfg = load_experiment(args.config).model
        else:
            mcfg = ModelConfig()
        torch.manual_seed(0)
        model = build_model(mcfg).eval()
    backends = ("torch", "onnxruntime") if args.backend == "both" else (args.backend,)
    predictors = {b: Predictor.from_model(model, backend=b, threads=args.threads,
                                          onnx_path=args.onnx if b == "onnxruntime" else None) for b in backends}
    results = run_bench(predictors, seconds=args.seconds, image_size=args.image_size)
    print(f"# model: backbone={mcfg.backbone} conv={mcfg.conv} input={mcfg.input_size} "
          f"vertices={model.num_vertices}; threads={args.threads}; cpu={platform.processor() or platform.machine()} "
          f"x{os.cpu_count()}; load={os.getloadavg()[0]:.2f}")
    whole = None
    if not args.no_detection:
        from m3dhmr.detect import HandDetector

        fastest = max(results, key=lambda b: results[b].fps)  # what a user would run
        predictors[fastest].detector = HandDetector(threads=args.threads)
        whole = run_whole_image_bench(predictors[fastest], seconds=args.seconds)
    for line in format_results(results):
        print(line)
    if whole is not None:
        for line in format_whole_image_results(whole, fastest):
            print(line)
    return 0
