"""Frames per second of m3dhmr_r18 (DSC + ROI) vs the SpiralConv baseline (CPU by default).

Batch 1, 128x128, eval mode, inference_mode, torch.set_num_threads(2); both models
share the real open-hand topology. The models alternate frame by frame (A B, then
B A, ...) so that the bursts of load on a shared machine fall on both alike; each
model's FPS is 1 / its median frame time. The decoders (F^e and L^p -> vertices) are
timed the same way after the backbones.
Prints ``fps_m3dhmr_r18``, ``fps_spiralconv_r18`` and their ratio last.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from m3dhmr.config_loader import from_dict
from m3dhmr.models import ModelConfig, build_model

import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def load(name: str) -> ModelConfig:
    return from_dict(ModelConfig, yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["model"], "model")


def main() -> None:
    from m3dhmr.hardware import cpu_summary

    print(f"# cpu: {cpu_summary()}", flush=True)  # every figure with its processor
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=200, help="frames per model, alternated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (the issue's measurement) or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = ("m3dhmr_r18", "spiralconv_r18")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    # Both models share the open hand's cached topology.
    models = {n: build_model(load(n)).eval().to(device) for n in names}
    x = torch.rand(1, 3, 128, 128, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    per_frame: dict[str, list[float]] = {n: [] for n in names}
    decoder: dict[str, list[float]] = {n: [] for n in names}

    def timed(fn) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    with torch.inference_mode():
        feats = {n: m.backbone(x) for n, m in models.items()}
        for m in models.values():  # warm-up
            for _ in range(5):
                m(x)
        for i in range(args.pairs):
            for n in names if i % 2 == 0 else names[::-1]:
                m, f = models[n], feats[n]
                per_frame[n].append(timed(lambda: m(x)))
                decoder[n].append(timed(lambda: m.decoder(f.features, f.joints2d)))
    nv = models[names[0]].num_vertices
    print(f"device={device} vertices={nv} threads={args.threads} frames per model={args.pairs}")
    for n in names:
        print(f"{n}: {statistics.median(per_frame[n]) * 1e3:.2f} ms/frame, decoder "
              f"{statistics.median(decoder[n]) * 1e3:.2f} ms")
    fps = {n: 1.0 / statistics.median(per_frame[n]) for n in names}
    print(f"fps_m3dhmr_r18={fps['m3dhmr_r18']:.2f}")
    print(f"fps_spiralconv_r18={fps['spiralconv_r18']:.2f}")
    print(f"fps_ratio_m3dhmr_over_spiralconv={fps['m3dhmr_r18'] / fps['spiralconv_r18']:.3f}")


if __name__ == "__main__":
    main()
