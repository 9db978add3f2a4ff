"""The paper's decoder ablation (Table 1) at the demo's scale, several seeds each.

Trains ``configs/demo_cpu.yaml`` (M3DHMR: DSC + ROI) and its variants under one recipe,
data set and step budget, with several seeds, scores each run on the synthetic
benchmark (``m3dhmr benchmark --checkpoint``) and prints a Markdown table of mean and
spread (min-max over seeds) next to two constant baselines (the rest hand, the mean pose):

- ``m3dhmr``: DSC (K = 4) + ROI, as configured;
- ``spiralconv``: SpiralConv layers, no ROI (the paper's "Baseline");
- ``wo_roi``: DSC without the ROI layer;
- ``wo_dsc``: SpiralConv layers with the ROI layer;
- ``levels5``: M3DHMR with MobRecon's five mesh levels (the hierarchy choice of issue 12).

    .venv/bin/python scripts/ablation.py [--variants m3dhmr spiralconv] [--seeds 0 1]
        [--steps 700] [--train 3000] [--bench 300] [--out outputs/ablation]

The variants differ from the config only in ``model.conv`` and ``model.roi`` (``levels5``: ``model.levels``
and ``model.decoder_channels``); each
run's YAML is written beside it. Runs that finished are reused (``--fresh`` retrains).

At the packaged model's scale the variants share one first stack, as in the paper (whose
first stack is pretrained before the mesh is trained): ``--init-from`` names a stage-1
checkpoint whose backbone every run starts from, and the runs train stage 2 only; the
seeds then vary the decoder's initialisation, the sample order and the augmentation::

    .venv/bin/python scripts/ablation.py --config configs/synthetic_r18.yaml \
        --data /data/train30k --train-samples 15000 --stage2-epochs 3 --milestones 2 \
        --init-from RUN/checkpoints/epoch_002.safetensors --bench-dir /data/bench --bench 1000 \
        --variants m3dhmr spiralconv --seeds 0 1 --out outputs/ablation_r18
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "m3dhmr": ("M3DHMR (DSC + ROI)", {}),
    "spiralconv": ("SpiralConv baseline", {"conv": "spiral", "roi": False}),
    "wo_roi": ("w/o ROI (DSC only)", {"roi": False}),
    "wo_dsc": ("w/o DSC (SpiralConv + ROI)", {"conv": "spiral"}),
    # MobRecon's hierarchy: one more level, so the 21 pose features are lifted to the
    # coarsest ~1/16 mesh (49 of MANO's 778; 59 of the open hand's 900) instead of ~1/8.
    "levels5": ("M3DHMR, 5 levels (MobRecon's lifting)", {"levels": 5, "decoder_channels": (32, 64, 128, 256, 256)}),
}
KEYS = ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "demo_cpu.yaml")
    p.add_argument("--variants", nargs="+", default=["m3dhmr", "spiralconv"], choices=sorted(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--steps", type=int, default=700,
                   help="optimiser steps per run (stage 1 included); 0: the whole schedule")
    p.add_argument("--train", type=int, default=3000, help="synthetic training samples (set seed 1)")
    p.add_argument("--bench", type=int, default=300, help="benchmark images to score")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "ablation")
    p.add_argument("--data", type=Path, default=None,
                   help="train on this rendered set instead of rendering --train samples under --out")
    p.add_argument("--train-samples", type=int, default=0, help="data.train_samples: the set's first N (0: all)")
    p.add_argument("--init-from", default=None,
                   help="checkpoint (or pretrained[:NAME]) whose backbone every run starts from "
                        "(runs then train stage 2 only)")
    p.add_argument("--freeze", nargs="*", default=None,
                   help="train.freeze_prefixes for every run (e.g. backbone.: compare decoders on one backbone)")
    p.add_argument("--stage2-epochs", type=int, default=None, help="train.epochs (stage 2) for every run")
    p.add_argument("--milestones", type=int, nargs="*", default=None, help="train.lr_milestones (stage-2 epochs)")
    p.add_argument("--bench-dir", type=Path, default=None, help="benchmark folder (default: under --out)")
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args(argv)
    if args.steps <= 0 and args.stage2_epochs is None:
        p.error("--steps 0 (no cap) needs --stage2-epochs")

    import yaml

    from m3dhmr.config_loader import to_dict
    from m3dhmr.data.synth import is_complete
    from m3dhmr.fileio import atomic_write_text
    from m3dhmr.model_io import read_weights
    from m3dhmr.train.checkpoint import LAST_WEIGHTS, checkpoint_dir, progress_from_metadata
    from m3dhmr.data.synth import generate
    from m3dhmr.evaluation.benchmark import score_benchmark
    from m3dhmr.experiment import load_experiment
    from m3dhmr.train.trainer import train

    bench = args.bench_dir or args.out / "benchmark"
    if args.data is not None:
        data = args.data
        if not is_complete(data):
            raise SystemExit(f"--data {data}: not a complete rendered set (m3dhmr synth writes one)")
    else:
        data = args.out / "data"
        if args.fresh or not is_complete(data):
            generate(data, args.train, 200, seed=1, workers=2, overwrite=True, progress=False)
    base = load_experiment(args.config)
    train_over: dict = {}
    if args.init_from is not None:
        src = args.init_from if args.init_from.startswith("pretrained") else str(Path(args.init_from).resolve())
        train_over.update(init_from=src, init_from_prefixes=("backbone.",), stage1_epochs=0)
    if args.freeze is not None:
        train_over["freeze_prefixes"] = tuple(args.freeze)
    if args.stage2_epochs is not None:
        train_over["epochs"] = args.stage2_epochs
    if args.milestones is not None:
        train_over["lr_milestones"] = tuple(args.milestones)
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, **train_over),
                               data=dataclasses.replace(base.data, train_samples=args.train_samples))
    results: dict[str, list[dict]] = {}
    baseline = None
    for v in args.variants:
        label, overrides = VARIANTS[v]
        cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, **overrides))
        for seed in args.seeds:
            run = args.out / "runs" / f"{v}_seed{seed}"
            yml = args.out / "configs" / f"{v}.yaml"
            atomic_write_text(yml, yaml.safe_dump(to_dict(cfg), sort_keys=False))
            weights = checkpoint_dir(run) / LAST_WEIGHTS
            done = False
            if weights.is_file():
                prog = progress_from_metadata(read_weights(weights)[1])
                done = prog.global_step >= args.steps if args.steps > 0 else prog.finished
            t0 = time.perf_counter()
            score_dir = args.out / "scores" / f"{v}_seed{seed}"
            if args.fresh or not done:
                print(f"training {v} seed {seed} -> {run}", flush=True)
                run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
                train(run_cfg, data, run, resume=(run / "checkpoints").is_dir() and not args.fresh,
                      overwrite=args.fresh,
                      max_steps=args.steps if args.steps > 0 else None, progress_bar=False)
                (score_dir / "benchmark.json").unlink(missing_ok=True)
            train_s = time.perf_counter() - t0
            if not (score_dir / "benchmark.json").is_file():  # scored once per trained run
                score_benchmark(bench, args.bench, checkpoint=weights, out=score_dir)
            b = json.loads((score_dir / "benchmark.json").read_text())
            baseline = b["rest_hand"], b["mean_pose"]
            results.setdefault(v, []).append({**{k: b["model"][k] for k in KEYS}, "train_s": train_s})

    lines = [
        "| Variant | PA-MPJPE (mm) | PA-MPVPE (mm) | F@5 | F@15 | Seeds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for v, rows in results.items():
        cells = []
        for k in KEYS:
            xs = [r[k] for r in rows]
            fmt = "{:.2f}" if k.endswith("mm") else "{:.3f}"
            cells.append(f"{fmt.format(statistics.mean(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})")
        lines.append(f"| {VARIANTS[v][0]} | " + " | ".join(cells) + f" | {len(rows)} |")
    if baseline is not None:
        for label, row in zip(("Rest hand (constant)", "Mean camera-frame pose (constant)"), baseline):
            lines.append(f"| {label} | " + " | ".join(
                ("{:.2f}" if k.endswith("mm") else "{:.3f}").format(row[k]) for k in KEYS) + " | - |")
    table = "\n".join(lines)
    print()
    steps = f"{args.steps} steps per run" if args.steps > 0 else f"{base.train.epochs} stage-2 epochs per run"
    start = f", from the backbone of {args.init_from}" if args.init_from else ""
    if args.freeze:
        start += f" (frozen: {' '.join(args.freeze)})"
    samples = f"first {args.train_samples} of " if args.train_samples else ""
    print(f"{steps}{start} on the {samples}{data}; {args.bench} benchmark images; "
          f"mean (min-max) over seeds {args.seeds}; config {args.config.name}")
    print(table)
    atomic_write_text(args.out / "ablation.md", table + "\n")
    for v, rows in results.items():
        print(f"{v}_pa_mpjpe_mm_mean={statistics.mean(r['pa_mpjpe_mm'] for r in rows):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
