"""Draw the open hand for the README: the rest mesh coloured by region and sampled poses.

Usage: python scripts/make_hand_figure.py [--out docs/images/hand_model.png] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402

from m3dhmr.conventions import REGION_NAMES  # noqa: E402
from m3dhmr.fileio import atomic_path  # noqa: E402
from m3dhmr.hand import load_open_hand, sample_poses, sample_shapes  # noqa: E402

REGION_COLOURS = np.array([[0.80, 0.78, 0.74], [0.86, 0.33, 0.30], [0.95, 0.62, 0.22],
                           [0.40, 0.72, 0.35], [0.30, 0.52, 0.85], [0.62, 0.40, 0.78]])
LIGHT = np.array([0.3, 0.5, 0.8]) / np.linalg.norm([0.3, 0.5, 0.8])


def draw(ax, vertices: np.ndarray, faces: np.ndarray, regions: np.ndarray, joints: np.ndarray | None,
         elev: float, azim: float, title: str) -> None:
    """Draw a hand (rest frame: x fingers, y dorsal, z thumb->little) as plot axes (z, x, y)."""
    p = vertices[:, [2, 0, 1]]
    tri = p[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    # Light from the viewer's side so both palm and back views read well.
    e, a = np.radians(elev), np.radians(azim)
    view = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    shade = 0.35 + 0.65 * np.abs(n @ (0.7 * view + 0.3 * LIGHT))
    colour = REGION_COLOURS[regions[faces].max(1)] * shade[:, None]
    ax.add_collection3d(Poly3DCollection(tri, facecolors=colour, edgecolors=(0, 0, 0, 0.08), linewidths=0.2))
    if joints is not None:
        j = joints[:, [2, 0, 1]]
        ax.scatter(j[:, 0], j[:, 1], j[:, 2], s=4, c="k", depthshade=False)
    c, r = (p.max(0) + p.min(0)) / 2, (p.max(0) - p.min(0)).max() / 2
    ax.set(xlim=(c[0] - r, c[0] + r), ylim=(c[1] - r, c[1] + r), zlim=(c[2] - r, c[2] + r))
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=elev, azim=azim)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images/hand_model.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    hand = load_open_hand(torch.float64)
    t = hand.template
    faces, regions = t.faces, t.regions
    rng = np.random.default_rng(args.seed)
    kinds = ["open", "fist", "point", "pinch", "grasp", "mixture"]
    poses = np.concatenate([sample_poses(1, rng, k) for k in kinds])
    shapes = sample_shapes(len(kinds), rng)
    out = hand(torch.tensor(poses), torch.tensor(shapes))

    fig = plt.figure(figsize=(13, 6.4))
    draw(fig.add_subplot(2, 4, 1, projection="3d"), t.vertices, faces, regions, t.rest_joints(), 90, -90,
         f"rest, back ({t.num_vertices} vertices)")
    draw(fig.add_subplot(2, 4, 5, projection="3d"), t.vertices, faces, regions, None, -90, 90, "rest, palm")
    slots = [2, 3, 4, 6, 7, 8]
    for k, (kind, slot) in enumerate(zip(kinds, slots)):
        draw(fig.add_subplot(2, 4, slot, projection="3d"), out.vertices[k].numpy(), faces, regions, None,
             15, 215, f"sampled: {kind}")
    handles = [plt.Line2D([], [], ls="", marker="s", ms=9, color=REGION_COLOURS[i]) for i in range(6)]
    fig.legend(handles, REGION_NAMES, loc="lower center", ncol=6, frameon=False)
    fig.suptitle("m3dhmr open hand: regions and natural poses from m3dhmr.hand.sample_poses", fontsize=12)
    fig.subplots_adjust(left=0, right=1, top=0.92, bottom=0.06, wspace=0, hspace=0.05)
    out_path = Path(args.out)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=110)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
