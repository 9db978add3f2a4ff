"""``m3dhmr train``: two-stage training, in one process or under ``torchrun`` (DDP)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from m3dhmr.errors import InputError
from m3dhmr.fileio import check_creatable_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="experiment YAML (sections model/loss/train/data), or a packaged config's name "
                             "(e.g. m3dhmr_r18)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config values, e.g. --set model.pretrained_backbone=false train.batch_size=64")
    parser.add_argument("--template", default=None,
                        help="hand template: open_hand, mano:/path/MANO_RIGHT.pkl or a template folder "
                             "(the same as --set model.template=...)")
    parser.add_argument("--data", type=Path, required=True, help="data folder in FreiHAND's layout")
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoints/, tb/, config.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in an --out that holds one (its checkpoints, curve and logs are removed)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many optimiser steps in total (counting steps before a resume)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="time budget: checkpoint and stop after this many minutes (resume continues)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=None, help="override train.seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    # heavy: torch and the trainer load when the command runs, so m3dhmr --help stays fast
    import torch

    from m3dhmr.experiment import load_experiment
    from m3dhmr.inference.networks import check_device
    from m3dhmr.train.distributed import dist_env
    from m3dhmr.train.trainer import train

    overrides = list(args.overrides) + ([f"model.template={args.template}"] if args.template else [])
    cfg = load_experiment(args.config, overrides)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=args.seed))
    if not args.data.is_dir():
        raise FileNotFoundError(f"--data: folder not found: {args.data}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise InputError(f"--max-minutes must be > 0, got {args.max_minutes}")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device, where="--device")
    check_creatable_folder(args.out)  # creates nothing: a failed call leaves no folder
    if args.resume and args.overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    result = train(cfg, args.data, args.out, resume=args.resume, overwrite=args.overwrite, max_steps=args.max_steps,
                   max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes, device=device,
                   progress_bar=not args.no_progress)
    if dist_env()[0] == 0:
        p = result.progress
        print(f"step {p.global_step}, epoch {p.epoch_index} of {cfg.train.stage1_epochs + cfg.train.epochs}"
              f"{' (finished)' if p.finished else ''}; {result.steps_run} steps in {result.seconds:.1f} s")
        print(f"checkpoint: {args.out / 'checkpoints' / 'last.safetensors'}")
        print(f"tensorboard: tensorboard --logdir {args.out / 'tb'}")
    return 0

