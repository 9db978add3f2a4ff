"""Six hand regions per vertex (palm, thumb, index, middle, ring, little) for the ROI layer.

Labels follow :data:`m3dhmr.conventions.REGION_NAMES`. They come from skinning weights
when the hand model has them, otherwise from the nearest bone of the 21 joints; either
way :func:`make_regions_connected` then makes every region one connected piece.

Bone -> region (21-joint FreiHAND order): the five wrist->finger-base bones, including
wrist->thumb CMC, are the palm; the thumb's metacarpal (CMC->MCP) and phalanges are the
thumb, because the thumb metacarpal moves with the thumb while the other metacarpals
stay in the palm; every other finger's three phalanges are that finger.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from m3dhmr.conventions import BONES, NUM_JOINTS, NUM_REGIONS, finger_of_joint
from m3dhmr.errors import InputError
from m3dhmr.mesh.adjacency import edges
from m3dhmr.mesh.validate import vertex_array

log = logging.getLogger(__name__)

#: Region of each of MANO's 16 skinning joints (wrist, index1-3, middle1-3, little1-3,
#: ring1-3, thumb1-3): a joint's weights cover the segment it rotates.
MANO_JOINT_REGION: tuple[int, ...] = (0, 2, 2, 2, 3, 3, 3, 5, 5, 5, 4, 4, 4, 1, 1, 1)
#: Region of 16 skinning joints in FreiHAND order without the tips
#: (wrist, thumb1-3, index1-3, middle1-3, ring1-3, little1-3).
FREIHAND16_JOINT_REGION: tuple[int, ...] = (0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5)

#: Region of each bone in :data:`m3dhmr.conventions.BONES` (see the module docstring).
BONE_REGION: tuple[int, ...] = tuple(0 if p == 0 else finger_of_joint(c) for p, c in BONES)


def regions_from_skinning(skinning_weights: np.ndarray, joint_region: np.ndarray | tuple[int, ...]) -> np.ndarray:
    """Region of each vertex as the region with the largest summed skinning weight.

    Args:
        skinning_weights: (V, J_s) weights of J_s skinning joints (16 for MANO).
        joint_region: (J_s,) region label (0..5) of each skinning joint, e.g.
            :data:`MANO_JOINT_REGION`.

    Returns:
        (V,) int64 in 0..5 (ties go to the lower label). Not yet made connected.
    """
    w = np.asarray(skinning_weights, dtype=np.float64)
    jr = np.asarray(joint_region)
    if w.ndim != 2 or w.shape[0] == 0:
        raise InputError(f"skinning_weights must have shape (V, J), got {w.shape}")
    if jr.shape != (w.shape[1],) or not np.issubdtype(jr.dtype, np.integer):
        raise InputError(f"joint_region must be ({w.shape[1]},) integers, one per skinning joint, got "
                         f"dtype {jr.dtype} shape {jr.shape}")
    if jr.min() < 0 or jr.max() >= NUM_REGIONS:
        raise InputError(f"joint_region values must lie in 0..{NUM_REGIONS - 1}, got {sorted(set(jr.tolist()))}")
    if not np.isfinite(w).all():
        raise InputError("skinning_weights contain NaN/inf")
    per_region = np.zeros((w.shape[0], NUM_REGIONS))
    for r in range(NUM_REGIONS):
        per_region[:, r] = w[:, jr == r].sum(axis=1)
    return np.argmax(per_region, axis=1).astype(np.int64)


def point_segment_distance(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Distances (N, M) from each of ``points`` (N, 3) to segments ``starts``/``ends`` (M, 3)."""
    p = np.asarray(points, dtype=np.float64)[:, None, :]
    a = np.asarray(starts, dtype=np.float64)[None]
    ab = np.asarray(ends, dtype=np.float64)[None] - a
    den = (ab * ab).sum(-1)
    t = np.divide(((p - a) * ab).sum(-1), den, out=np.zeros(np.broadcast_shapes(p.shape[:2], den.shape)),
                  where=den > 0)
    t = np.clip(t, 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def regions_from_joints(vertices: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Region of each vertex from its nearest bone (see the module docstring).

    Args:
        vertices: (V, 3); joints: (21, 3) in FreiHAND order.

    Returns:
        (V,) int64 in 0..5 (ties go to the lower bone index). Not yet made connected.
    """
    v = vertex_array(vertices, nonempty=True)
    j = np.asarray(joints, dtype=np.float64)
    if j.shape != (NUM_JOINTS, 3):
        raise InputError(f"joints must have shape ({NUM_JOINTS}, 3), got {j.shape}")
    if not (np.isfinite(v).all() and np.isfinite(j).all()):
        raise InputError("vertices or joints contain NaN/inf")
    bones = np.asarray(BONES)
    d = point_segment_distance(v, j[bones[:, 0]], j[bones[:, 1]])
    return np.asarray(BONE_REGION, dtype=np.int64)[np.argmin(d, axis=1)]


def regions_from_joint_regressor(vertices: np.ndarray, joint_regressor: np.ndarray) -> np.ndarray:
    """:func:`regions_from_joints` with ``joints = joint_regressor (21, V) @ vertices (V, 3)``."""
    reg = np.asarray(joint_regressor, dtype=np.float64)
    v = np.asarray(vertices, dtype=np.float64)
    if reg.shape != (NUM_JOINTS, v.shape[0]):
        raise InputError(f"joint_regressor must have shape ({NUM_JOINTS}, {v.shape[0]}), got {reg.shape}")
    return regions_from_joints(v, reg @ v)


def region_pieces(faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(6,) int64: number of connected pieces of each region (0 for an empty region)."""
    lab = np.asarray(labels).astype(np.int64)
    nv = lab.shape[0]
    e = edges(faces)
    es = e[lab[e[:, 0]] == lab[e[:, 1]]]
    g = sp.csr_matrix((np.ones(es.shape[0]), (es[:, 0], es[:, 1])), shape=(nv, nv))
    _, comp = connected_components(g, directed=False)
    out = np.zeros(NUM_REGIONS, dtype=np.int64)
    for r in range(NUM_REGIONS):
        out[r] = np.unique(comp[lab == r]).size
    return out


def make_regions_connected(faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Relabel stray pieces so that every region is one connected piece.

    For each label only its largest connected piece (along mesh edges between equally
    labelled vertices; ties: the piece holding the lowest vertex index) keeps the label.
    Other pieces are moved, smallest first, to the neighbouring label sharing the most
    edges with them (ties: lower label), and the pieces are recomputed after each move;
    the total number of pieces drops each time, so this ends. A piece with no neighbour
    of another label (a separate mesh component) keeps its label with a warning.

    Args:
        faces: (F, 3) int; labels: (V,) int.

    Returns:
        (V,) int64 new labels (a copy).
    """
    lab = np.asarray(labels).astype(np.int64).copy()
    if lab.ndim != 1:
        raise InputError(f"labels must have shape (V,), got {lab.shape}")
    nv = lab.shape[0]
    e = edges(faces)
    if e.size and e.max() >= nv:
        raise InputError(f"faces reference vertex {e.max()} but labels has only {nv} entries")
    stuck: set[int] = set()
    while True:
        same = lab[e[:, 0]] == lab[e[:, 1]]
        es = e[same]
        g = sp.csr_matrix((np.ones(es.shape[0]), (es[:, 0], es[:, 1])), shape=(nv, nv))
        ncomp, comp = connected_components(g, directed=False)
        sizes = np.bincount(comp, minlength=ncomp)
        first = np.full(ncomp, nv, dtype=np.int64)
        np.minimum.at(first, comp, np.arange(nv))
        comp_label = lab[first]
        # Keeper per label: the largest piece, ties by lowest vertex index.
        order = np.lexsort((first, -sizes, comp_label))
        keep = np.zeros(ncomp, dtype=bool)
        keep[order[np.r_[True, comp_label[order][1:] != comp_label[order][:-1]]]] = True
        strays = [c for c in np.lexsort((first, sizes)) if not keep[c] and int(first[c]) not in stuck]
        if not strays:
            break
        c = strays[0]
        cross = e[~same]
        ca, cb = comp[cross[:, 0]] == c, comp[cross[:, 1]] == c
        other = np.concatenate([lab[cross[ca, 1]], lab[cross[cb, 0]]])
        if other.size == 0:
            log.warning("region %d: a piece of %d vertices (from vertex %d) touches no other region; "
                        "it stays a separate piece", comp_label[c], sizes[c], first[c])
            stuck.add(int(first[c]))
            continue
        counts = np.bincount(other, minlength=NUM_REGIONS)
        lab[comp == c] = int(np.argmax(counts))
    return lab
