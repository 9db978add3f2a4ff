"""Pictures of predictions: the 2D pose, the mesh over the image, front and side views.

All images are (H, W, 3) uint8 RGB. Meshes are drawn with the package's CPU rasteriser
(:mod:`m3dhmr.render`), so no OpenGL context is needed. The front and side views follow
the paper's figures 1 and 4: the camera-space mesh seen from a virtual camera looking
along +z at its centroid (front), and the same mesh turned 90 degrees about the y axis
through its centroid (side), each framed to fill the tile.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np

from m3dhmr.conventions import BONES, NUM_JOINTS, finger_of_joint
from m3dhmr.errors import InputError
from m3dhmr.fileio import atomic_write_bytes
from m3dhmr.geometry.rotations import rot_y
from m3dhmr.mesh.validate import vertex_array

#: RGB colour per region: palm/wrist, thumb, index, middle, ring, little.
FINGER_COLORS: tuple[tuple[int, int, int], ...] = (
    (200, 200, 200), (230, 60, 60), (240, 170, 40), (70, 190, 70), (50, 140, 230), (170, 80, 210),
)
#: Albedo of rendered meshes (light skin-like blue-grey, readable on photos).
MESH_COLOR: tuple[float, float, float] = (0.55, 0.7, 0.95)


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"{name} must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
    return image


def bone_color(child: int) -> tuple[int, int, int]:
    """Colour of the bone ending at joint ``child`` (the finger it belongs to)."""
    return FINGER_COLORS[finger_of_joint(child)]


def draw_pose2d(image: np.ndarray, joints2d: np.ndarray, thickness: int | None = None,
                radius: int | None = None) -> np.ndarray:
    """Draw the 21-joint skeleton with one colour per finger on a copy of ``image``.

    image: (H, W, 3) uint8 RGB; joints2d: (21, 2) pixels (pixel centres at integers).
    Line width and joint radius default to ~1/150 and ~1/100 of the image size.
    Joints that are not finite are skipped. Returns (H, W, 3) uint8.
    """
    out = _check_image(image).copy()
    j = np.asarray(joints2d, dtype=np.float64)
    if j.shape != (NUM_JOINTS, 2):
        raise InputError(f"joints2d must have shape ({NUM_JOINTS}, 2), got {j.shape}")
    size = max(out.shape[:2])
    thickness = thickness or max(1, round(size / 150))
    radius = radius or max(1, round(size / 100))
    shift = 4  # sub-pixel drawing: coordinates in 1/16 px
    ok = np.all(np.isfinite(j), axis=1) & np.all(np.abs(j) < 1e6, axis=1)
    pts = np.round(np.where(ok[:, None], j, 0.0) * (1 << shift)).astype(np.int64)
    for parent, child in BONES:
        if ok[parent] and ok[child]:
            cv2.line(out, tuple(map(int, pts[parent])), tuple(map(int, pts[child])), bone_color(child),
                     thickness, cv2.LINE_AA, shift)
    for k in range(NUM_JOINTS):
        if ok[k]:
            cv2.circle(out, tuple(map(int, pts[k])), radius << shift, FINGER_COLORS[finger_of_joint(k)],
                       -1, cv2.LINE_AA, shift)
    return out


def overlay_mesh(image: np.ndarray, vertices: np.ndarray, faces: np.ndarray, K: np.ndarray,
                 alpha: float = 0.7, color=MESH_COLOR) -> np.ndarray:
    """Render the camera-space mesh with intrinsics ``K`` and alpha-blend it over ``image``.

    image: (H, W, 3) uint8; vertices: (V, 3) camera space (metres); faces: (F, 3);
    K: (3, 3) of the image. Returns (H, W, 3) uint8.
    """
    from m3dhmr.render import render_mesh  # heavy: the renderer (numba) loads on first render

    image = _check_image(image)
    res = render_mesh(vertices, faces, K, image.shape[:2], colors=np.asarray(color, dtype=np.float64),
                      background=image, alpha=alpha)
    return res.rgb_uint8()


def draw_hands(image: np.ndarray, results, ids=None) -> np.ndarray:
    """Every predicted hand on a copy of ``image`` (H, W, 3) uint8: its mesh, skeleton,
    the box around it and a label (handedness, and the detector's score when known).

    results: :class:`~m3dhmr.inference.result.PredictionResult` list (may be empty);
    labels start with ``ids[i]`` (e.g. video track ids), default the index in the list
    (its ``hand_<i>`` folder).
    """
    out = _check_image(image).copy()
    size = max(out.shape[:2])
    for r in results:
        out = overlay_mesh(out, r.vertices, r.faces, r.K)
    for r in results:
        out = draw_pose2d(out, r.joints2d)
    thick = max(1, round(size / 300))
    for i, r in enumerate(results):
        box = r.hand_box
        x0, y0 = int(round(box[0])), int(round(box[1]))
        x1, y1 = int(round(box[0] + box[2])), int(round(box[1] + box[3]))
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 255), thick, cv2.LINE_AA)
        label = f"{i if ids is None else ids[i]}: {r.handedness}" + ("" if r.score is None else f" {r.score:.2f}")
        scale = max(0.35, size / 1000)
        cv2.putText(out, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2,
                    cv2.LINE_AA)
        cv2.putText(out, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
    return out


def view_transform(vertices: np.ndarray, size: int, angle_deg: float = 0.0,
                   fill: float = 0.85, focal: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Place a mesh in front of a virtual square camera, turned about its centroid.

    vertices: (V, 3). The mesh is rotated by ``angle_deg`` about the y axis through its
    centroid and moved so that its bounding sphere fills ``fill`` of the tile.
    Returns (vertices_view (V, 3), K (3, 3)) for a ``size`` x ``size`` image.
    """
    v = vertex_array(vertices, nonempty=True)
    if not np.all(np.isfinite(v)):
        raise InputError("vertices contain NaN or inf")
    c = v.mean(axis=0)
    local = (v - c) @ rot_y(math.radians(angle_deg)).T
    r = max(float(np.linalg.norm(local, axis=1).max()), 1e-6)
    f = focal or 2.5 * size  # a long lens: nearly orthographic, like the paper's views
    # A sphere of radius r at distance d spans about 2 f r / d pixels.
    d = 2.0 * f * r / (fill * size) + r
    K = np.array([[f, 0.0, (size - 1) / 2.0], [0.0, f, (size - 1) / 2.0], [0.0, 0.0, 1.0]])
    return local + np.array([0.0, 0.0, d]), K


def render_view(vertices: np.ndarray, faces: np.ndarray, size: int = 256, angle_deg: float = 0.0,
                color=MESH_COLOR, background=(255, 255, 255)) -> np.ndarray:
    """(size, size, 3) uint8 render of the mesh turned by ``angle_deg`` about y (see :func:`view_transform`)."""
    from m3dhmr.render import render_mesh

    vv, K = view_transform(vertices, size, angle_deg)
    bg = np.empty((size, size, 3), np.uint8)
    bg[:] = np.asarray(background, dtype=np.uint8)
    return render_mesh(vv, faces, K, size, colors=np.asarray(color, dtype=np.float64), background=bg).rgb_uint8()


def render_front_side(vertices: np.ndarray, faces: np.ndarray, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Front (as the camera sees it) and side (90 deg about y) renders: two (size, size, 3) uint8."""
    return render_view(vertices, faces, size, 0.0), render_view(vertices, faces, size, 90.0)


def make_panel(tiles: list[np.ndarray], height: int = 256, gap: int = 4) -> np.ndarray:
    """Tiles side by side, each resized to ``height`` keeping its aspect, white gaps.

    tiles: list of (H_i, W_i, 3) uint8. Returns (height, sum W_i' + gaps, 3) uint8.
    """
    if not tiles:
        raise InputError("make_panel: no tiles")
    parts = []
    for i, t in enumerate(tiles):
        t = _check_image(t, f"tile {i}")
        w = max(1, round(t.shape[1] * height / t.shape[0]))
        interp = cv2.INTER_AREA if t.shape[0] > height else cv2.INTER_LINEAR
        parts.append(cv2.resize(t, (w, height), interpolation=interp))
        if i < len(tiles) - 1 and gap > 0:
            parts.append(np.full((height, gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)


def plot_learning_curve(rows: list[dict[str, float]], path, title: str = "", baseline: dict[str, float] | None = None) -> None:
    """A PNG of a training run's ``eval_metrics.csv`` rows (:func:`m3dhmr.train.validation.read_metrics_csv`).

    Left: PA-MPJPE and PA-MPVPE (mm) over steps; right: the 2D error (original pixels).
    ``baseline`` (e.g. the mean pose's ``pa_mpjpe_mm``/``pa_mpvpe_mm``) is drawn dashed.
    Written atomically (matplotlib's Agg backend, no display needed).
    """
    # heavy: matplotlib loads only to plot a curve
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not rows:
        raise InputError("plot_learning_curve: no rows (did the run evaluate? set train.eval_every)")
    steps = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    for key, label in (("pa_mpjpe_mm", "PA-MPJPE"), ("pa_mpvpe_mm", "PA-MPVPE")):
        pts = [(s, r[key]) for s, r in zip(steps, rows) if r[key] == r[key]]
        if pts:
            line, = a.plot(*zip(*pts), marker="o", ms=3, label=label)
            if baseline and key in baseline:
                a.axhline(baseline[key], ls="--", lw=1, color=line.get_color(), label=f"{label}, baseline")
    a.set_xlabel("step")
    a.set_ylabel("mm (evaluation split)")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    b.plot(steps, [r["err2d_px"] for r in rows], marker="o", ms=3, color="tab:green")
    b.set_xlabel("step")
    b.set_ylabel("2D joint error (image px)")
    b.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
