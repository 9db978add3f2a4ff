"""``m3dhmr synth``: render a synthetic data set in FreiHAND's layout (see :mod:`m3dhmr.data.synth`)."""

from __future__ import annotations

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (FreiHAND layout)")
    parser.add_argument("--train", type=int, required=True, metavar="N", help="number of training samples")
    parser.add_argument("--eval", type=int, required=True, metavar="M", help="number of evaluation samples")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (FreiHAND: 224)")
    parser.add_argument("--seed", type=int, default=0, help="same seed -> same set, whatever --workers")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the FreiHAND-layout files of a non-empty folder that is not a synthetic set")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="set SynthConfig fields (values are YAML), e.g. --set object_prob=0 "
                             "exposure_range=[1,1]; unknown keys are errors; synth_info.json records the config")


def run(args: argparse.Namespace) -> int:
    # heavy: the renderer (numba, cv2, torch) loads when the command runs, so m3dhmr --help stays fast
    from m3dhmr.config_loader import apply_overrides, from_dict
    from m3dhmr.data.synth import SynthConfig, generate

    # --size first, so --set size=... (applied after it) wins; from_dict rejects unknown keys.
    config = from_dict(SynthConfig, apply_overrides({"size": args.size}, args.overrides))
    t0 = time.perf_counter()
    out = generate(args.out, args.train, args.eval, seed=args.seed, workers=args.workers, config=config,
                   overwrite=args.overwrite, progress=not args.no_progress)
    dt = time.perf_counter() - t0
    n = args.train + args.eval
    print(f"wrote {args.train} training + {args.eval} evaluation samples to {out} "
          f"in {dt:.1f} s ({n / dt:.1f} images/s)")
    return 0
