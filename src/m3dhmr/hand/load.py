"""A hand template by name.

``load_template(spec)`` accepts
    ``"open_hand"``                  the package's own right hand (see :mod:`m3dhmr.hand.open_hand`);
    ``"mano:/path/MANO_RIGHT.pkl"``  MANO's template, read without chumpy (see :mod:`m3dhmr.hand.mano`);
    ``"mano"``                        the same, the pickle at ``$M3DHMR_MANO`` (what the FreiHAND
                                      configs name, so that they run as they are);
    a folder                          with ``template.ply``, ``j_reg.npy`` (21, V), ``regions.npy`` (V,)
                                      and optionally ``skinning_weights.npy`` (V, 16), as written by
                                      ``m3dhmr template --out DIR``.

:func:`template_from_mesh` makes a template from a mesh and a joint regressor alone
(``m3dhmr template --mesh ... --joint-regressor ...``).

It sits above :mod:`m3dhmr.hand.template`, :mod:`m3dhmr.hand.open_hand` and
:mod:`m3dhmr.hand.mano` (which all use :class:`~m3dhmr.hand.template.HandTemplate`), so
that none of them imports another in a circle.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from m3dhmr.conventions import NUM_JOINTS
from m3dhmr.errors import InputError
from m3dhmr.hand.mano import load_mano, mano_template, read_mano_pickle
from m3dhmr.hand.open_hand import load_open_hand, load_open_hand_asset
from m3dhmr.hand.template import HandTemplate, read_template_dir

#: Environment variable naming ``MANO_RIGHT.pkl`` for the template spec ``"mano"``.
MANO_ENV = "M3DHMR_MANO"


def load_template(spec: str | Path) -> HandTemplate:
    """Load a template: ``"open_hand"``, ``"mano:/path/MANO_RIGHT.pkl"`` or a folder (see module doc)."""
    s = str(spec)
    if s == "open_hand":
        return dataclasses.replace(load_open_hand_asset().template)   # a fresh copy per call
    if s == "mano" or s.startswith("mano:"):
        return mano_template(read_mano_pickle(_mano_path(s)))
    folder = Path(s)
    if not folder.is_dir():
        raise FileNotFoundError(f"template {s!r}: not 'open_hand', 'mano', 'mano:/path/MANO_RIGHT.pkl' or an "
                                "existing folder")
    return read_template_dir(folder)


def _mano_path(spec: str) -> str:
    if spec == "mano":
        path = os.environ.get(MANO_ENV)
        if not path:
            raise FileNotFoundError(f"template 'mano': set {MANO_ENV}=/path/MANO_RIGHT.pkl (MANO's licence does not "
                                    "allow shipping it), or name the file: --template mano:/path/MANO_RIGHT.pkl")
        return path
    return spec[len("mano:"):]


def load_hand_model(spec: str | Path, dtype=None):
    """The articulated :class:`~m3dhmr.hand.model.HandModel` of a template spec (for fitting poses).

    ``"open_hand"`` or ``"mano"`` / ``"mano:/path/MANO_RIGHT.pkl"``; a template folder has
    a mesh but no articulated model, which is an error naming the choices.
    """
    dtype = torch.float32 if dtype is None else dtype
    s = str(spec)
    if s == "open_hand":
        return load_open_hand(dtype)
    if s == "mano" or s.startswith("mano:"):
        return load_mano(_mano_path(s), dtype=dtype)
    raise InputError(f"template {s!r} has no articulated hand model: articulation needs 'open_hand' or "
                     "'mano:/path/MANO_RIGHT.pkl' (a template folder holds a mesh, not joints that rotate)")


def template_from_mesh(vertices: np.ndarray, faces: np.ndarray, joint_regressor: np.ndarray,
                       name: str = "custom", where: str = "mesh") -> HandTemplate:
    """A template from a right-hand mesh and its joint regressor, with no skinning weights.

    vertices (V, 3) metres; faces (F, 3); joint_regressor (21, V) in FreiHAND's joint
    order (MANO-topology code bases ship MANO's 778-vertex ``template.ply`` and a
    21 x 778 ``j_reg.npy``). The mesh may be posed and anywhere in space (such files are
    often one posed sample in camera coordinates): it is moved so that its regressed
    wrist sits at the origin, and kept in its pose and orientation. That pose is then the
    network's rest shape: the mesh its decoder starts from and predicts offsets to (the
    offsets are learnt, so a posed start costs training steps, not accuracy), and the
    pose at which the six regions are cut (each vertex to its nearest bone, then made
    connected). Errors name ``where`` and the problem.
    """
    # heavy: the mesh modules (scipy.sparse.csgraph, scipy.linalg) load only to build a template from a mesh
    from m3dhmr.mesh.regions import make_regions_connected, regions_from_joint_regressor
    from m3dhmr.mesh.validate import check_triangle_mesh

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    reg = np.asarray(joint_regressor, dtype=np.float64)
    check_triangle_mesh(v, f, name=where)
    if reg.shape != (NUM_JOINTS, len(v)):
        raise InputError(f"{where}: the joint regressor must have shape ({NUM_JOINTS}, {len(v)}) for this "
                         f"{len(v)}-vertex mesh, got {reg.shape}")
    if not np.isfinite(reg).all():
        raise InputError(f"{where}: the joint regressor contains NaN/inf")
    v = v - reg[0] @ v  # wrist (joint 0) at the origin
    regions = make_regions_connected(f, regions_from_joint_regressor(v, reg))
    return HandTemplate(v, f.astype(np.int64), reg, regions, None, name=name)
