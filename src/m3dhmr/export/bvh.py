"""Write a hand skeleton animation as BVH (Biovision Hierarchy) text.

We write the text ourselves: no maintained Python BVH *writer* exists on PyPI (the
packages there read BVH), and the format is a small text format: a HIERARCHY of
joints with OFFSETs and CHANNELS, then one MOTION line of channel values per frame.

Conventions of the file:

- Y up: every position and transform is taken from camera axes (x right, y down,
  z forward) by C = diag(1, -1, -1) (180 degrees about x, a proper rotation), so
  Blender's BVH importer shows the hand upright.
- Units: metres (import at scale 1 for metres, 1000 for millimetres).
- Joints rest with identity orientation (world-aligned); OFFSET = rest position
  minus the parent's rest position, the root's = its rest position.
- Root channels ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``, the
  position being the posed root position itself (as Blender's importer reads it);
  other joints ``Zrotation Xrotation Yrotation``: R_local = Rz @ Rx @ Ry, degrees.
- A leaf joint that is its parent's only child (the five fingertips of the package's
  21-joint hand) becomes its parent's ``End Site``; so the hand has 16 JOINT/ROOTs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from m3dhmr.export.rig import (CAMERA_TO_Y_UP, Rig, conjugate_transforms, invert_rigid, matrix_to_euler_zxy_degrees,
                               prepare_export)
from m3dhmr.fileio import atomic_path

logger = logging.getLogger(__name__)

ROOT_CHANNELS = "Xposition Yposition Zposition Zrotation Xrotation Yrotation"
JOINT_CHANNELS = "Zrotation Xrotation Yrotation"
#: Warn when BVH's rotation-only joints cannot follow the given positions (non-rigid bones).
_RIGID_TOL_M = 1e-6


def _fmt(values: np.ndarray) -> str:
    # round() + 0.0 turns a rounded -0.0 into 0.0, so the file never says "-0.000000".
    return " ".join(f"{round(float(x), 6) + 0.0:.6f}" for x in values)


def write_bvh(path: str | Path, rig: Rig, global_transforms: np.ndarray, *, fps: float = 30.0,
              mirror: bool = False) -> Path:
    """Write the skeleton of ``rig`` moved by ``global_transforms`` as a .bvh file (Y up, metres).

    Args:
        path: output path; must end in ``.bvh``. Written atomically (a temporary file in
            the same folder, then ``os.replace``): on any error no file is left.
        rig: the rest hand (camera axes, metres); only its skeleton is written.
        global_transforms: (T, J, 4, 4) posed global joint transforms, camera axes.
        fps: frames per second (``Frame Time: 1/fps``, 6 decimals).
        mirror: a left hand as the mirror image (x -> -x) of the right hand.

    Each joint's BVH rotation is the rotation part of ``G_tj @ inv(rest_j)`` (its motion
    from rest, W_tj), made relative to the parent's: ``W_t,parent^T @ W_tj``. BVH bones
    cannot stretch: if a pose changes a bone's length (in the parent's frame) the file
    follows the rotations and a warning is logged.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: bad extension, fps, rig type or ``global_transforms``.
    """
    path, rig, g, fps = prepare_export(path, ".bvh", rig, global_transforms, fps, mirror)
    text = bvh_text(rig, g, fps)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def bvh_text(rig: Rig, global_transforms: np.ndarray, fps: float) -> str:
    """The BVH file contents for a validated rig and (T, J, 4, 4) pose (camera axes; converted here)."""
    g = conjugate_transforms(global_transforms, CAMERA_TO_Y_UP)             # (T, J, 4, 4)
    rest = conjugate_transforms(rig.rest_transforms, CAMERA_TO_Y_UP)        # (J, 4, 4)
    T, J = g.shape[:2]
    parents = rig.parents
    world = (g @ invert_rigid(rest))[..., :3, :3]                           # (T, J, 3, 3) W_tj
    rel = world.copy()
    child = [j for j in range(J) if parents[j] >= 0]
    rel[:, child] = np.swapaxes(world[:, [parents[j] for j in child]], -1, -2) @ world[:, child]
    angles = matrix_to_euler_zxy_degrees(rel)                               # (T, J, 3) z, x, y
    rest_pos = rest[:, :3, 3]
    posed_pos = g[:, :, :3, 3]

    lines = ["HIERARCHY"]
    channel_joints: list[int] = []

    def end_site_of(j: int) -> int | None:
        kids = rig.children(j)
        return kids[0] if len(kids) == 1 and not rig.children(kids[0]) else None

    def emit(j: int, depth: int) -> None:
        pad = "\t" * depth
        offset = rest_pos[j] - (rest_pos[parents[j]] if parents[j] >= 0 else 0.0)
        lines.append(f"{pad}{'ROOT' if parents[j] < 0 else 'JOINT'} {rig.joint_names[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}\tOFFSET {_fmt(offset)}")
        lines.append(f"{pad}\tCHANNELS {6 if parents[j] < 0 else 3} {ROOT_CHANNELS if parents[j] < 0 else JOINT_CHANNELS}")
        channel_joints.append(j)
        tip = end_site_of(j)
        kids = rig.children(j)
        if tip is not None or not kids:
            # A BVH branch ends in an End Site; a joint without children gets a zero one.
            end = rest_pos[tip] - rest_pos[j] if tip is not None else np.zeros(3)
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET {_fmt(end)}", f"{pad}\t}}"])
        else:
            for c in kids:
                emit(c, depth + 1)
        lines.append(f"{pad}}}")

    emit(0, 0)
    _warn_if_not_rigid(rig, world, rest_pos, posed_pos)

    lines += ["MOTION", f"Frames: {T}", f"Frame Time: {1.0 / fps:.6f}"]
    for t in range(T):
        values = [posed_pos[t, 0]] + [angles[t, j] for j in channel_joints]
        lines.append(_fmt(np.concatenate(values)))
    return "\n".join(lines) + "\n"


def _warn_if_not_rigid(rig: Rig, world: np.ndarray, rest_pos: np.ndarray, posed_pos: np.ndarray) -> None:
    """Log a warning when BVH forward kinematics (rotations only) misses the given joint positions."""
    fk = np.zeros_like(posed_pos)
    fk[:, 0] = posed_pos[:, 0]
    for j in range(1, rig.num_joints):
        p = rig.parents[j]
        fk[:, j] = fk[:, p] + np.einsum("txy,y->tx", world[:, p], rest_pos[j] - rest_pos[p])
    err = float(np.abs(fk - posed_pos).max())
    if err > _RIGID_TOL_M:
        logger.warning("BVH joints only rotate: bones that change length put joints up to %.3g m "
                       "away from the given positions", err)
