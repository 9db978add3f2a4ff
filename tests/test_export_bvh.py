"""m3dhmr.export.write_bvh, checked by parsing the file back with a small independent BVH reader.

Forward kinematics from the parsed OFFSETs and Euler channels (each rotation channel
applied in the listed order, intrinsic; the root's position channels are its world
position) must land on the open hand's posed joints in Y-up axes (C @ camera point,
C = diag(1, -1, -1)), the fingertips included as End Sites.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from m3dhmr import conventions as cv
from m3dhmr.export import write_bvh
from m3dhmr.export.rig import CAMERA_TO_Y_UP, MIRROR_X

from test_export_rig import open_hand_case


# ----------------------------------------------------------------------------- independent reader

@dataclass
class BvhJoint:
    name: str
    parent: int                      # index into Bvh.joints, -1 for the root
    offset: np.ndarray
    channels: list[str] = field(default_factory=list)


@dataclass
class Bvh:
    joints: list[BvhJoint]
    end_sites: list[tuple[int, np.ndarray]]   # (parent joint index, offset)
    frames: int
    frame_time: float
    motion: np.ndarray                         # (frames, channels)


def read_bvh(path: Path) -> Bvh:
    text = path.read_text()
    head, motion_text = text.split("MOTION")
    tokens = head.split()
    assert tokens[0] == "HIERARCHY"
    joints: list[BvhJoint] = []
    ends: list[tuple[int, np.ndarray]] = []
    stack: list[int | None] = []               # joint index per open brace (None: an End Site)
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            parent = next((s for s in reversed(stack) if s is not None), -1)
            joints.append(BvhJoint(tokens[i + 1], parent if tok == "JOINT" else -1, np.zeros(3)))
            assert (tok == "ROOT") == (len(joints) == 1)
            assert tokens[i + 2] == "{"
            stack.append(len(joints) - 1)
            i += 3
        elif tok == "End":
            assert tokens[i + 1] == "Site" and tokens[i + 2] == "{"
            ends.append((stack[-1], np.zeros(3)))
            stack.append(None)
            i += 3
        elif tok == "OFFSET":
            offset = np.array([float(x) for x in tokens[i + 1:i + 4]])
            if stack[-1] is None:
                ends[-1] = (ends[-1][0], offset)
            else:
                joints[stack[-1]].offset = offset
            i += 4
        elif tok == "CHANNELS":
            n = int(tokens[i + 1])
            joints[stack[-1]].channels = tokens[i + 2:i + 2 + n]
            i += 2 + n
        elif tok == "}":
            stack.pop()
            i += 1
        else:
            raise AssertionError(f"unexpected token {tok!r}")
    assert not stack
    lines = [ln for ln in motion_text.strip().splitlines()]
    assert lines[0].startswith("Frames:") and lines[1].startswith("Frame Time:")
    frames = int(lines[0].split(":")[1])
    frame_time = float(lines[1].split(":")[1])
    motion = np.array([[float(x) for x in ln.split()] for ln in lines[2:]])
    assert motion.shape == (frames, sum(len(j.channels) for j in joints))
    return Bvh(joints, ends, frames, frame_time, motion)


def _axis_rotation(axis: str, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def bvh_positions(bvh: Bvh, frame: int) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """World position of every named joint and of every End Site at ``frame``."""
    values = iter(bvh.motion[frame])
    world_rot, world_pos = [], []
    for j in bvh.joints:
        rot, pos = np.eye(3), None
        channel_values = {}
        for ch in j.channels:
            v = next(values)
            if ch.endswith("position"):
                channel_values[ch[0]] = v
            else:
                rot = rot @ _axis_rotation(ch[0], v)                         # listed order, intrinsic
        if j.parent < 0:
            pos = np.array([channel_values["X"], channel_values["Y"], channel_values["Z"]])
            world_rot.append(rot)
        else:
            pos = world_pos[j.parent] + world_rot[j.parent] @ j.offset
            world_rot.append(world_rot[j.parent] @ rot)
        world_pos.append(pos)
    ends = [world_pos[p] + world_rot[p] @ off for p, off in bvh.end_sites]
    return {j.name: world_pos[i] for i, j in enumerate(bvh.joints)}, ends


def joints21(bvh: Bvh, frame: int) -> np.ndarray:
    """(21, 3) positions in conventions.JOINT_NAMES order; a tip is the End Site of its parent."""
    named, ends = bvh_positions(bvh, frame)
    names = [j.name for j in bvh.joints]
    out = np.full((cv.NUM_JOINTS, 3), np.nan)
    for j, n in enumerate(cv.JOINT_NAMES):
        if n in named:
            out[j] = named[n]
    for (p, _), pos in zip(bvh.end_sites, ends):
        tip = [c for c, pc in enumerate(cv.JOINT_PARENTS) if pc == cv.JOINT_NAMES.index(names[p])]
        assert len(tip) == 1
        out[tip[0]] = pos
    return out


def _y_up(points: np.ndarray) -> np.ndarray:
    return points @ CAMERA_TO_Y_UP.T


# ----------------------------------------------------------------------------- tests

def test_three_frames_reproduce_the_posed_joints(tmp_path):
    case = open_hand_case(3, seed=5)
    path = write_bvh(tmp_path / "hand.bvh", case.rig, case.transforms)
    assert path == tmp_path / "hand.bvh" and [p.name for p in tmp_path.iterdir()] == ["hand.bvh"]
    bvh = read_bvh(path)
    assert bvh.frames == 3 and len(bvh.motion) == 3
    assert "Frame Time: 0.033333\n" in path.read_text()
    for t in range(3):
        np.testing.assert_allclose(joints21(bvh, t), _y_up(case.joints[t]), atol=1e-4)


def test_hierarchy_names_channels_and_offsets(tmp_path):
    case = open_hand_case(1, seed=0)
    bvh = read_bvh(write_bvh(tmp_path / "h.bvh", case.rig, case.transforms))
    names = [j.name for j in bvh.joints]
    kin_names = [cv.JOINT_NAMES[j] for j in cv.KINEMATIC_JOINTS]
    assert len(bvh.joints) == 16 and sorted(names) == sorted(kin_names) and names[0] == "wrist"
    assert len(bvh.end_sites) == 5
    assert bvh.joints[0].channels == ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]
    for j in bvh.joints[1:]:
        assert j.channels == ["Zrotation", "Xrotation", "Yrotation"]
        assert cv.JOINT_NAMES[cv.JOINT_PARENTS[cv.JOINT_NAMES.index(j.name)]] == names[j.parent]
    rest = _y_up(case.rig.rest_transforms[:, :3, 3])
    for j in bvh.joints:
        k = cv.JOINT_NAMES.index(j.name)
        expected = rest[k] - (rest[cv.JOINT_PARENTS[k]] if k else 0.0)
        np.testing.assert_allclose(j.offset, expected, atol=1e-6)


def test_rest_pose_has_zero_angles(tmp_path):
    case = open_hand_case(1, seed=0)
    bvh = read_bvh(write_bvh(tmp_path / "rest.bvh", case.rig, case.rig.rest_transforms[None]))
    np.testing.assert_allclose(bvh.motion[0, 3:], 0.0, atol=1e-6)
    np.testing.assert_allclose(joints21(bvh, 0), _y_up(case.rig.rest_transforms[:, :3, 3]), atol=1e-5)


def test_frame_time_follows_fps(tmp_path):
    case = open_hand_case(2, seed=1)
    path = write_bvh(tmp_path / "h.bvh", case.rig, case.transforms, fps=24.0)
    assert "Frames: 2\nFrame Time: 0.041667\n" in path.read_text()
    assert read_bvh(path).frame_time == pytest.approx(1 / 24, abs=1e-6)


def test_left_hand_is_the_mirror_image(tmp_path):
    case = open_hand_case(3, seed=6)
    bvh = read_bvh(write_bvh(tmp_path / "left.bvh", case.rig, case.transforms, mirror=True))
    for t in range(3):
        np.testing.assert_allclose(joints21(bvh, t), _y_up(case.joints[t] @ MIRROR_X), atol=1e-4)


def test_stretched_bones_warn(tmp_path, caplog):
    case = open_hand_case(1, seed=0)
    g = case.transforms.copy()
    g[0, 3, :3, 3] += 0.01                                                  # thumb IP 1 cm off its bone
    with caplog.at_level(logging.WARNING, logger="m3dhmr.export.bvh"):
        write_bvh(tmp_path / "h.bvh", case.rig, g)
    assert "change length" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="m3dhmr.export.bvh"):
        write_bvh(tmp_path / "h.bvh", case.rig, case.transforms)
    assert caplog.text == ""


@pytest.mark.parametrize("bad", ["extension", "joints", "nan", "no_frames", "improper", "fps", "rig"])
def test_bad_input_raises_and_leaves_no_file(tmp_path, bad):
    case = open_hand_case(1, seed=0)
    path, g, kwargs, rig = tmp_path / "h.bvh", case.transforms.copy(), {}, case.rig
    if bad == "extension":
        path = tmp_path / "h.txt"
    elif bad == "joints":
        g = g[:, :16]
    elif bad == "nan":
        g[0, 0, 0, 3] = np.nan
    elif bad == "no_frames":
        g = g[:0]
    elif bad == "improper":
        g[0, 5, :3, :3] = g[0, 5, :3, :3] @ MIRROR_X
    elif bad == "fps":
        kwargs = {"fps": float("nan")}
    elif bad == "rig":
        rig = None
    with pytest.raises(ValueError):
        write_bvh(path, rig, g, **kwargs)
    assert list(tmp_path.iterdir()) == []
