"""MANO for users who have ``MANO_RIGHT.pkl``: read without chumpy, posed like the open hand.

A pickle is code: loading one can run anything its author chose. :func:`read_mano_pickle`
therefore uses a restricted unpickler that admits only numpy array/dtype reconstruction,
scipy sparse (csc/csr) matrices, and chumpy arrays (``chumpy.ch.Ch``), which become plain
numpy arrays through a shim (chumpy itself is never imported). Anything else is refused
with "a pickle is code; refusing to load <module.name>".

Model (Romero et al. 2017), :class:`Mano`:
    v_shaped = v_template + shapedirs . betas;  J = J_regressor @ v_shaped (16 joints)
    v_posed  = v_shaped + posedirs . (R_j - I)_{j=1..15}
    vertices = LBS(v_posed, weights, FK(R, J, kintree_table))
Pose (48) is MANO's native layout (global, then index1-3, middle1-3, little1-3,
ring1-3, thumb1-3; axis-angle in world-aligned rest axes). ``flat_hand_mean=True``
(default) takes the pose as is, so zero pose is the flat template like every
:class:`~m3dhmr.hand.model.HandModel`; ``flat_hand_mean=False`` adds ``hands_mean`` to
the 45 finger values first (manopth's convention, which FreiHAND's
``training_mano.json`` poses use). Joints: the 16 posed joints reordered to FreiHAND
order plus the fingertip vertices :data:`m3dhmr.conventions.MANO_TIP_VERTICES`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from m3dhmr import conventions as cv
from m3dhmr.errors import InputError
from m3dhmr.hand.kinematics import batch_rodrigues, forward_kinematics, linear_blend_skinning
from m3dhmr.hand.model import HandModel, HandOutput
from m3dhmr.hand.template import HandTemplate

#: MANO joint (wrist, index1-3, middle1-3, little1-3, ring1-3, thumb1-3) of each FreiHAND
#: non-tip joint: FreiHAND joint j = MANO joint MANO_TO_FREIHAND[j] (tips: -1).
MANO_TO_FREIHAND: tuple[int, ...] = (0, 13, 14, 15, -1, 1, 2, 3, -1, 4, 5, 6, -1, 10, 11, 12, -1, 7, 8, 9, -1)
REQUIRED_KEYS = ("v_template", "f", "weights", "kintree_table", "J_regressor", "shapedirs", "posedirs")


class _ChumpyArray:
    """Stands in for ``chumpy.ch.Ch``; keeps the pickled state (its 'x' is the array)."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _SparseState:
    """Stands in for scipy's csc/csr matrix classes of any scipy version; rebuilt afterwards."""

    fmt = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _CSC(_SparseState):
    fmt = "csc"


class _CSR(_SparseState):
    fmt = "csr"


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """Safe stand-in for ``copyreg._reconstructor``: only our shims, only on ``object``."""
    if base is not object or not issubclass(cls, (_ChumpyArray, _SparseState)):
        raise pickle.UnpicklingError(f"a pickle is code; refusing to reconstruct {cls!r} on {base!r}")
    return cls.__new__(cls)


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"a pickle is code; refusing _codecs.encode with {encoding!r}")
    return text.encode("latin1")


def _allowed(module: str, name: str) -> Any:
    numpy_core = ("numpy.core.multiarray", "numpy._core.multiarray")
    if module in numpy_core and name in ("_reconstruct", "scalar"):
        return getattr(np._core.multiarray, name) if hasattr(np, "_core") else getattr(np.core.multiarray, name)
    if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
        return np._core.numeric._frombuffer if hasattr(np, "_core") else np.core.numeric._frombuffer
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    if module.startswith("numpy") and name.endswith("DType") and module.endswith("dtypes"):
        return getattr(np.dtypes, name)
    if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix"):
        return _CSC if name == "csc_matrix" else _CSR
    if module == "chumpy.ch" and name == "Ch":
        return _ChumpyArray
    if module in ("copy_reg", "copyreg") and name == "_reconstructor":
        return _reconstructor
    if module in ("__builtin__", "builtins") and name == "object":
        return object
    if module == "_codecs" and name == "encode":
        return _latin1_bytes     # protocol-2 pickles written by Python 3 spell bytes this way
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed(module, name)
        if obj is None:
            raise pickle.UnpicklingError(f"a pickle is code; refusing to load {module}.{name}")
        return obj


