"""What ``m3dhmr predict`` writes for an image: pictures, meshes and ``result.json``.

Layout of one image's folder: ``result.json`` (:func:`image_result_json`),
``overlay.jpg`` (every hand) and ``hand_<i>/`` per hand (:func:`save_hand_outputs`; with
an articulation fit also ``pose.json`` and ``hand.glb``, see :mod:`m3dhmr.inference.rigging`).
The pictures drawn over a photo with a side above :data:`MAX_PICTURE_SIDE` are drawn on
a downscaled copy (``overlay_scale`` in ``result.json``); the 2D joints stay in the
photo's pixels. :func:`staged_folder` makes a folder appear complete or not at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from m3dhmr import conventions as cv
from m3dhmr import viz
from m3dhmr.errors import InputError
from m3dhmr.export.rig import CAMERA_TO_Y_UP
from m3dhmr.fileio import atomic_write_bytes, atomic_write_text
from m3dhmr.mesh.io import write_mesh

#: Long side of the overlays drawn over a photo: bigger photos are drawn downscaled (at
#: full size a 12,000 x 9,000 photo's overlays took about 6 GB more memory; downscaled,
#: predict on it peaks at 1.5 GB and takes 11 s on 2 cores).
MAX_PICTURE_SIDE = 2048


@contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a new hidden folder beside ``folder`` (``.<name>.tmp-*``, the pattern of
    :func:`m3dhmr.fileio.remove_stale_temporaries`); on success it replaces ``folder`` and
    everything in it (no stale ``hand_<i>/`` of an earlier run stays), on failure it is removed."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 -> what mkdir would give
        old = None
        if folder.exists() or folder.is_symlink():
            # Two renames (no atomic swap of folders): a kill in between leaves two temporaries.
            old = folder.parent / f".{folder.name}.tmp-old-{uuid.uuid4().hex[:8]}"
            os.rename(folder, old)
        try:
            os.rename(tmp, folder)
        except BaseException:
            if old is not None:
                os.rename(old, folder)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def picture_scale(height: int, width: int, max_side: int = MAX_PICTURE_SIDE) -> float:
    """Factor from an image's pixels to its overlays' (1 up to ``max_side`` px a side)."""
    return min(1.0, max_side / max(height, width))


def scale_result(result, sx: float, sy: float):
    """``result`` drawn on the image resized by (sx, sy): 2D joints, boxes and K in the
    resized image's pixels (pixel centres at integers: ``u -> (u + 0.5) sx - 0.5``)."""
    s = np.array([sx, sy])

    def box(b):
        return None if b is None else np.concatenate([(b[:2] + 0.5) * s - 0.5, b[2:] * s])

    K = np.array(result.K, dtype=np.float64)
    K[:2] = K[:2] * s[:, None]
    K[:2, 2] += 0.5 * s - 0.5  # principal point, (cx + 0.5) s - 0.5
    H, W = result.image_size
    return dataclasses.replace(result, joints2d=(result.joints2d + 0.5) * s - 0.5, K=K, crop_box=box(result.crop_box),
                               hand_box=box(result.hand_box), image_size=(round(H * sy), round(W * sx)))


def downscale_view(image, results, max_side: int = MAX_PICTURE_SIDE):
    """``image`` (H, W, 3) and its results resized for drawing so that the long side is at
    most ``max_side`` -> (image, results, scale); unchanged (scale 1) when small enough."""
    H, W = image.shape[:2]
    scale = picture_scale(H, W, max_side)
    if scale >= 1.0:
        return image, list(results), 1.0
    w, h = max(1, round(W * scale)), max(1, round(H * scale))
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return small, [scale_result(r, w / W, h / H) for r in results], scale


def write_image(path: Path, rgb, quality: int = 92) -> None:
    """(H, W, 3) uint8 RGB -> jpg/png file, atomically."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, rgb[:, :, ::-1].copy(), params)
    if not ok:
        raise InputError(f"{path}: OpenCV cannot encode this image format")
    atomic_write_bytes(path, buf.tobytes())


#: ``mesh_axes`` of the OBJ/PLY meshes: the camera's (as in ``result.json``) or y-up.
MESH_AXES = ("camera", "y-up")


def mesh_axes_text(mesh_axes: str) -> str:
    """The words for ``mesh_axes`` (:data:`MESH_AXES`) in the files' headers and ``result.json``."""
    if mesh_axes not in MESH_AXES:
        raise InputError(f"mesh axes must be one of {list(MESH_AXES)}, got {mesh_axes!r}")
    return cv.CAMERA_AXES_TEXT if mesh_axes == "camera" else cv.Y_UP_AXES_TEXT


