"""The topology bundle: everything the network needs about a template's mesh, built once.

Hierarchy (vertices, faces, sampling matrices), spirals per level, regions and the ROI
layer's region-restricted dilated spirals. :func:`load_or_build_topology` caches it on disk
under a key hashing the template arrays, the parameters and :data:`FORMAT_VERSION`;
the network registers the arrays as buffers and never rebuilds them in ``forward``.

File format (``.npz``, read with ``allow_pickle=False``): plain arrays named
``vertices_{l}``, ``faces_{l}``, ``spirals_{l}``, ``down_{l}_{data,indices,indptr,shape}``
(CSR parts, likewise ``up_{l}_*``), ``regions``, ``roi_spirals``, ``joint_regressor``,
``params`` (JSON text), ``key`` and ``format_version``. The zip is written by hand with
fixed member order and timestamps, so equal bundles give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from m3dhmr.conventions import NUM_JOINTS, NUM_REGIONS, REGION_NAMES
from m3dhmr.errors import InputError
from m3dhmr.fileio import atomic_path
from m3dhmr.mesh.hierarchy import build_hierarchy
from m3dhmr.mesh.regions import make_regions_connected, region_pieces, regions_from_joints, regions_from_skinning
from m3dhmr.mesh.spirals import region_spiral_indices, spiral_indices
from m3dhmr.mesh.validate import check_triangle_mesh

log = logging.getLogger(__name__)

#: Bumped whenever the bundle's content or file layout changes; part of the cache key.
FORMAT_VERSION = 1
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class TopologyParams:
    """How the bundle is built (load with :func:`m3dhmr.config_loader.from_dict`)."""

    levels: int = 4               # number of mesh levels including the full mesh
    factor: float = 2.0           # each level has ~1/factor the vertices of the one above
    spiral_length: int = 9
    dilation: int = 1
    roi_spiral_length: int = 9
    roi_dilation: int = 2

    def __post_init__(self) -> None:
        for name in ("levels", "spiral_length", "dilation", "roi_spiral_length", "roi_dilation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"TopologyParams.{name} must be an integer >= 1, got {value!r}")
        if not float(self.factor) > 1.0:
            raise InputError(f"TopologyParams.factor must be > 1, got {self.factor!r}")


@dataclass(frozen=True)
class TopologyBundle:
    """Topology of a template, level 0 being the full template.

    vertices[l]: (V_l, 3) float32; faces[l]: (F_l, 3) int64; spirals[l]: (V_l, S) int64.
    down[l]: (V_{l+1}, V_l) CSR float32; up[l]: (V_l, V_{l+1}) CSR float32, rows sum to 1.
    regions: (V_0,) int64 in 0..5 (:data:`m3dhmr.conventions.REGION_NAMES`).
    roi_spirals: (V_0, roi_spiral_length) int64, each row inside its vertex's region.
    joint_regressor: (21, V_0) float32. key: cache key (hash of template and params).
    """

    params: TopologyParams
    vertices: tuple[np.ndarray, ...]
    faces: tuple[np.ndarray, ...]
    spirals: tuple[np.ndarray, ...]
    down: tuple[sp.csr_matrix, ...]
    up: tuple[sp.csr_matrix, ...]
    regions: np.ndarray
    roi_spirals: np.ndarray
    joint_regressor: np.ndarray
    key: str

    @property
    def num_levels(self) -> int:
        return len(self.vertices)

    def region_sizes(self) -> dict[str, int]:
        """Vertex count of each region by name."""
        counts = np.bincount(self.regions, minlength=NUM_REGIONS)
        return {name: int(c) for name, c in zip(REGION_NAMES, counts)}


# ----------------------------------------------------------------------------- inputs

def _inputs(vertices: Any, faces: Any, joint_regressor: Any, skinning_weights: Any, joint_region: Any,
            regions: Any) -> dict[str, np.ndarray | None]:
    """Canonical dtypes and shape checks; the same dict feeds building and hashing."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    check_triangle_mesh(v, f, name="template")
    f = f.astype(np.int64)
    nv = v.shape[0]
    reg = np.asarray(joint_regressor, dtype=np.float64)
    if reg.shape != (NUM_JOINTS, nv):
        raise InputError(f"joint_regressor must have shape ({NUM_JOINTS}, {nv}) (21 joints x template "
                         f"vertices), got {reg.shape}")
    if not np.isfinite(reg).all():
        raise InputError("joint_regressor contains NaN/inf")
    out: dict[str, np.ndarray | None] = {"vertices": v, "faces": f, "joint_regressor": reg,
                                         "skinning_weights": None, "joint_region": None, "regions": None}
    if regions is not None:
        r = np.asarray(regions)
        if r.shape != (nv,) or not np.issubdtype(r.dtype, np.integer):
            raise InputError(f"regions must be ({nv},) integers, got dtype {r.dtype} shape {r.shape}")
        if r.min() < 0 or r.max() >= NUM_REGIONS:
            raise InputError(f"regions values must lie in 0..{NUM_REGIONS - 1}, got {sorted(set(r.tolist()))[:10]}")
        out["regions"] = r.astype(np.int64)
    elif skinning_weights is not None:
        w = np.asarray(skinning_weights, dtype=np.float64)
        if w.ndim != 2 or w.shape[0] != nv:
            raise InputError(f"skinning_weights must have shape ({nv}, J), got {w.shape}")
        if joint_region is None:
            raise InputError("skinning_weights need joint_region (the region of each skinning joint), "
                             "e.g. m3dhmr.mesh.MANO_JOINT_REGION")
        out["skinning_weights"] = w
        out["joint_region"] = np.asarray(joint_region).astype(np.int64)
    return out


