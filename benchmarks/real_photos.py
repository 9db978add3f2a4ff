"""The real-photo yardstick on the sign-language digits' held-out persons (all of them).

Scores the packaged model (or ``--checkpoint``) with :func:`m3dhmr.evaluation.real.evaluate_real`:
2D joints against the real-photo landmark model (PCK at half a palm, median error, per
joint) and finger states against each digit's handshape, next to the landmark model's own
finger states, and how well the per-hand quality score (:mod:`m3dhmr.inference.quality`)
ranks the hands by their error (``quality_spearman``, ``quality_spearman_fingers``,
``residual_spearman``). Pseudo-labels are cached beside the photos (first run: ~70-100 ms
an image). Prints a per-joint and a per-digit table, then ``name=value`` lines last (with
the wall time).

Packaged model (fine-tuned on real photos), 496 held-out photos (2-core AMD EPYC shared with
a training job, OMP_NUM_THREADS=1, labels cached): pck_half_palm 0.990, median_err_palm 0.052,
finger_state_acc 0.924 (landmark model 0.993), quality_spearman 0.697, 56 s. The
synthetic-only model before it: 0.818, 0.189, 0.793 (docs/results_real.md).

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/real_photos.py [--root ../shared/data/sign-language-digits]
        [--checkpoint CKPT] [--split heldout] [--limit N] [--cache FILE]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from m3dhmr.conventions import FINGER_NAMES, JOINT_NAMES
from m3dhmr.evaluation.real import evaluate_real

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "sign-language-digits"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--split", default="heldout", choices=("heldout", "train", "all"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from m3dhmr import Predictor

    t0 = time.perf_counter()
    predictor = (Predictor.from_pretrained() if args.checkpoint is None else Predictor.from_checkpoint(args.checkpoint))
    r = evaluate_real(predictor, args.root, args.split, args.limit, args.cache, progress=True)
    wall = time.perf_counter() - t0

    print(f"\n{args.root} [{args.split}]: {r.n_images} photos, a hand found by both in {r.n_detected} "
          f"(landmark model {r.n_reference}, network's detector {r.n_predicted})")
    print("PCK at half a palm per joint:")
    for j in range(0, 21, 7):
        print("  " + "  ".join(f"{JOINT_NAMES[k]:>11s} {r.per_joint_pck[k]:.2f}" for k in range(j, j + 7)))
    if r.finger_state_acc is not None:
        print("finger-state accuracy per digit (network / landmark model):")
        for d in range(10):
            m = r.detected & (r.digits == d)
            wrong = [f for f, name in enumerate(FINGER_NAMES)
                     if m.any() and np.mean(r.states[m, f] == r.reference_states[m, f]) < 0.5]
            print(f"  {d}: {r.finger_state_acc_per_digit[d]:.3f} / {r.reference_finger_state_acc_per_digit[d]:.3f}"
                  + (f"   (network and landmark model mostly disagree on: "
                     f"{', '.join(FINGER_NAMES[f] for f in wrong)})" if wrong else ""))
    for k, v in r.summary().items():
        print(f"{k}={v:.4f}")
    print(f"wall_s={wall:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
