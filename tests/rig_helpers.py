"""Rotation matrices in degrees and a two-joint rig for the export tests (test_export_rig,
test_export_gltf): small hand-checkable cases next to the open hand's end-to-end ones."""

from __future__ import annotations

import numpy as np

from m3dhmr.export.rig import Rig


def rot_x_deg(deg: float) -> np.ndarray:
    """(3, 3) rotation by ``deg`` degrees about x."""
    a = np.radians(deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])


def rot_y_deg(deg: float) -> np.ndarray:
    """(3, 3) rotation by ``deg`` degrees about y."""
    a = np.radians(deg)
    return np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])


def rot_z_deg(deg: float) -> np.ndarray:
    """(3, 3) rotation by ``deg`` degrees about z."""
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def two_joint_rig() -> Rig:
    """Joint a at the origin, joint b at (1, 0, 0); one vertex at (2, 0, 0) shared half and half."""
    rest = np.tile(np.eye(4), (2, 1, 1))
    rest[1, 0, 3] = 1.0
    return Rig(vertices=np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 1.0, 0.0]]),
               faces=np.array([[0, 2, 1]]), weights=np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]),
               rest_transforms=rest, joint_names=("a", "b"), parents=(-1, 0))
