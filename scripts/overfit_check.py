"""Can the training path learn at all? A tiny model trained and scored on the same 4 images.

    .venv/bin/python scripts/overfit_check.py [--stage1 50] [--stage2 150] [--loss '{"normal": 0.1}']

No augmentation, the in-memory pipeline, the tiny network of the test suite
(``tests/test_overfit.py`` runs the same check with fixed bounds); ``--loss`` replaces
the loss section (JSON), which is how docs/results_synthetic.md compares loss recipes.
Prints the learning curve (2D error in image pixels, PA-MPJPE/PA-MPVPE in mm) every 25 steps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

TINY_MODEL = {"backbone": "resnet18", "input_size": 64, "stack_channels": 16, "stack2_channels": [16, 16, 32],
              "latent_channels": 32, "decoder_channels": [8, 8, 16, 16], "dsc_kernels": 2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage1", type=int, default=50, help="stage-1 steps (one image batch per step)")
    ap.add_argument("--stage2", type=int, default=150, help="stage-2 steps")
    ap.add_argument("--loss", default='{"normal": 0.1}', help="the loss section as JSON")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    from m3dhmr.config_loader import from_dict
    from m3dhmr.data.synth import generate
    from m3dhmr.experiment import ExperimentConfig
    from m3dhmr.train.trainer import train
    from m3dhmr.train.validation import CSV_NAME, read_metrics_csv

    raw = {
        "model": TINY_MODEL,
        "loss": json.loads(args.loss),
        "train": {"batch_size": 4, "stage1_epochs": args.stage1, "epochs": args.stage2, "lr_milestones": [],
                  "seed": args.seed, "eval_every": 25, "eval_samples": 4, "log_every": 25,
                  "keep_epoch_checkpoints": False},
        "data": {"pipeline": "memory", "two_view": False, "eval_split": "training",
                 "augment": {"enabled": False, "eval_box": "joints", "base_box_scale": 1.5}},
    }
    cfg = from_dict(ExperimentConfig, raw)
    with tempfile.TemporaryDirectory(prefix="m3dhmr-overfit-") as tmp:
        data = generate(Path(tmp) / "data", 4, 1, seed=0, workers=1, progress=False)
        train(cfg, data, Path(tmp) / "run", progress_bar=False)
        rows = read_metrics_csv(Path(tmp) / "run" / CSV_NAME)
    print(f"loss {args.loss}")
    print(f"{'step':>5s} {'stage':>5s} {'2D px':>7s} {'PA-MPJPE':>9s} {'PA-MPVPE':>9s}")
    for r in rows:
        print(f"{int(r['step']):5d} {int(r['stage']):5d} {r['err2d_px']:7.2f} {r['pa_mpjpe_mm']:9.2f} "
              f"{r['pa_mpvpe_mm']:9.2f}")
    last = rows[-1]
    print(f"final_err2d_px={last['err2d_px']:.3f}")
    print(f"final_pa_mpjpe_mm={last['pa_mpjpe_mm']:.3f}")


if __name__ == "__main__":
    main()
