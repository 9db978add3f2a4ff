"""README figure: a grid of synthetic samples with their projected 2D joints.

Generates a small set with ``m3dhmr.data.synth.generate`` (the real pipeline, read back
from disk), draws the 21-joint skeleton on each image and writes
``docs/images/synthetic_samples.png``.

    .venv/bin/python scripts/make_synth_figure.py [--out docs/images/synthetic_samples.png] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from m3dhmr.conventions import BONES, finger_of_joint
from m3dhmr.data.synth import generate
from m3dhmr.fileio import atomic_path

# BGR colour per region: palm, thumb, index, middle, ring, little.
COLOURS = [(255, 255, 255), (60, 60, 255), (60, 200, 255), (60, 220, 60), (255, 160, 40), (220, 60, 220)]


def draw_skeleton(img: np.ndarray, uv: np.ndarray, scale: int) -> np.ndarray:
    """Draw 21 joints uv (21, 2) (pixels of the original image) on img upscaled by ``scale``."""
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    p = np.round((uv + 0.5) * scale - 0.5).astype(int)
    for a, b in BONES:
        cv2.line(img, tuple(p[a]), tuple(p[b]), COLOURS[finger_of_joint(b)], 1, cv2.LINE_AA)  # thin: hand visible
    for j, q in enumerate(p):
        cv2.circle(img, tuple(q), 2, COLOURS[finger_of_joint(j)], -1, cv2.LINE_AA)
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/images/synthetic_samples.png")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--cols", type=int, default=4)
    args = ap.parse_args()
    n = args.rows * args.cols
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "set"
        generate(root, n, 0, seed=args.seed, workers=1, progress=False)
        K = np.array(json.loads((root / "training_K.json").read_text()))
        xyz = np.array(json.loads((root / "training_xyz.json").read_text()))
        tiles = []
        for i in range(n):
            img = cv2.imread(str(root / "training" / "rgb" / f"{i:08d}.jpg"))
            mask = cv2.imread(str(root / "training" / "mask" / f"{i:08d}.jpg"), cv2.IMREAD_GRAYSCALE)
            p = xyz[i] @ K[i].T
            tile = draw_skeleton(img, p[:, :2] / p[:, 2:], 2)
            # Mask outline, so the figure also shows what training_mask holds.
            contours, _ = cv2.findContours((mask > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            small = np.zeros_like(tile[:, :, 0])
            cv2.drawContours(small, [c * 2 for c in contours], -1, 255, 1)
            tile[small > 0] = (0, 255, 255)
            tiles.append(cv2.copyMakeBorder(tile, 3, 3, 3, 3, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
    grid = np.concatenate([np.concatenate(tiles[r * args.cols:(r + 1) * args.cols], 1) for r in range(args.rows)], 0)
    with atomic_path(args.out) as tmp_png:
        cv2.imwrite(str(tmp_png), grid)
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
