"""Synthetic data speed (issue 4): end-to-end images/s with workers, plus single-process
per-stage times.

    .venv/bin/python benchmarks/synth_speed.py [--n 1000] [--workers 2]

Prints ``synth_images_per_s=...`` last (end to end: pose, render, composite, JPEG
encode, write, annotation JSON, including worker start-up). The goal is a FreiHAND-sized
training set (32,560 samples) in under 5 minutes on 2 cores: >= 110 images/s.
The load average is printed too: on a shared machine compare runs as ratios.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def stage_times(n: int) -> dict[str, float]:
    """Milliseconds per sample of each stage, one process."""

    import cv2
    import torch

    from m3dhmr.data import synth, synth_compose, synth_encode, synth_scene
    from m3dhmr.render.shading import LightSettings
    from m3dhmr.data.backgrounds import random_background

    cfg = synth_scene.SynthConfig()
    # As a synth worker: one thread, kernels compiled, the hand model loaded.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    synth.warm_up()
    ctx = synth_scene.HandContext()
    t = dict.fromkeys(["sample_params", "pose_batch", "render", "background", "compose_total", "encode_jpeg",
                       "write", "json"], 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up chunk, not timed (first calls allocate caches, load photos).
        synth_compose.render_range(ctx, cfg, 0, 0, n, n + synth.CHUNK)
        for start in range(0, n, synth.CHUNK):
            stop = min(start + synth.CHUNK, n)
            t0 = time.perf_counter()
            rngs = [synth_scene.sample_rng(0, 0, i) for i in range(start, stop)]
            geos = [synth_scene.draw_geometry(ctx, cfg, r) for r in rngs]
            t1 = time.perf_counter()
            verts, joints = ctx.pose(np.stack([g["pose"] for g in geos]), np.stack([g["shape"] for g in geos]))
            t2 = time.perf_counter()
            t["sample_params"] += t1 - t0
            t["pose_batch"] += t2 - t1
            for i, (r, g, v, j) in enumerate(zip(rngs, geos, verts, joints), start):
                # Stand-alone render and background timing (same inputs as the real pipeline).
                K = g["K"]
                v_rr = (v - j[0]) @ g["R"].T
                v_cam = v_rr + synth_scene.place_hand(v_rr, K, g["fill"], g["centre"], cfg.size)
                a = time.perf_counter()
                synth_compose.render_hand_box(v_cam, ctx.faces, K, cfg.size, np.full((len(v_cam), 3), 0.8),
                                      LightSettings())
                b = time.perf_counter()
                random_background(np.random.default_rng(i), cfg.size)  # the real mix of kinds
                c = time.perf_counter()
                s = synth_compose.compose_sample(ctx, cfg, r, g, v, j)
                d = time.perf_counter()
                rgb, mask = synth_encode.encode_images(s, cfg.jpeg_quality)
                e = time.perf_counter()
                # New files, as in a real run (overwriting one file is slower on ext4).
                (Path(tmp) / f"rgb{i:08d}.jpg").write_bytes(rgb)
                (Path(tmp) / f"mask{i:08d}.jpg").write_bytes(mask)
                f = time.perf_counter()
                synth_encode.encode_annotations(s)
                g_ = time.perf_counter()
                t["render"] += b - a
                t["background"] += c - b
                t["compose_total"] += d - c
                t["encode_jpeg"] += e - d
                t["write"] += f - e
                t["json"] += g_ - f
    return {k: 1000 * v / n for k, v in t.items()}


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    from m3dhmr.hardware import cpu_summary

    print(f"# cpu: {cpu_summary()}", flush=True)  # every figure with its processor
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stage-n", type=int, default=128)
    args = ap.parse_args()
    from m3dhmr.data.synth import generate

    stages = stage_times(args.stage_n)
    with tempfile.TemporaryDirectory() as tmp:
        load0 = os.getloadavg()[0]
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        generate(Path(tmp) / "set", args.n, 0, seed=0, workers=args.workers, progress=False)
        dt = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
    one = 1000.0 / (stages["sample_params"] + stages["pose_batch"] + stages["compose_total"]
                     + stages["encode_jpeg"] + stages["write"] + stages["json"])
    print("per-sample stage times, one process (ms); compose_total includes render, background, "
          "occluders, blur, noise:")
    for k, v in stages.items():
        print(f"  {k:>14s}: {v:7.3f}")
    print(f"single_process_images_per_s={one:.1f}")
    print(f"load_average_1min={os.getloadavg()[0]:.2f}")
    # CPU seconds of the parent and its (finished) workers: unlike wall time this barely
    # depends on what else runs on the machine. With W workers on >= W idle cores the run
    # would take about cpu / W seconds (the parent's share is small), hence the estimate.
    cores = min(args.workers, os.cpu_count() or 1)
    print(f"load_average_1min_before_run={load0:.2f}")
    print(f"synth_cpu_seconds={cpu:.2f}")
    print(f"synth_images_per_cpu_s={args.n / cpu:.1f}")
    print(f"synth_idle_estimate_images_per_s={args.n / max(cpu / cores, 1e-9):.1f}")
    print(f"synth_seconds={dt:.2f}")
    print(f"synth_workers={args.workers}")
    print(f"synth_images_per_s={args.n / dt:.1f}")


if __name__ == "__main__":
    main()
