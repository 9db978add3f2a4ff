"""Example photos for the web app, rendered by the package (so their licence is the package's).

The open hand template, fingers up, over a blurred noise background: a right hand, its
mirror image (a left hand) and both side by side. They are rendered once into the
per-user cache (:func:`examples_dir`) and reused; about 2 s on the first start.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Bumped when the pictures change, so an old cache is not reused.
VERSION = 2
#: (file name, background seeds, mirrored) of each example; the seeds are ones where the
#: packaged detector finds the rendered hand.
EXAMPLES = (("right_hand", (0,), (False,)), ("left_hand", (1,), (True,)), ("two_hands", (1, 0), (True, False)))


def examples_dir() -> Path:
    """``$M3DHMR_CACHE_DIR/app``, else ``$XDG_CACHE_HOME/m3dhmr/app``, else ``~/.cache/m3dhmr/app``."""
    root = os.environ.get("M3DHMR_CACHE_DIR")
    if root:
        return Path(root) / "app"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "m3dhmr" / "app"


def render_hand(seed: int, size: tuple[int, int] = (240, 320)) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the open hand template (a right hand), fingers up, 40 cm in front
    of a 60-degree camera, over blurred noise from ``seed``."""
    # heavy: the renderer (numba), cv2 and the hand template (torch) load only to render the examples
    import cv2

    from m3dhmr.geometry.rotations import rot_x, rot_z
    from m3dhmr.hand import load_template
    from m3dhmr.inference import crops
    from m3dhmr.render import render_mesh

    H, W = size
    t = load_template("open_hand")
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8), (9, 9), 0)
    R = rot_z(-np.pi / 2.4) @ rot_x(-np.pi / 2)  # the template's fingers point along +x, its palm along y
    verts = (t.vertices - t.vertices.mean(0)) @ R.T + [0.0, 0.0, 0.40]
    return render_mesh(verts, t.faces, crops.default_intrinsics(H, W), (H, W), colors=np.array([0.9, 0.7, 0.6]),
                       background=background).rgb_uint8()


def example_images(folder: str | Path | None = None) -> list[Path]:
    """The example PNGs in ``folder`` (default :func:`examples_dir`), rendered where missing."""
    from m3dhmr.inference.outputs import write_image

    folder = Path(folder) if folder is not None else examples_dir()
    paths = []
    for name, seeds, mirrored in EXAMPLES:
        path = folder / f"{name}_v{VERSION}.png"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            tiles = [render_hand(s)[:, ::-1] if m else render_hand(s) for s, m in zip(seeds, mirrored)]
            write_image(path, np.ascontiguousarray(np.concatenate(tiles, axis=1)))
        paths.append(path)
    return paths
