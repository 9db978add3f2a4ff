"""Hand templates: what the network and the topology need from a hand (numpy only, no torch).

:class:`HandTemplate`, and a template folder's reading and writing; a template by
name (``"open_hand"``, ``"mano:..."`` or a folder) is :func:`m3dhmr.hand.load.load_template`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m3dhmr import conventions as cv
from m3dhmr.errors import InputError
from m3dhmr.fileio import atomic_path
from m3dhmr.mesh.validate import mesh_arrays


@dataclass(frozen=True, eq=False)
class HandTemplate:
    """A right hand at rest (metres).

    Attributes:
        vertices: (V, 3) float64 rest vertices.
        faces: (F, 3) int64 triangles, outward normals.
        joint_regressor: (21, V) float64, FreiHAND joint order; ``joint_regressor @ vertices``
            is the rest skeleton.
        regions: (V,) int64 labels in 0..5 (:data:`m3dhmr.conventions.REGION_NAMES`).
        skinning_weights: (V, 16) float64 rows summing to 1, or None.
        name: e.g. ``"open_hand"`` or ``"mano"``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    joint_regressor: np.ndarray
    regions: np.ndarray
    skinning_weights: np.ndarray | None
    name: str

    def __post_init__(self) -> None:
        v = np.asarray(self.vertices, dtype=np.float64)
        f = np.asarray(self.faces)
        reg = np.asarray(self.joint_regressor, dtype=np.float64)
        regions = np.asarray(self.regions)
        where = f"template {self.name!r}"
        v, f = mesh_arrays(v, f, where, nonempty=True)
        if not np.isfinite(v).all():
            raise InputError(f"{where}: vertices contain NaN/inf")
        if reg.shape != (cv.NUM_JOINTS, len(v)) or not np.isfinite(reg).all():
            raise InputError(f"{where}: joint_regressor must be finite with shape ({cv.NUM_JOINTS}, {len(v)}), "
                             f"got {reg.shape}")
        if regions.shape != (len(v),) or not np.issubdtype(regions.dtype, np.integer):
            raise InputError(f"{where}: regions must be integers of shape ({len(v)},), got {regions.dtype} {regions.shape}")
        if regions.size and (regions.min() < 0 or regions.max() >= cv.NUM_REGIONS):
            raise InputError(f"{where}: regions must lie in 0..{cv.NUM_REGIONS - 1}")
        w = self.skinning_weights
        if w is not None:
            w = np.asarray(w, dtype=np.float64)
            if w.ndim != 2 or w.shape[0] != len(v) or not np.isfinite(w).all():
                raise InputError(f"{where}: skinning_weights must be finite with shape ({len(v)}, J), got {w.shape}")
        # Normalised private copies: changing a loaded template never changes the source.
        for name, value in (("vertices", v), ("faces", f.astype(np.int64)), ("joint_regressor", reg),
                            ("regions", regions.astype(np.int64)), ("skinning_weights", w)):
            object.__setattr__(self, name, None if value is None else np.array(value))

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    def rest_joints(self) -> np.ndarray:
        """(21, 3) rest skeleton: ``joint_regressor @ vertices``."""
        return self.joint_regressor @ self.vertices


TEMPLATE_FILES = ("template.ply", "j_reg.npy", "regions.npy")


def read_template_dir(folder: str | Path) -> HandTemplate:
    """Read a folder written by :func:`write_template_dir`."""
    from m3dhmr.mesh.io import read_mesh  # heavy: the mesh modules (scipy.linalg) load only for template files

    folder = Path(folder)
    missing = [n for n in TEMPLATE_FILES if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"template folder {folder} lacks {', '.join(missing)}")
    vertices, faces = read_mesh(folder / "template.ply")

    def npy(name: str) -> np.ndarray:
        try:
            return np.load(folder / name, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InputError(f"{folder / name}: not a readable .npy array ({e})") from e

    skin = npy("skinning_weights.npy") if (folder / "skinning_weights.npy").is_file() else None
    try:
        return HandTemplate(vertices, faces, npy("j_reg.npy"), npy("regions.npy"), skin, name=folder.name)
    except ValueError as e:
        raise InputError(f"template folder {folder}: {e}") from e


def write_template_dir(folder: str | Path, template: HandTemplate) -> list[Path]:
    """Write template.ply, j_reg.npy (21, V), regions.npy (V,) [and skinning_weights.npy (V, 16)], atomically."""
    from m3dhmr.mesh.io import write_mesh

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "template.ply"]
    write_mesh(written[0], template.vertices, template.faces)
    arrays = {"j_reg.npy": template.joint_regressor, "regions.npy": template.regions}
    if template.skinning_weights is not None:
        arrays["skinning_weights.npy"] = template.skinning_weights
    for name, arr in arrays.items():
        with atomic_path(folder / name) as tmp:
            np.save(tmp, np.ascontiguousarray(arr), allow_pickle=False)
        written.append(folder / name)
    return written
