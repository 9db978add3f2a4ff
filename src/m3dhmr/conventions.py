"""The package's conventions, written once and pinned by ``tests/test_conventions.py``.

Joints
    21 joints in FreiHAND order: wrist, then thumb, index, middle, ring, little,
    each from base to tip (MCP/CMC, PIP/MCP, DIP/IP, tip).
Regions
    Six hand regions for the ROI layer: palm, thumb, index, middle, ring, little.
Units
    Metres everywhere in data and code; millimetres only in reports (metrics files,
    README tables), converted with :data:`MM_PER_M`.
Camera
    OpenCV pinhole: x right, y down, z forward (points in front of the camera have
    z > 0); intrinsics ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels; pixel
    centres at integer coordinates, so the image spans ``[-0.5, W - 0.5]``.
Rotations
    Axis-angle vectors (radians) and 3x3 matrices acting on column vectors,
    ``x_world = R @ x_local``; row-vector batches use ``x @ R.T``.
Root
    Root-relative coordinates are relative to the wrist, joint :data:`ROOT_JOINT`.
Dimension legend for docstrings
    B batch, V vertices, F faces, J joints (21), S spiral length, K DSC kernels,
    C channels, H/W image height/width, L mesh levels.
"""

from __future__ import annotations

from typing import Final
from m3dhmr.errors import InputError

JOINT_NAMES: Final[tuple[str, ...]] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "little_mcp", "little_pip", "little_dip", "little_tip",
)
NUM_JOINTS: Final[int] = 21
ROOT_JOINT: Final[int] = 0

FINGER_NAMES: Final[tuple[str, ...]] = ("thumb", "index", "middle", "ring", "little")
#: Joint indices of each finger, base to tip.
FINGER_JOINTS: Final[dict[str, tuple[int, int, int, int]]] = {
    name: tuple(range(1 + 4 * i, 5 + 4 * i)) for i, name in enumerate(FINGER_NAMES)  # type: ignore[misc]
}
#: Parent of each joint in the 21-joint skeleton (-1 for the wrist).
JOINT_PARENTS: Final[tuple[int, ...]] = (
    -1,
    0, 1, 2, 3,
    0, 5, 6, 7,
    0, 9, 10, 11,
    0, 13, 14, 15,
    0, 17, 18, 19,
)
#: Bones as (parent, child) joint pairs, 20 of them.
BONES: Final[tuple[tuple[int, int], ...]] = tuple(
    (p, c) for c, p in enumerate(JOINT_PARENTS) if p >= 0
)
TIP_JOINTS: Final[tuple[int, ...]] = (4, 8, 12, 16, 20)
#: The 16 joints that rotate (all but the tips), FreiHAND indices, in pose order.
KINEMATIC_JOINTS: Final[tuple[int, ...]] = tuple(j for j in range(NUM_JOINTS) if j not in TIP_JOINTS)
#: Parent of each kinematic joint, as an index into :data:`KINEMATIC_JOINTS`.
KINEMATIC_PARENTS: Final[tuple[int, ...]] = tuple(
    -1 if j == 0 else KINEMATIC_JOINTS.index(JOINT_PARENTS[j]) for j in KINEMATIC_JOINTS
)
#: FreiHAND's scale joint pair: |xyz[9] - xyz[10]| is ``training_scale.json``.
SCALE_BONE: Final[tuple[int, int]] = (9, 10)

REGION_NAMES: Final[tuple[str, ...]] = ("palm", "thumb", "index", "middle", "ring", "little")
NUM_REGIONS: Final[int] = 6
#: Region label of each joint's *outgoing* bone: the wrist and every finger base
#: belong to the finger whose bone starts there, except the wrist (palm).
PALM: Final[int] = 0

#: MANO vertex ids of the fingertips (thumb, index, middle, ring, little), FreiHAND.
MANO_TIP_VERTICES: Final[tuple[int, ...]] = (744, 320, 443, 555, 672)
MANO_NUM_VERTICES: Final[int] = 778
MANO_NUM_FACES: Final[int] = 1538

METRES: Final[str] = "m"
MM_PER_M: Final[float] = 1000.0
#: Root-relative vertices are predicted divided by this (metres), as in CMR/MobRecon.
VERTEX_NORMALISATION_M: Final[float] = 0.2

CAMERA_CONVENTION: Final[str] = "opencv"  # x right, y down, z forward
#: The exported files' axes, as their files' headers and the README state them.
CAMERA_AXES_TEXT: Final[str] = "OpenCV camera axes (x right, y down, z forward), metres"
#: Y-up axes (glTF, BVH, Blender's importers): the camera axes turned 180 degrees about x.
Y_UP_AXES_TEXT: Final[str] = "y-up axes (x right, y up, z towards the viewer: OpenCV camera axes turned " \
                             "180 degrees about x), metres"

#: ImageNet statistics the backbone normalises with (images enter as RGB in [0, 1]).
IMAGENET_MEAN: Final[tuple[float, float, float]] = (0.485, 0.456, 0.406)
IMAGENET_STD: Final[tuple[float, float, float]] = (0.229, 0.224, 0.225)


def finger_of_joint(j: int) -> int:
    """Region label (1..5) of a finger joint ``j`` in 1..20, or 0 (palm) for the wrist."""
    if not 0 <= j < NUM_JOINTS:
        raise InputError(f"joint index {j} outside 0..{NUM_JOINTS - 1}")
    return 0 if j == 0 else 1 + (j - 1) // 4
