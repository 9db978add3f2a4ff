"""Synthetic data speed: end-to-end images/s with workers, plus single-process per-stage times.

    .venv/bin/python benchmarks/synth_speed.py [--n 600] [--workers 2]

Prints ``synth_images_per_s=...`` last (end to end: pose, render, composite, JPEG
encode, write, annotation JSON).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def stage_times(n: int) -> dict[str, float]:
    """Milliseconds per sample of each stage, one process."""
    import cv2

    from m3dhmr.data import synth
    from m3dhmr.data.backgrounds import random_background
    from m3dhmr.render.shading import render_mesh

    cfg = synth.SynthConfig()
    synth._init_worker(tempfile.gettempdir(), 0, cfg)
    ctx = synth._STATE["ctx"]
    t = dict.fromkeys(["sample_params", "pose_batch", "render", "background", "compose_total", "encode_jpeg",
                       "write", "json"], 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for start in range(0, n, synth.CHUNK):
            stop = min(start + synth.CHUNK, n)
            t0 = time.perf_counter()
            rngs = [synth.sample_rng(0, 0, i) for i in range(start, stop)]
            geos = [synth._draw_geometry(ctx, cfg, r) for r in rngs]
            t1 = time.perf_counter()
            verts, joints = ctx.pose(np.stack([g["pose"] for g in geos]), np.stack([g["shape"] for g in geos]))
            t2 = time.perf_counter()
            t["sample_params"] += t1 - t0
            t["pose_batch"] += t2 - t1
            for r, g, v, j in zip(rngs, geos, verts, joints):
                # Stand-alone render and background timing (same inputs as the real pipeline).
                K = g["K"]
                v_rr = (v - j[0]) @ g["R"].T
                v_cam = v_rr + synth._place(v_rr, K, g["fill"], g["centre"], cfg.size)
                a = time.perf_counter()
                render_mesh(v_cam, ctx.faces, K, cfg.size)
                b = time.perf_counter()
                random_background(np.random.default_rng(0), cfg.size)
                c = time.perf_counter()
                s = synth.compose_sample(ctx, cfg, r, g, v, j)
                d = time.perf_counter()
                rgb = synth._encode_jpeg(s.rgb[:, :, ::-1], cfg.jpeg_quality)
                mask = synth._encode_jpeg(s.mask.astype(np.uint8) * 255, cfg.jpeg_quality)
                e = time.perf_counter()
                (Path(tmp) / "rgb.jpg").write_bytes(rgb)
                (Path(tmp) / "mask.jpg").write_bytes(mask)
                f = time.perf_counter()
                synth.encode_annotations(s)
                g_ = time.perf_counter()
                t["render"] += b - a
                t["background"] += c - b
                t["compose_total"] += d - c
                t["encode_jpeg"] += e - d
                t["write"] += f - e
                t["json"] += g_ - f
    return {k: 1000 * v / n for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stage-n", type=int, default=128)
    args = ap.parse_args()
    from m3dhmr.data.synth import generate

    stages = stage_times(args.stage_n)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate(Path(tmp) / "set", args.n, 0, seed=0, workers=args.workers, progress=False)
        dt = time.perf_counter() - t0
    one = 1000.0 / (stages["sample_params"] + stages["pose_batch"] + stages["compose_total"]
                     + stages["encode_jpeg"] + stages["write"] + stages["json"])
    print("per-sample stage times, one process (ms); compose_total includes render, background, "
          "occluders, blur, noise:")
    for k, v in stages.items():
        print(f"  {k:>14s}: {v:7.3f}")
    print(f"single_process_images_per_s={one:.1f}")
    print(f"synth_seconds={dt:.2f}")
    print(f"synth_workers={args.workers}")
    print(f"synth_images_per_s={args.n / dt:.1f}")


if __name__ == "__main__":
    main()
