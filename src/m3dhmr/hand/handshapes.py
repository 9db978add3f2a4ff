"""A library of real handshapes in the open hand's pose convention, and sampling around them.

Each handshape is a (16, 3) local pose (rows: :data:`m3dhmr.conventions.KINEMATIC_JOINTS`,
columns: flexion, abduction, twist; see :mod:`m3dhmr.hand.limits`), global rotation zero:
gestures (fist, thumbs-up, point, pinch, OK, flat, spread, claw), the ten Turkish
sign-language digits of ``../shared/data/sign-language-digits`` (written from looking at
its photos: 0 all fingertips round onto the thumb, 1 index up, 2 index + middle up, 3 thumb +
index + middle, 4 four fingers up with the thumb across the palm, 5 all spread, 6-9 three
fingers up and the thumb tip on the little / ring / middle / index tip), and grips of
cylinders, spheres, flat objects and pens (power, precision, lateral/key, tripod).

The thumb and the touching fingers of the contact shapes (pinch, OK, digit 0 and 6-9,
tripod, lateral) were found by minimising the distance of the touching points (thumb tip to
fingertip about 6-7 mm between the tip joints, i.e. the pads touch) under the joint limits
with a penalty keeping the thumb 16 mm from the other fingers' bones and the palm; every
grid was rendered and looked at.

:func:`sample_handshapes` draws poses around them: each finger curls a bit more or less as a
whole, every joint gets small Gaussian noise, then the pose is clamped to the limits.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from m3dhmr import conventions as cv
from m3dhmr.errors import InputError
from m3dhmr.hand.limits import clamp_pose


class _Spec(NamedTuple):
    fingers: dict[str, tuple[float, float, float]]        # (mcp, pip, dip) flexion; absent: extended
    thumb: tuple[float, float, float, float, float, float]  # cmc (flex, abd, twist), mcp (flex, abd), ip flex
    spread: float                                         # scale of the MCP abductions of :data:`_SPREAD`
    grip: str | None = None                               # kind of object the shape holds


#: Flexion of an extended finger (a slight natural bend).
_EXTENDED = (0.0, 0.05, 0.05)
#: Flexion of a finger curled into the fist.
_CURLED = (1.45, 1.75, 1.0)
#: MCP abduction (index, middle, ring, little) at spread 1.
_SPREAD = (0.15, 0.0, -0.12, -0.25)

_SPECS: dict[str, _Spec] = {
    "fist": _Spec(dict(index=_CURLED, middle=_CURLED, ring=_CURLED, little=_CURLED),
        (0.6, 0.3, 0.0, 0.75, 0.0, 0.8), 0.0),
    "thumbs_up": _Spec(dict(index=_CURLED, middle=_CURLED, ring=_CURLED, little=_CURLED),
        (-0.2, 0.3, 0.3, 0.0, 0.0, 0.0), 0.0),
    "point": _Spec(dict(middle=_CURLED, ring=_CURLED, little=_CURLED), (0.6, 0.3, 0.0, 0.75, 0.0, 0.8), 0.3),
    "pinch": _Spec(dict(index=(0.721, 0.902, 0.454), middle=(0.4, 0.5, 0.25),
                        ring=(0.5, 0.6, 0.3), little=(0.6, 0.7, 0.35)),
        (0.704, 0.236, -0.374, -0.104, 0.032, 0.1), 0.3),
    "ok": _Spec(dict(index=(0.681, 0.942, 0.551)), (0.633, 0.291, -0.419, -0.066, -0.026, 0.157), 1.0),
    "flat": _Spec({}, (0.1, -0.1, 0.0, 0.0, 0.0, 0.0), -0.3),
    "spread": _Spec({}, (-0.3, 0.4, 0.0, 0.0, 0.0, 0.0), 1.4),
    "claw": _Spec(dict(index=(0.1, 1.3, 1.1), middle=(0.1, 1.3, 1.1), ring=(0.1, 1.3, 1.1), little=(0.1, 1.3, 1.1)),
        (0.0, 0.4, 0.0, 0.5, 0.0, 0.8), 1.0),
    "digit_0": _Spec(dict(index=(1.513, 0.901, -0.038), middle=(1.403, 1.126, 0.144),
                          ring=(0.8, 0.95, 0.5), little=(0.85, 0.95, 0.5)),
        (0.463, 0.578, -0.13, 0.443, -0.094, 1.077), 0.0),
    "digit_1": _Spec(dict(middle=_CURLED, ring=_CURLED, little=_CURLED),
        (0.6, 0.3, 0.0, 0.75, 0.0, 0.8), 0.0),
    "digit_2": _Spec(dict(ring=_CURLED, little=_CURLED), (0.6, 0.3, 0.0, 0.75, 0.0, 0.8), 0.6),
    "digit_3": _Spec(dict(ring=_CURLED, little=_CURLED), (-0.3, 0.3, 0.0, 0.0, 0.0, 0.0), 0.6),
    "digit_4": _Spec({}, (0.8, 0.4, 0.0, 0.4, 0.0, 0.6), 0.6),
    "digit_5": _Spec({}, (-0.3, 0.3, 0.0, 0.0, 0.0, 0.0), 1.0),
    "digit_6": _Spec(dict(little=(1.192, 0.89, 0.439)), (0.9, 0.566, -0.5, 0.733, 0.2, 0.689), 0.5),
    "digit_7": _Spec(dict(ring=(1.04, 0.962, 0.555)), (0.9, 0.583, -0.425, 0.446, 0.049, 0.43), 0.5),
    "digit_8": _Spec(dict(middle=(0.993, 0.979, 0.582)), (0.822, 0.491, -0.408, 0.237, -0.01, 0.316), 0.5),
    "digit_9": _Spec(dict(index=(0.752, 0.859, 0.494)), (0.597, 0.359, -0.5, 0.002, -0.062, 0.132), 0.5),
    "grip_cylinder": _Spec(dict(index=(0.9, 1.1, 0.6), middle=(0.95, 1.1, 0.6),
                                ring=(1.0, 1.1, 0.6), little=(1.05, 1.1, 0.6)),
        (0.4, 0.8, 0.0, 0.3, 0.0, 0.4), 0.0, "cylinder"),
    "grip_sphere": _Spec(dict(index=(0.5, 0.7, 0.4), middle=(0.55, 0.7, 0.4),
                              ring=(0.6, 0.7, 0.4), little=(0.65, 0.7, 0.4)),
        (0.2, 0.8, 0.0, 0.2, 0.0, 0.3), 1.0, "sphere"),
    "grip_sphere_precision": _Spec(dict(index=(0.35, 0.6, 0.35), middle=(0.4, 0.6, 0.35),
                                        ring=(0.45, 0.6, 0.35), little=(0.5, 0.6, 0.35)),
        (0.2, 0.7, -0.2, 0.1, 0.0, 0.2), 1.2, "sphere"),
    "grip_lateral": _Spec(dict(index=(0.9, 1.3, 0.6), middle=(1.2, 1.6, 0.9),
                               ring=(1.3, 1.7, 0.9), little=(1.4, 1.7, 0.9)),
        (0.222, 0.032, -0.192, 0.225, -0.16, 0.234), 0.0, "plate"),
    "grip_flat": _Spec(dict(index=(0.6, 0.1, 0.1), middle=(0.6, 0.1, 0.1),
                            ring=(0.6, 0.1, 0.1), little=(0.6, 0.1, 0.1)),
        (0.3, 0.6, -0.2, 0.0, 0.0, 0.1), 0.0, "plate"),
    "grip_tripod": _Spec(dict(index=(1.312, 1.053, 0.019), middle=(1.036, 1.382, 0.446),
                              ring=(1.1, 1.3, 0.8), little=(1.2, 1.4, 0.8)),
        (0.439, 0.49, -0.157, 0.247, -0.077, 0.887), 0.0, "stick"),
}

#: Names of the handshapes, in a fixed order (sampling indexes into it).
HANDSHAPE_NAMES: tuple[str, ...] = tuple(_SPECS)
#: Handshape -> kind of the object it holds ("cylinder", "sphere", "plate", "stick"), for the grips.
GRIPS: dict[str, str] = {n: s.grip for n, s in _SPECS.items() if s.grip is not None}
#: Touching points of the contact shapes: (thumb tip, fingertip) FreiHAND joint pairs.
CONTACTS: dict[str, tuple[int, int]] = {"pinch": (4, 8), "ok": (4, 8), "digit_6": (4, 20), "digit_7": (4, 16),
                                        "digit_8": (4, 12), "digit_9": (4, 8)}
#: Std of the per-finger curl factor and of the per-joint (flexion, abduction, twist) noise, radians.
CURL_JITTER = 0.08
JOINT_NOISE = (0.05, 0.03, 0.02)


def _spec_pose(spec: _Spec) -> np.ndarray:
    p = np.zeros((len(cv.KINEMATIC_JOINTS), 3))
    for i, f in enumerate(cv.FINGER_NAMES[1:]):
        flex = spec.fingers.get(f, _EXTENDED)
        for k, j in enumerate(cv.FINGER_JOINTS[f][:3]):
            p[cv.KINEMATIC_JOINTS.index(j), 0] = flex[k]
        p[cv.KINEMATIC_JOINTS.index(cv.FINGER_JOINTS[f][0]), 1] = spec.spread * _SPREAD[i]
    cmc, mcp, ip = (cv.KINEMATIC_JOINTS.index(j) for j in cv.FINGER_JOINTS["thumb"][:3])
    p[cmc] = spec.thumb[:3]
    p[mcp, :2] = spec.thumb[3:5]
    p[ip, 0] = spec.thumb[5]
    return p


def unclamped_handshape(name: str) -> np.ndarray:
    """The (16, 3) float64 axis-angle rotations of handshape ``name`` as written in its spec
    (global rotation zero), before :func:`handshape` clamps them to the joint limits."""
    if name not in _SPECS:
        raise InputError(f"unknown handshape {name!r}; expected one of {', '.join(HANDSHAPE_NAMES)}")
    return _spec_pose(_SPECS[name])


def handshape(name: str) -> np.ndarray:
    """The (48,) float64 pose of handshape ``name`` (global rotation zero, inside the limits)."""
    return clamp_pose(unclamped_handshape(name).reshape(1, -1))[0]


def sample_handshapes(n: int, rng: np.random.Generator, name: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Poses around the library's handshapes.

    Args:
        n: number of poses.
        rng: the random generator (all randomness comes from it, in a fixed order per pose:
            the name when ``name`` is None, 5 curl factors, 15 x 3 joint noises).
        name: one handshape for all, or None for a uniformly random one per pose.

    Returns:
        (n, 48) float64 poses inside the limits (global rotation zero), and the n names.
    """
    if n < 0:
        raise InputError(f"n must be >= 0, got {n}")
    if name is not None and name not in _SPECS:
        raise InputError(f"unknown handshape {name!r}; expected one of {', '.join(HANDSHAPE_NAMES)}")
    out = np.zeros((n, len(cv.KINEMATIC_JOINTS), 3))
    names = []
    for i in range(n):
        k = name if name is not None else HANDSHAPE_NAMES[int(rng.integers(len(HANDSHAPE_NAMES)))]
        p = _spec_pose(_SPECS[k])
        curl = rng.normal(1.0, CURL_JITTER, size=5)
        for f, c in zip(cv.FINGER_NAMES, curl):
            p[[cv.KINEMATIC_JOINTS.index(j) for j in cv.FINGER_JOINTS[f][:3]], 0] *= c
        p[1:] += rng.normal(0.0, 1.0, size=(len(cv.KINEMATIC_JOINTS) - 1, 3)) * np.asarray(JOINT_NOISE)
        out[i] = p
        names.append(k)
    out[:, 0] = 0.0
    return clamp_pose(out.reshape(n, -1)), names