def _key(inputs: dict[str, np.ndarray | None], params: TopologyParams) -> str:
    h = hashlib.sha256()
    h.update(f"m3dhmr-topology-v{FORMAT_VERSION}\n".encode())
    h.update(json.dumps(dataclasses.asdict(params), sort_keys=True).encode())
    for name in sorted(inputs):
        a = inputs[name]
        h.update(f"\n{name}:".encode())
        if a is None:
            h.update(b"none")
        else:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- building

def build_topology(vertices: np.ndarray, faces: np.ndarray, joint_regressor: np.ndarray,
                   params: TopologyParams = TopologyParams(), skinning_weights: np.ndarray | None = None,
                   joint_region: np.ndarray | tuple[int, ...] | None = None,
                   regions: np.ndarray | None = None) -> TopologyBundle:
    """Build the bundle of a template.

    Args:
        vertices: (V, 3) rest-pose template; faces: (F, 3) int, edge-manifold, oriented.
        joint_regressor: (21, V), FreiHAND joint order.
        params: :class:`TopologyParams`.
        skinning_weights: optional (V, J_s), with ``joint_region`` (J_s,) the region of
            each skinning joint (e.g. :data:`MANO_JOINT_REGION`).
        regions: optional (V,) labels in 0..5, used as given (after validation; they must
            already be connected pieces, which is not enforced).

    Regions: ``regions`` if given, else from skinning weights, else from the nearest bone
    of ``joint_regressor @ vertices``; the last two are made connected.
    """
    inputs = _inputs(vertices, faces, joint_regressor, skinning_weights, joint_region, regions)
    return _build(inputs, params, _key(inputs, params))


def _build(inputs: dict[str, np.ndarray | None], params: TopologyParams, key: str) -> TopologyBundle:
    v, f, reg = inputs["vertices"], inputs["faces"], inputs["joint_regressor"]
    assert v is not None and f is not None and reg is not None
    if inputs["regions"] is not None:
        regions = inputs["regions"]
        pieces = region_pieces(f, regions)
        if (pieces > 1).any():
            log.warning("given regions are not connected (pieces per region %s); ROI spirals stay inside "
                        "each piece", dict(zip(REGION_NAMES, pieces.tolist())))
    else:
        if inputs["skinning_weights"] is not None:
            raw = regions_from_skinning(inputs["skinning_weights"], inputs["joint_region"])
        else:
            raw = regions_from_joints(v, reg @ v)
        regions = make_regions_connected(f, raw)
    assert regions is not None
    hier = build_hierarchy(v, f, params.levels, params.factor)
    spirals = tuple(spiral_indices(fl, vl.shape[0], params.spiral_length, params.dilation)
                    for vl, fl in zip(hier.vertices, hier.faces))
    roi = region_spiral_indices(f, regions, params.roi_spiral_length, params.roi_dilation)
    return TopologyBundle(
        params=params,
        vertices=tuple(x.astype(np.float32) for x in hier.vertices),
        faces=tuple(x.astype(np.int64) for x in hier.faces),
        spirals=spirals,
        down=tuple(_csr32(m) for m in hier.down),
        up=tuple(_csr32(m) for m in hier.up),
        regions=regions.astype(np.int64),
        roi_spirals=roi,
        joint_regressor=reg.astype(np.float32),
        key=key,
    )


def _csr32(m: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(m, dtype=np.float32)
    out.sort_indices()
    return out


# ----------------------------------------------------------------------------- files

def _arrays(bundle: TopologyBundle) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "key": np.array(bundle.key),
        "params": np.array(json.dumps(dataclasses.asdict(bundle.params), sort_keys=True)),
        "regions": bundle.regions,
        "roi_spirals": bundle.roi_spirals,
        "joint_regressor": bundle.joint_regressor,
    }
    for l in range(bundle.num_levels):
        arrays[f"vertices_{l}"] = bundle.vertices[l]
        arrays[f"faces_{l}"] = bundle.faces[l]
        arrays[f"spirals_{l}"] = bundle.spirals[l]
    for name, mats in (("down", bundle.down), ("up", bundle.up)):
        for l, m in enumerate(mats):
            arrays[f"{name}_{l}_data"] = m.data
            arrays[f"{name}_{l}_indices"] = m.indices.astype(np.int64)
            arrays[f"{name}_{l}_indptr"] = m.indptr.astype(np.int64)
            arrays[f"{name}_{l}_shape"] = np.array(m.shape, dtype=np.int64)
    return arrays


