"""``m3dhmr demo``: the main job on built-in data, no downloads.

Synthesises a small FreiHAND-layout set with the package's own hand, trains
``configs/synthetic_cpu.yaml`` on it for a few minutes, evaluates the checkpoint with
the FreiHAND protocol, predicts a handful of evaluation images (2D pose and mesh
overlays, front/side renders, meshes) and prints where everything is. Each step is
the same code path as its own command (``synth``, ``train``, ``eval``, ``predict``).
A second run reuses a finished synthetic set and a finished training run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HELP = "the main job: synthesise, train, evaluate and predict on built-in data"

_REPO_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "synthetic_cpu.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder (default: outputs/demo)")
    parser.add_argument("--config", type=Path, default=_REPO_CONFIG, help="training config (default: configs/synthetic_cpu.yaml)")
    parser.add_argument("--train", type=int, default=1500, help="synthetic training samples (default: 1500)")
    parser.add_argument("--eval", type=int, default=200, help="synthetic evaluation samples (default: 200)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on training steps (default: the config's schedule)")
    parser.add_argument("--predict", type=int, default=6, help="evaluation images to visualise (default: 6)")
    parser.add_argument("--workers", type=int, default=2, help="synthesis worker processes (default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="redo every step even if its output exists")


def _step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace) -> int:
    from m3dhmr.cli import UserError, main

    if not args.config.is_file():
        raise FileNotFoundError(f"training config not found: {args.config}")
    if args.train < 1 or args.eval < 1 or args.predict < 0:
        raise UserError("--train and --eval must be >= 1 and --predict >= 0")
    out: Path = args.out
    data, run_dir = out / "data", out / "run"
    eval_dir, pred_dir = out / "eval", out / "predictions"
    timings: dict[str, float] = {}

    def call(argv: list[str]) -> None:
        rc = main(argv)
        if rc != 0:
            raise UserError(f"step failed (exit {rc}): m3dhmr {' '.join(argv)}")

    t = _step("1/4 synthesising data")
    if args.fresh or not (data / "synth_info.json").is_file():
        call(["synth", "--out", str(data), "--train", str(args.train), "--eval", str(args.eval),
              "--seed", str(args.seed), "--workers", str(args.workers), "--overwrite"])
    else:
        print(f"reusing {data}")
    timings["synth_s"] = time.perf_counter() - t

    t = _step("2/4 training " + args.config.name)
    ckpt = run_dir / "checkpoints" / "last.safetensors"
    train_argv = ["train", "--config", str(args.config), "--data", str(data), "--out", str(run_dir),
                  "--seed", str(args.seed)]
    if args.max_steps is not None:
        train_argv += ["--max-steps", str(args.max_steps)]
    if args.fresh or not ckpt.is_file():
        call(train_argv)
    else:
        # --resume is a no-op for a finished run and completes an interrupted one.
        call(train_argv + ["--resume"])
    timings["train_s"] = time.perf_counter() - t

    t = _step("3/4 evaluating (FreiHAND protocol)")
    call(["eval", "--checkpoint", str(ckpt), "--data", str(data), "--split", "evaluation", "--out", str(eval_dir)])
    timings["eval_s"] = time.perf_counter() - t

    t = _step(f"4/4 predicting {args.predict} evaluation images")
    images = sorted((data / "evaluation" / "rgb").glob("*.jpg"))[: args.predict]
    if images:
        call(["predict", *map(str, images), "--checkpoint", str(ckpt), "--out", str(pred_dir)])
    timings["predict_s"] = time.perf_counter() - t

    metrics = json.loads((eval_dir / "metrics.json").read_text())
    print("\n=== done ===")
    print(f"synthetic data   {data}")
    print(f"training run     {run_dir}  (TensorBoard: tensorboard --logdir {run_dir / 'tb'})")
    print(f"checkpoint       {ckpt}")
    print(f"evaluation       {eval_dir / 'metrics.json'}, {eval_dir / 'pred.json'}")
    print(f"predictions      {pred_dir}")
    print("metrics          " + ", ".join(
        f"{k}={metrics[k]:.4g}" for k in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15") if k in metrics))
    print("timings          " + ", ".join(f"{k}={v:.0f}" for k, v in timings.items()))
    return 0