def _to_numpy(value: Any, key: str) -> Any:
    if isinstance(value, _ChumpyArray):
        state = value.state
        if not isinstance(state, dict) or "x" not in state:
            raise InputError(f"MANO key {key!r}: chumpy object without an 'x' array")
        return np.asarray(_to_numpy(state["x"], key))
    if isinstance(value, _SparseState):
        s = value.state
        try:
            shape = tuple(s.get("_shape", s.get("shape")))
            args = (np.asarray(s["data"]), np.asarray(s["indices"]), np.asarray(s["indptr"]))
        except (AttributeError, KeyError, TypeError) as e:
            raise InputError(f"MANO key {key!r}: unreadable sparse matrix state ({e})") from e
        return (sp.csc_matrix if value.fmt == "csc" else sp.csr_matrix)(args, shape=shape)
    if isinstance(value, dict):
        return {k: _to_numpy(v, f"{key}.{k}") for k, v in value.items()}
    return value


def read_mano_pickle(path: str | Path) -> dict[str, Any]:
    """Read ``MANO_RIGHT.pkl`` (Python 2 or 3 pickle) into numpy/scipy values, safely.

    Returns:
        dict with at least v_template (778, 3), f (1538, 3), weights (778, 16),
        kintree_table (2, 16), J_regressor (16, 778) sparse, shapedirs (778, 3, 10),
        posedirs (778, 3, 135); others (hands_mean, hands_components, ...) as stored.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MANO file not found: {path}")
    with path.open("rb") as fh:
        try:
            data = _RestrictedUnpickler(fh, encoding="latin1").load()
        except pickle.UnpicklingError as e:
            raise InputError(f"{path}: {e}") from e
        except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
            raise InputError(f"{path}: not a readable MANO pickle ({type(e).__name__}: {e})") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a dict of MANO arrays, got {type(data).__name__}")
    data = {k: _to_numpy(v, k) for k, v in data.items()}
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise InputError(f"{path}: not a MANO model, missing key(s) {', '.join(missing)}")
    _check_mano(data, path)
    return data


def _check_mano(d: dict[str, Any], where: Any) -> None:
    v = np.asarray(d["v_template"])
    n = v.shape[0] if v.ndim == 2 else -1
    expect = {"v_template": (n, 3), "weights": (n, 16), "kintree_table": (2, 16), "J_regressor": (16, n),
              "posedirs": (n, 3, 135)}
    for k, shape in expect.items():
        got = tuple(d[k].shape)
        if got != shape or n <= max(cv.MANO_TIP_VERTICES):
            raise InputError(f"{where}: MANO key {k!r} has shape {got}, expected {shape} "
                             f"(V = {n}, need V > {max(cv.MANO_TIP_VERTICES)})")
    sd = np.asarray(d["shapedirs"])
    if sd.ndim != 3 or sd.shape[:2] != (n, 3):
        raise InputError(f"{where}: MANO key 'shapedirs' has shape {sd.shape}, expected ({n}, 3, S)")
    f = np.asarray(d["f"])
    if f.ndim != 2 or f.shape[1] != 3:
        raise InputError(f"{where}: MANO key 'f' has shape {f.shape}, expected (F, 3)")


def _parents(kintree_table: np.ndarray) -> tuple[int, ...]:
    kt = np.asarray(kintree_table).astype(np.int64)
    ids = {int(i): k for k, i in enumerate(kt[1])}
    parents = tuple(-1 if k == 0 else ids[int(kt[0, k])] for k in range(kt.shape[1]))
    return parents


def freihand_regressor(j_regressor: Any, num_vertices: int) -> np.ndarray:
    """(21, V) FreiHAND-order regressor: MANO's 16 joints reordered plus one-hot fingertip vertices."""
    dense = np.asarray(j_regressor.todense() if sp.issparse(j_regressor) else j_regressor, dtype=np.float64)
    reg = np.zeros((cv.NUM_JOINTS, num_vertices))
    for j, m in enumerate(MANO_TO_FREIHAND):
        if m >= 0:
            reg[j] = dense[m]
    for t, v in zip(cv.TIP_JOINTS, cv.MANO_TIP_VERTICES):
        reg[t, v] = 1.0
    return reg


def mano_template(data: dict[str, Any]) -> HandTemplate:
    """The MANO template (numpy) from :func:`read_mano_pickle`'s dict."""
    # heavy: the mesh modules (scipy.sparse.csgraph, scipy.linalg) load only for the MANO template
    from m3dhmr.mesh.regions import MANO_JOINT_REGION, make_regions_connected, regions_from_skinning

    v = np.asarray(data["v_template"], dtype=np.float64)
    f = np.asarray(data["f"]).astype(np.int64)
    w = np.asarray(data["weights"], dtype=np.float64)
    regions = make_regions_connected(f, regions_from_skinning(w, MANO_JOINT_REGION))
    return HandTemplate(v, f, freihand_regressor(data["J_regressor"], len(v)), regions, w, name="mano")