def save_bundle(path: str | Path, bundle: TopologyBundle) -> None:
    """Write ``bundle`` as an ``.npz`` atomically; equal bundles give identical bytes."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, arr in sorted(_arrays(bundle).items()):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(arr, order="C"), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())


def load_bundle(path: str | Path) -> TopologyBundle:
    """Read a bundle written by :func:`save_bundle` (no pickles)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"topology bundle not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{path}: not a readable topology bundle ({e})") from e
    try:
        version = int(a["format_version"])
        if version != FORMAT_VERSION:
            raise InputError(f"{path}: topology bundle format {version}, this version reads {FORMAT_VERSION}; "
                             "rebuild it with `m3dhmr topology`")
        from m3dhmr.config_loader import from_dict  # deferred: it imports yaml, needed only here

        params = from_dict(TopologyParams, json.loads(str(a["params"])))
        levels = params.levels

        def csr(name: str, l: int) -> sp.csr_matrix:
            shape = tuple(int(s) for s in a[f"{name}_{l}_shape"])
            return sp.csr_matrix((a[f"{name}_{l}_data"], a[f"{name}_{l}_indices"], a[f"{name}_{l}_indptr"]),
                                 shape=shape)

        return TopologyBundle(
            params=params,
            vertices=tuple(a[f"vertices_{l}"] for l in range(levels)),
            faces=tuple(a[f"faces_{l}"] for l in range(levels)),
            spirals=tuple(a[f"spirals_{l}"] for l in range(levels)),
            down=tuple(csr("down", l) for l in range(levels - 1)),
            up=tuple(csr("up", l) for l in range(levels - 1)),
            regions=a["regions"],
            roi_spirals=a["roi_spirals"],
            joint_regressor=a["joint_regressor"],
            key=str(a["key"]),
        )
    except KeyError as e:
        raise InputError(f"{path}: topology bundle lacks array {e}") from e


def default_cache_dir() -> Path:
    """``$M3DHMR_CACHE_DIR`` (its ``topology`` subfolder) or ``~/.cache/m3dhmr/topology``."""
    env = os.environ.get("M3DHMR_CACHE_DIR")
    return Path(env) / "topology" if env else Path.home() / ".cache" / "m3dhmr" / "topology"


def load_or_build_topology(template_or_vertices: Any, faces: Any = None, joint_regressor: Any = None,
                           params: TopologyParams | None = None, skinning_weights: Any = None,
                           joint_region: Any = None, regions: Any = None,
                           cache_dir: str | Path | None = None) -> TopologyBundle:
    """The bundle from the disk cache, building and caching it on a miss.

    Two call forms:
        ``load_or_build_topology(template, params=None, cache_dir=None)`` with a
        ``HandTemplate``-like object (``.vertices``, ``.faces``, ``.joint_regressor``,
        ``.regions``, ``.skinning_weights``); its ``regions`` are used when present.
        ``load_or_build_topology(vertices, faces, joint_regressor, params, ...)`` with the
        arguments of :func:`build_topology`.

    The file is ``cache_dir/topology-<key>.npz`` (default :func:`default_cache_dir`); the
    key hashes the arrays, ``params`` and :data:`FORMAT_VERSION`. An unreadable or
    mismatching cache file is rebuilt.
    """
    if hasattr(template_or_vertices, "faces") and hasattr(template_or_vertices, "vertices"):
        t = template_or_vertices
        if isinstance(faces, TopologyParams):  # the template form's second positional argument
            params, faces = faces, None
        if faces is not None or joint_regressor is not None:
            raise TypeError("with a template, pass only params and cache_dir")
        tpl_regions = getattr(t, "regions", None)
        inputs = _inputs(t.vertices, t.faces, t.joint_regressor,
                         getattr(t, "skinning_weights", None) if tpl_regions is None else None,
                         joint_region, tpl_regions if regions is None else regions)
    else:
        if faces is None or joint_regressor is None:
            raise TypeError("load_or_build_topology needs a template or vertices, faces and joint_regressor")
        inputs = _inputs(template_or_vertices, faces, joint_regressor, skinning_weights, joint_region, regions)
    params = TopologyParams() if params is None else params
    key = _key(inputs, params)
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = path / f"topology-{key[:32]}.npz"
    if path.is_file():
        t0 = time.perf_counter()
        try:
            bundle = load_bundle(path)
            if bundle.key == key:
                log.debug("topology: loaded %s in %.3f s", path, time.perf_counter() - t0)
                return bundle
            log.warning("topology cache %s has a different key; rebuilding", path)
        except ValueError as e:
            log.warning("topology cache %s unreadable (%s); rebuilding", path, e)
    t0 = time.perf_counter()
    bundle = _build(inputs, params, key)
    log.info("topology: built in %.2f s, cached at %s", time.perf_counter() - t0, path)
    save_bundle(path, bundle)
    return bundle
