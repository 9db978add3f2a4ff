"""Writes tiny FreiHAND-layout sets for the data tests and the loader benchmark.

Each annotation is a random "hand" (21 joints around a wrist 0.4-0.6 m in front of the
camera, vertices scattered around the joints) whose projection with its own K fills
about half of the image. Its images show the convex hull of the projected joints as a
skin-coloured blob (also the mask) on a noisy background tinted per colour version, plus
a pure red dot at the projected joint :data:`DOT_JOINT`, so a test can find that joint's
pixel in a crop. ``versions=4`` reproduces the real set (image i -> annotation i % N).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DOT_JOINT = 12  # middle fingertip
DOT_RGB = (255, 0, 0)
#: Background tint (BGR) of each colour version.
VERSION_TINTS = ((40, 90, 40), (120, 60, 60), (60, 60, 130), (100, 100, 100))


@dataclass(frozen=True)
class Split:
    """What was written for one split: K (N,3,3), xyz (N,21,3), verts (N,V,3), images (M,H,W,3) RGB."""

    K: np.ndarray
    xyz: np.ndarray
    verts: np.ndarray
    num_versions: int


def make_annotations(n: int, size: int, num_vertices: int, rng: np.random.Generator,
                     fy_ratio: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random hands and cameras: K (n,3,3), xyz (n,21,3), verts (n,V,3) metres."""
    K = np.zeros((n, 3, 3))
    xyz = np.zeros((n, 21, 3))
    verts = np.zeros((n, num_vertices, 3))
    for a in range(n):
        z = rng.uniform(0.4, 0.6)
        wrist = np.array([rng.uniform(-0.02, 0.02), rng.uniform(0.02, 0.05), z])
        # Fingers fan upwards (-y) from the wrist, with depth jitter.
        j = [wrist]
        for f in range(5):
            ang = np.radians(-60 + 30 * f + rng.uniform(-8, 8))
            d = np.array([np.sin(ang), -np.cos(ang), rng.uniform(-0.3, 0.3)])
            for k in range(4):
                j.append(wrist + d * (0.035 + 0.02 * k) * rng.uniform(0.9, 1.1))
        xyz[a] = np.stack(j)
        f_px = 0.5 * size * z / 0.09  # a ~0.09 m hand covers about half the image
        K[a] = [[f_px, 0, size / 2 + rng.uniform(-2, 2)], [0, f_px * fy_ratio, size / 2 + rng.uniform(-2, 2)],
                [0, 0, 1]]
        verts[a] = xyz[a][rng.integers(0, 21, num_vertices)] + rng.normal(0, 0.004, (num_vertices, 3))
    return K, xyz, verts


def draw_image(K: np.ndarray, xyz: np.ndarray, size: int, version: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) BGR uint8 image and (size, size) uint8 mask of one annotation."""
    tint = np.array(VERSION_TINTS[version % len(VERSION_TINTS)], np.float64)
    noise = cv2.GaussianBlur(rng.normal(0, 25, (size, size, 3)), (0, 0), 2)
    img = np.clip(tint + noise, 0, 255).astype(np.uint8)
    uv = xyz[:, :2] / xyz[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
    hull = cv2.convexHull(np.round(uv).astype(np.int32))
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    img[mask > 0] = (150, 170, 220)  # skin-ish, BGR
    r = max(2, size // 24)
    c = tuple(int(round(v)) for v in uv[DOT_JOINT])
    cv2.circle(img, c, r, DOT_RGB[::-1], -1)
    return img, mask


def write_split(root: Path, split: str, n: int, versions: int, size: int, num_vertices: int,
                rng: np.random.Generator, masks: bool, gt: bool, fy_ratio: float = 1.0) -> Split:
    K, xyz, verts = make_annotations(n, size, num_vertices, rng, fy_ratio)
    (root / split / "rgb").mkdir(parents=True, exist_ok=True)
    if masks:
        (root / split / "mask").mkdir(parents=True, exist_ok=True)
    for i in range(n * versions):
        a, v = i % n, i // n
        img, mask = draw_image(K[a], xyz[a], size, v, rng)
        cv2.imwrite(str(root / split / "rgb" / f"{i:08d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if masks and v == 0:
            cv2.imwrite(str(root / split / "mask" / f"{a:08d}.jpg"), mask)
    (root / f"{split}_K.json").write_text(json.dumps(K.tolist()))
    scale = np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=1)
    (root / f"{split}_scale.json").write_text(json.dumps(scale.tolist()))
    if gt:
        (root / f"{split}_xyz.json").write_text(json.dumps(xyz.tolist()))
        (root / f"{split}_verts.json").write_text(json.dumps(verts.tolist()))
    return Split(K, xyz, verts, versions)


def write_fixture(root: str | Path, n: int = 4, versions: int = 1, size: int = 64, num_vertices: int = 30,
                  masks: bool = True, eval_n: int = 3, eval_gt: bool = True, seed: int = 0,
                  fy_ratio: float = 1.0) -> dict[str, Split]:
    """Write a training split (n annotations x versions images) and an evaluation split.

    ``eval_n=0`` writes no evaluation split; ``eval_gt=False`` leaves out
    ``evaluation_xyz.json``/``evaluation_verts.json`` (the original FreiHAND release).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out = {"training": write_split(root, "training", n, versions, size, num_vertices, rng, masks, True, fy_ratio)}
    if eval_n:
        out["evaluation"] = write_split(root, "evaluation", eval_n, 1, size, num_vertices, rng, False, eval_gt,
                                        fy_ratio)
    return out