class Mano(HandModel):
    """MANO as a :class:`HandModel`; buffers in ``dtype``."""

    pose_convention = "mano"

    def __init__(self, data: dict[str, Any], flat_hand_mean: bool = True, num_shape: int = 10,
                 dtype: torch.dtype = torch.float32):
        template = mano_template(data)
        sd = np.asarray(data["shapedirs"], dtype=np.float64)
        if not 0 < num_shape <= sd.shape[2]:
            raise InputError(f"num_shape must be in 1..{sd.shape[2]}, got {num_shape}")
        super().__init__(template, tuple(f"beta{i}" for i in range(num_shape)))
        f32 = dtype
        n = template.num_vertices
        reg = data["J_regressor"]
        reg = np.asarray(reg.todense() if sp.issparse(reg) else reg, dtype=np.float64)
        mean = np.zeros(48)
        if not flat_hand_mean:
            if "hands_mean" not in data or np.asarray(data["hands_mean"]).size != 45:
                raise InputError("flat_hand_mean=False needs MANO key 'hands_mean' with 45 values")
            mean[3:] = np.asarray(data["hands_mean"], dtype=np.float64).ravel()
        self.flat_hand_mean = flat_hand_mean
        self.parents = _parents(data["kintree_table"])
        self.register_buffer("v_template", torch.tensor(template.vertices, dtype=f32), persistent=False)
        self.register_buffer("shapedirs", torch.as_tensor(sd[:, :, :num_shape], dtype=f32), persistent=False)
        # (V, 3, 135) -> (135, V, 3): pose feature index first.
        pd = np.asarray(data["posedirs"], dtype=np.float64).transpose(2, 0, 1)
        self.register_buffer("posedirs", torch.as_tensor(pd, dtype=f32), persistent=False)
        self.register_buffer("j_regressor", torch.as_tensor(reg, dtype=f32), persistent=False)
        self.register_buffer("weights", torch.tensor(template.skinning_weights, dtype=f32), persistent=False)
        self.register_buffer("pose_mean", torch.as_tensor(mean, dtype=f32), persistent=False)
        self.register_buffer("tip_vertices", torch.as_tensor(cv.MANO_TIP_VERTICES, dtype=torch.long),
                             persistent=False)
        self.freihand_from_mano = [m for m in MANO_TO_FREIHAND if m >= 0]
        self.freihand_slots = [j for j, m in enumerate(MANO_TO_FREIHAND) if m >= 0]
        assert n == self.v_template.shape[0]

    def _forward(self, pose: torch.Tensor, shape: torch.Tensor | None) -> HandOutput:
        B = pose.shape[0]
        dtype = self.v_template.dtype
        pose = pose.to(dtype) + self.pose_mean
        v = self.v_template.expand(B, -1, -1)
        if shape is not None:
            v = v + torch.einsum("vxs,bs->bvx", self.shapedirs, shape.to(dtype))
        rest_joints = torch.einsum("jv,bvx->bjx", self.j_regressor, v)                 # (B, 16, 3)
        rot = batch_rodrigues(pose.reshape(B, -1, 3))                                  # (B, 16, 3, 3)
        eye = torch.eye(3, dtype=dtype, device=pose.device)
        pose_feature = (rot[:, 1:] - eye).reshape(B, -1)                               # (B, 135)
        v = v + torch.einsum("bp,pvx->bvx", pose_feature, self.posedirs)
        joints16, transforms = forward_kinematics(rot, rest_joints, self.parents)
        vertices = linear_blend_skinning(v, self.weights, transforms)
        joints = vertices.new_zeros(B, cv.NUM_JOINTS, 3)
        joints[:, self.freihand_slots] = joints16[:, self.freihand_from_mano]
        joints[:, list(cv.TIP_JOINTS)] = vertices[:, self.tip_vertices]
        return HandOutput(vertices=vertices, joints=joints)


def load_mano(path: str | Path, flat_hand_mean: bool = True, num_shape: int = 10,
              dtype: torch.dtype = torch.float32) -> Mano:
    """MANO from ``MANO_RIGHT.pkl`` as a :class:`HandModel` (see the module doc for ``flat_hand_mean``)."""
    return Mano(read_mano_pickle(path), flat_hand_mean=flat_hand_mean, num_shape=num_shape, dtype=dtype)
