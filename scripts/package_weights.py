"""Put a training checkpoint into the package as a packaged model (``m3dhmr/weights``).

    .venv/bin/python scripts/package_weights.py RUN/checkpoints/last.safetensors \
        [--name m3dhmr_r18_synthetic] [--note "what, where, how long"]

Writes ``src/m3dhmr/weights/<name>.json`` (sizes, SHA-256, the experiment config, the
licence) and float16 shards of at most 15 MiB each (:func:`m3dhmr.pretrained.package_weights`),
then loads the result back and prints the largest difference from the float32 weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--name", default="m3dhmr_r18_synthetic")
    ap.add_argument("--note", default="", help="free text stored in the manifest's metadata")
    args = ap.parse_args()

    from m3dhmr.pretrained import WEIGHTS_DIR, package_weights, read_manifest, read_pretrained_tensors
    from m3dhmr.model_io import read_weights

    path = package_weights(args.checkpoint, args.name, WEIGHTS_DIR, metadata={"note": args.note} if args.note else None)
    info = read_manifest(args.name)
    loaded, _ = read_pretrained_tensors(args.name)
    ref, _ = read_weights(args.checkpoint)
    # Relative to each tensor's largest value (BatchNorm variances reach the thousands).
    err = max(float((loaded[k] - ref[k].float()).abs().max() / ref[k].float().abs().max().clamp_min(1e-12))
              for k in ref if ref[k].is_floating_point())
    total = sum(f["bytes"] for f in info.files)
    print(f"wrote {path} and {len(info.files)} shards ({total / 2**20:.1f} MiB); largest relative float16 rounding {err:.2e}")
    for f in info.files:
        print(f"  {f['file']}  {f['bytes']} bytes  sha256 {f['sha256']}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
