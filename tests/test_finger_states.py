"""Finger states from 3D joints: bends and the thumb's place against loops and hand-made hands."""

from __future__ import annotations

import math

import numpy as np
import pytest

from m3dhmr.conventions import FINGER_JOINTS, FINGER_NAMES
from m3dhmr.geometry import finger_states as F


def make_hand(bend: dict[str, float] | None = None, thumb_tip=(5.0, -4.0, 0.0)) -> np.ndarray:
    """(21, 3) a flat right hand, fingers up (-y) in the z = 0 plane, index MCP at x = +3 and
    little MCP at x = -3; ``bend`` (degrees) bends each joint after a finger's base about x
    (towards +z); the thumb's joints lie on the line from the wrist to ``thumb_tip``."""
    bend = bend or {}
    j = np.zeros((21, 3))
    for k, name in enumerate(FINGER_NAMES[1:]):
        base = np.array([3.0 - 2.0 * k, -8.0, 0.0])
        ids = FINGER_JOINTS[name]
        j[ids[0]] = base
        direction, a = np.array([0.0, -1.0, 0.0]), 0.0
        for i in ids[1:]:
            a += math.radians(bend.get(name, 0.0))
            direction = np.array([0.0, -math.cos(a), math.sin(a)])
            j[i] = j[i - 1] + 3.0 * direction
    tip = np.asarray(thumb_tip, float)
    for s, i in zip((0.25, 0.5, 0.75, 1.0), FINGER_JOINTS["thumb"]):
        j[i] = s * tip
    return j




def test_bend_angles_hand_computed():
    flat = F.bend_angles(make_hand())
    # MCP: the metacarpal wrist -> (x, -8, 0) against a finger along -y: atan(|x| / 8)
    np.testing.assert_allclose(flat[1:, 0], np.degrees(np.arctan(np.array([3, 1, 1, 3]) / 8)), atol=1e-9)
    np.testing.assert_allclose(flat[1:, 1:], 0, atol=1e-9)
    bent = F.bend_angles(make_hand({"index": 30.0, "ring": 90.0}))
    np.testing.assert_allclose(bent[1, 1:], [30, 30], atol=1e-9)
    np.testing.assert_allclose(bent[3, 1:], [90, 90], atol=1e-9)
    # ring MCP: (-1, -8, 0) against (0, -cos 90, sin 90) = (0, 0, 1): a right angle
    assert bent[3, 0] == pytest.approx(90.0)
    np.testing.assert_allclose(bent[2, 1:], [0, 0], atol=1e-9)


def _bend_loop(j):
    out = np.zeros((5, 3))
    for f, name in enumerate(FINGER_NAMES):
        chain = [0, *FINGER_JOINTS[name]]
        for k in range(3):
            a = j[chain[k + 1]] - j[chain[k]]
            b = j[chain[k + 2]] - j[chain[k + 1]]
            c = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
            out[f, k] = math.degrees(math.acos(max(-1.0, min(1.0, c))))
    return out


def _states_loop(j):
    bends = _bend_loop(j)
    t = float(np.dot(j[4] - j[5], j[17] - j[5]) / np.dot(j[17] - j[5], j[17] - j[5]))
    out = ["across" if t > F.THUMB_ACROSS else "out"]
    out += ["curled" if bends[f].sum() > F.CURLED_BEND_DEG else "extended" for f in range(1, 5)]
    return out


def test_finger_maths_match_loops():
    rng = np.random.default_rng(1)
    joints = rng.normal(size=(4, 3, 21, 3))
    got = F.bend_angles(joints)
    states = F.finger_states(joints)
    assert got.shape == (4, 3, 5, 3) and states.shape == (4, 3, 5)
    for a in range(4):
        for b in range(3):
            np.testing.assert_allclose(got[a, b], _bend_loop(joints[a, b]), atol=1e-9)
            assert states[a, b].tolist() == _states_loop(joints[a, b])


def test_thumb_position_hand_computed():
    j = make_hand(thumb_tip=(1.0, -4.0, 0.0))  # index MCP x = 3, little MCP x = -3
    assert F.thumb_position(j) == pytest.approx(2 / 6)
    assert F.thumb_position(make_hand(thumb_tip=(6.0, -3.0, 2.0))) == pytest.approx(-0.5)


def test_finger_states_of_handshapes():
    five = make_hand(thumb_tip=(7.0, -3.0, 0.0))
    assert F.finger_states(five).tolist() == ["out", "extended", "extended", "extended", "extended"]
    one = make_hand({"middle": 60, "ring": 60, "little": 60}, thumb_tip=(0.0, -6.0, 2.0))
    assert F.finger_states(one).tolist() == ["across", "extended", "curled", "curled", "curled"]
    # just below and above the curl threshold (three equal bends)
    # the middle finger just below and above the curl threshold (its MCP bend is a bit
    # more than b: the metacarpal leans 7 deg sideways)
    for delta, state in ((-1.0, "extended"), (1.0, "curled")):
        b = (F.CURLED_BEND_DEG + delta) / 3
        total = F.bend_angles(make_hand({"middle": b}))[2].sum()
        assert (total > F.CURLED_BEND_DEG) == (state == "curled"), total
        assert F.finger_states(make_hand({"middle": b}))[2] == state


def test_bad_shape():
    with pytest.raises(ValueError, match=r"\(\.\.\., 21, 3\)"):
        F.finger_states(np.zeros((21, 2)))


def test_thumb_threshold():
    # index MCP x = 3, little MCP x = -3: t = (3 - x) / 6
    for x, state in ((3 + 6 * 0.3, "across"), (3 + 6 * 0.5, "out")):
        assert F.finger_states(make_hand(thumb_tip=(x, -5.0, 0.0)))[0] == state
