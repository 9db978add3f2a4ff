"""Generator version 4 and self-training, each change measured on the real-photo yardstick.

Every run fine-tunes the packaged model (``train.init_from=pretrained``, stage 2 only)
for the same number of steps, batch, learning rate and seed on a synthetic set rendered
for it (same render seed), and differs from the others in one thing only:

- ``v3_look``: version 4 with its realism off (the look the packaged model was trained
  on; the control: "just more training");
- ``v4``: every version-4 feature on, real-photo backgrounds from ``--backgrounds``;
- ``v4_no_<feature>``: ``v4`` with one feature off (leave one out);
- ``v4_amplitude``: ``v4`` plus amplitude-spectrum augmentation at training time;
- ``v4_real``: ``v4`` plus self-training on the training persons of the sign-language
  digits (2D pseudo-labels from the landmark model, ``data.real_dir``).

Each run is scored on the held-out persons (:func:`m3dhmr.evaluation.real.evaluate_real`:
PCK at half a palm, median error, finger-state accuracy) and on the first ``--bench``
images of the synthetic benchmark (version 4, :func:`~m3dhmr.evaluation.benchmark.score_benchmark`);
the packaged model without fine-tuning is the first row. Finished runs and scores are
reused; the Markdown table is printed and written to ``OUT/real_ablation.md``.

    .venv/bin/python scripts/fetch_backgrounds.py --out /data/bg_photos
    .venv/bin/python scripts/real_ablation.py --backgrounds /data/bg_photos [--steps 200]
        [--batch 16] [--variants v3_look v4 v4_real ...] [--out outputs/real_ablation]

One seed per variant: at a few hundred steps, differences of a few hundredths in PCK are
within the spread of a rerun (see ``docs/results_real.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REAL = REPO.parent / "shared" / "data" / "sign-language-digits"

#: version 4 with the realism off (tests/conftest.py's PACKAGED_MODEL_LOOK).
V3_LOOK = dict(forearm_prob=0.0, skin_detail=False, shading="v3", ao=False, handshape_prob=0.0, object_prob=0.0,
               other_hand_prob=0.0, defocus_prob=0.0, motion_blur_prob=0.0, color_prob=0.0,
               jpeg_quality_range=(90, 90))
CAMERA_OFF = dict(defocus_prob=0.0, motion_blur_prob=0.0, color_prob=0.0, noise_prob=0.0,
                  jpeg_quality_range=(90, 90))

#: name -> (label, SynthConfig overrides, uses --backgrounds, config overrides "section.key": value)
VARIANTS: dict[str, tuple[str, dict, bool, dict]] = {
    "v3_look": ("version 4 with its realism off (old look)", V3_LOOK, False, {}),
    "v4": ("version 4, everything on", {}, True, {}),
    "v4_no_forearm": ("v4 without the forearm", dict(forearm_prob=0.0), True, {}),
    "v4_no_skin_shading": ("v4 without skin detail, environment shading, AO",
                           dict(skin_detail=False, shading="v3", ao=False), True, {}),
    "v4_no_backgrounds": ("v4 without real-photo backgrounds", {}, False, {}),
    "v4_no_objects": ("v4 without held objects and the second hand", dict(object_prob=0.0, other_hand_prob=0.0),
                      True, {}),
    "v4_no_handshapes": ("v4 without the handshape library", dict(handshape_prob=0.0), True, {}),
    "v4_no_camera": ("v4 without camera effects (blur, noise, colour, JPEG)", CAMERA_OFF, True, {}),
    "v4_amplitude": ("v4 + amplitude-spectrum augmentation (swap, p 0.5)", {}, True,
                     {"data.augment.amplitude_prob": 0.5}),
    "v4_real": ("v4 + self-training on real photos (pseudo-labels)", {}, True, {"data.real_dir": "REAL"}),
}
REAL_KEYS = ("pck_half_palm", "median_err_palm", "finger_state_acc")


def _replace_path(obj, dotted: str, value):
    """``obj`` (nested frozen dataclasses) with ``a.b.c`` replaced by ``value``."""
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: _replace_path(getattr(obj, head), rest, value)})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "synthetic_r18.yaml")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=200, help="optimiser steps per run")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-from", default="pretrained",
                   help="weights every run starts from (train.init_from; the table in docs/results_real.md "
                        "started from the packaged weights of commit 41163d8, the synthetic-only model)")
    p.add_argument("--backgrounds", type=Path, default=None, help="scripts/fetch_backgrounds.py's folder")
    p.add_argument("--real", type=Path, default=DEFAULT_REAL, help="the sign-language digits set")
    p.add_argument("--bench", type=int, default=200, help="synthetic benchmark images to score")
    p.add_argument("--limit", type=int, default=None, help="held-out photos to score (default: all)")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "real_ablation")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    needs_bg = any(VARIANTS[v][2] for v in args.variants)
    if needs_bg and (args.backgrounds is None or not args.backgrounds.is_dir()):
        p.error("--backgrounds DIR (scripts/fetch_backgrounds.py --out DIR) is needed by the v4 variants")

    from m3dhmr import Predictor
    from m3dhmr.data.synth import generate, is_complete
    from m3dhmr.data.synth_scene import SynthConfig
    from m3dhmr.evaluation.benchmark import score_benchmark
    from m3dhmr.evaluation.real import evaluate_real
    from m3dhmr.fileio import atomic_write_json, atomic_write_text
    from m3dhmr.model_io import read_weights
    from m3dhmr.train.checkpoint import LAST_WEIGHTS, checkpoint_dir, progress_from_metadata
    from m3dhmr.experiment import load_experiment
    from m3dhmr.train.trainer import train

    base = load_experiment(args.config)
    base = dataclasses.replace(base, train=dataclasses.replace(
        base.train, init_from=args.init_from, init_from_prefixes=(), stage1_epochs=0, epochs=1, lr=args.lr,
        lr_milestones=(), batch_size=args.batch, seed=args.seed, eval_every=0, keep_epoch_checkpoints=False))
    num_train = args.steps * args.batch
    bench = args.out / "benchmark"
    rows: dict[str, dict] = {}

    def score(name: str, weights: Path | None) -> dict:
        path = args.out / "scores" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
        t0 = time.perf_counter()
        pred = Predictor.from_pretrained() if weights is None else Predictor.from_checkpoint(weights)
        real = evaluate_real(pred, args.real, "heldout", args.limit).summary()
        syn = score_benchmark(bench, args.bench, checkpoint=weights, out=args.out / "scores" / f"{name}_bench")
        out = {**{k: real[k] for k in REAL_KEYS}, "pa_mpjpe_mm": syn["model"]["pa_mpjpe_mm"],
               "pa_mpvpe_mm": syn["model"]["pa_mpvpe_mm"], "n_detected": real["n_detected"],
               "score_s": time.perf_counter() - t0}
        atomic_write_json(path, out)
        return out

    # The starting weights, not fine-tuned (the packaged model unless --init-from says otherwise).
    rows["packaged"] = score("packaged", None if args.init_from == "pretrained" else Path(args.init_from))
    for v in args.variants:
        label, synth_over, use_bg, cfg_over = VARIANTS[v]
        synth_cfg = SynthConfig(**synth_over, background_dir=str(args.backgrounds.resolve()) if use_bg else None)
        key = hashlib.sha256(repr(dataclasses.astuple(synth_cfg)).encode()).hexdigest()[:10]
        data = args.out / "data" / f"{num_train}_{key}"
        if not is_complete(data):
            t0 = time.perf_counter()
            generate(data, num_train, 16, seed=1, workers=args.workers, config=synth_cfg, progress=False)
            print(f"{v}: rendered {num_train} images in {time.perf_counter() - t0:.0f} s -> {data}", flush=True)
        cfg = base
        for k, val in cfg_over.items():
            cfg = _replace_path(cfg, k, str(args.real.resolve()) if val == "REAL" else val)
        run = args.out / "runs" / v
        weights = checkpoint_dir(run) / LAST_WEIGHTS
        done = weights.is_file() and progress_from_metadata(read_weights(weights)[1]).global_step >= args.steps
        t0 = time.perf_counter()
        if not done:
            print(f"training {v} -> {run}", flush=True)
            (args.out / "scores" / f"{v}.json").unlink(missing_ok=True)
            train(cfg, data, run, resume=weights.is_file(), max_steps=args.steps, progress_bar=False)
            print(f"{v}: trained in {time.perf_counter() - t0:.0f} s", flush=True)
        rows[v] = {**score(v, weights), "label": label}
        print(f"{v}: " + " ".join(f"{k}={x:.4f}" for k, x in rows[v].items() if isinstance(x, float)), flush=True)

    lines = ["| Run | PCK @ 0.5 palm | Median error (palm) | Finger states | Synthetic v4 PA-MPJPE (mm) |",
             "|---|---:|---:|---:|---:|"]
    for v, r in rows.items():
        label = r.get("label", "packaged model, not fine-tuned")
        lines.append(f"| `{v}`: {label} | {r['pck_half_palm']:.3f} | {r['median_err_palm']:.3f} | "
                     f"{r['finger_state_acc']:.3f} | {r['pa_mpjpe_mm']:.2f} |")
    table = "\n".join(lines)
    print(f"\n{args.steps} steps x batch {args.batch}, lr {args.lr}, seed {args.seed}, from the packaged weights; "
          f"held-out persons of {args.real.name}; first {args.bench} synthetic benchmark images")
    print(table)
    atomic_write_text(args.out / "real_ablation.md", table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