def mesh_in_axes(vertices, mesh_axes: str):
    """(V, 3) camera-space vertices in ``mesh_axes`` and :func:`mesh_axes_text`. Y-up is a
    rotation (180 degrees about x), so faces keep their winding."""
    text = mesh_axes_text(mesh_axes)
    v = np.asarray(vertices, np.float64)
    return (v if mesh_axes == "camera" else v @ CAMERA_TO_Y_UP.T), text


def save_hand_outputs(out_dir: Path, image, result, view_size: int = 256, mesh_axes: str = "camera") -> list[Path]:
    """Write the pictures and meshes of one predicted hand into ``out_dir``; returns the paths.

    ``mesh.obj``/``mesh.ply`` are in ``mesh_axes`` (:func:`mesh_in_axes`), said in their header."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pose = viz.draw_pose2d(image, result.joints2d)
    overlay = viz.overlay_mesh(image, result.vertices, result.faces, result.K)
    front, side = viz.render_front_side(result.vertices, result.faces, view_size)
    panel = viz.make_panel([pose, overlay, front, side], height=view_size)
    paths = {name: out_dir / name for name in
             ("pose2d.jpg", "overlay.jpg", "front.png", "side.png", "panel.jpg", "mesh.obj", "mesh.ply")}
    for name, img in (("pose2d.jpg", pose), ("overlay.jpg", overlay), ("front.png", front), ("side.png", side),
                      ("panel.jpg", panel)):
        write_image(paths[name], img)
    vertices, axes = mesh_in_axes(result.vertices, mesh_axes)
    write_mesh(paths["mesh.obj"], vertices, result.faces, comment=axes)
    write_mesh(paths["mesh.ply"], vertices, result.faces, comment=axes)
    written = list(paths.values())
    if getattr(result, "articulation", None) is not None:
        from m3dhmr.inference.rigging import write_hand_files  # deferred: the hand models load only for articulation

        written += write_hand_files(out_dir, result)
    return written


def image_result_json(path, image, results, K, overlay_scale: float = 1.0, mesh_axes: str = "camera") -> dict:
    """``result.json`` of one image: its size, the (3, 3) K used, the ``hands`` list (2D
    joints in the image's pixels) and ``overlay_scale``, the factor from the image's pixels
    to those of its overlay pictures (below 1 for images over :data:`MAX_PICTURE_SIDE`)."""
    H, W = image.shape[:2]
    mesh_axes_name = mesh_axes_text(mesh_axes)
    return {"image": str(path), "image_size": [H, W], "K": [list(map(float, row)) for row in K],
            "units": {"joints3d": "m", "vertices": "m", "joints2d": "px", "camera": "opencv"},
            "axes": {"result.json": cv.CAMERA_AXES_TEXT, "mesh.obj/mesh.ply": mesh_axes_name,
                     "hand.glb/hand.bvh": cv.Y_UP_AXES_TEXT},
            "overlay_scale": round(float(overlay_scale), 6),
            "hands": [r.to_json() for r in results]}


def save_image_outputs(out_dir: Path, path, image, results, K, view_size: int = 256,
                       max_picture_side: int = MAX_PICTURE_SIDE, mesh_axes: str = "camera") -> list[Path]:
    """Every output of one image (see the module docstring); returns the paths written.

    The overlays are drawn on the image downscaled to ``max_picture_side`` px at most."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    view, drawn, scale = downscale_view(image, results, max_picture_side)
    written = []
    for i, r in enumerate(drawn):
        written += save_hand_outputs(out_dir / f"hand_{i}", view, r, view_size, mesh_axes)
    overlay = viz.draw_hands(view, drawn)
    write_image(out_dir / "overlay.jpg", overlay)
    atomic_write_text(out_dir / "result.json",
                      json.dumps(image_result_json(path, image, results, K, scale, mesh_axes), indent=1))
    return written + [out_dir / "overlay.jpg", out_dir / "result.json"]
