"""Mesh hierarchy for the coarse-to-fine decoder: quadric decimation plus sampling matrices.

Level 0 is the template; level ``l+1`` is made from level ``l`` by quadric-error edge
collapse (``fast_simplification``) to about ``1/factor`` of its vertices. Each coarse
vertex is then moved onto the fine vertex of its collapse cluster that lies nearest to
the decimator's optimal position, so every level's vertices are a subset of the level
above. That makes

* ``down[l]`` (V_{l+1}, V_l) a selection matrix (one 1 per row: the coarse vertex's
  source vertex), and
* ``up[l]`` (V_l, V_{l+1}) the barycentric weights of each fine vertex's closest point on
  the coarse surface; rows are >= 0 and sum to 1, and a fine vertex that is also a coarse
  vertex gets exactly that one coarse vertex (weight 1), so ``up[l] @ down[l] @ x``
  reproduces ``x`` on the kept vertices and ``down[l] @ up[l]`` is the identity.

Decimation changes only connectivity through collapses; levels are checked to be
edge-manifold and consistently oriented.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from m3dhmr.errors import InputError
from m3dhmr.mesh.validate import MeshError, check_triangle_mesh

log = logging.getLogger(__name__)

#: (point, triangle) pairs box-tested per chunk in :func:`closest_point_barycentric`.
_CHUNK_PAIRS = 1 << 20

@dataclass(frozen=True)
class Hierarchy:
    """L mesh levels and the sampling matrices between consecutive levels.

    vertices[l]: (V_l, 3) float64; faces[l]: (F_l, 3) int64.
    source[l]: (V_{l+1},) int64, the level-l vertex each level-(l+1) vertex sits on.
    down[l]: (V_{l+1}, V_l) CSR; up[l]: (V_l, V_{l+1}) CSR, for l in 0..L-2.
    """

    vertices: tuple[np.ndarray, ...]
    faces: tuple[np.ndarray, ...]
    source: tuple[np.ndarray, ...]
    down: tuple[sp.csr_matrix, ...]
    up: tuple[sp.csr_matrix, ...]


def closest_point_barycentric(points: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest point of each point on a set of triangles.

    Args:
        points: (N, 3).
        triangles: (M, 3, 3) corner coordinates.

    Returns:
        tri: (N,) int64 index of the nearest triangle (lowest index on ties),
        bary: (N, 3) float64 barycentric weights of the closest point on it (>= 0, sum 1),
        dist: (N,) float64 distance to it.

    Only candidate pairs are evaluated exactly: the nearest triangle corner bounds the
    distance from above by ``d``, so only triangles whose bounding box lies within ``d``
    of the point can win (a cheap box test over all pairs, in chunks).
    """
    from scipy.spatial import cKDTree  # heavy: scipy.spatial loads only to build a hierarchy

    p = np.asarray(points, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise InputError(f"points must have shape (N, 3), got {p.shape}")
    if t.ndim != 3 or t.shape[1:] != (3, 3) or t.shape[0] == 0:
        raise InputError(f"triangles must have shape (M, 3, 3) with M >= 1, got {t.shape}")
    n, m = p.shape[0], t.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 3)), np.zeros(0)
    d_corner, _ = cKDTree(t.reshape(-1, 3)).query(p)
    # Slack covers rounding in the bound, so the candidate set is never too small.
    reach2 = (d_corner * (1 + 1e-9) + 1e-12) ** 2
    lo, hi = t.min(axis=1), t.max(axis=1)
    step = max(1, _CHUNK_PAIRS // m)
    pis, tis = [], []
    for s in range(0, n, step):
        pc = p[s:s + step, None, :]
        gap = np.maximum(np.maximum(lo[None] - pc, pc - hi[None]), 0.0)  # (n', M, 3)
        ii, jj = np.nonzero((gap * gap).sum(-1) <= reach2[s:s + step, None])
        pis.append(ii + s)
        tis.append(jj)
    pi, ti = np.concatenate(pis), np.concatenate(tis)
    b = _pair_barycentric(p[pi], t[ti, 0], t[ti, 1], t[ti, 2])
    d2 = ((np.einsum("pk,pkd->pd", b, t[ti]) - p[pi]) ** 2).sum(-1)
    order = np.lexsort((ti, d2, pi))  # per point: smallest distance, then lowest triangle
    first = order[np.searchsorted(pi[order], np.arange(n))]
    return ti[first], b[first], np.sqrt(d2[first])


def _pair_barycentric(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric weights of the closest point of ``p`` on triangle ``abc`` (broadcast).

    Voronoi-region tests of Ericson, *Real-Time Collision Detection* 5.1.5, in the same
    priority order (vertex A, B, edge AB, vertex C, edge AC, edge BC, face); degenerate
    triangles give finite weights (a zero denominator yields an endpoint).
    """
    ab, ac = b - a, c - a
    ap, bp, cp = p - a, p - b, p - c
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2

    def div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.divide(x, y, out=np.zeros(np.broadcast_shapes(x.shape, y.shape)), where=y != 0)

    shape = d1.shape
    out = np.zeros(shape + (3,))
    done = np.zeros(shape, dtype=bool)

    def put(mask: np.ndarray, w: tuple) -> None:
        nonlocal done
        m = mask & ~done
        for k in range(3):
            out[..., k] = np.where(m, w[k], out[..., k])
        done = done | m

    zero, one = np.zeros(shape), np.ones(shape)
    put((d1 <= 0) & (d2 <= 0), (one, zero, zero))
    put((d3 >= 0) & (d4 <= d3), (zero, one, zero))
    v = div(d1, d1 - d3)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), (1 - v, v, zero))
    put((d6 >= 0) & (d5 <= d6), (zero, zero, one))
    w = div(d2, d2 - d6)
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), (1 - w, zero, w))
    w = div(d4 - d3, (d4 - d3) + (d5 - d6))
    put((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), (zero, 1 - w, w))
    s = va + vb + vc
    v, w = div(vb, s), div(vc, s)
    put(np.ones(shape, dtype=bool), (1 - v - w, v, w))
    out = np.clip(out, 0.0, None)
    return out / np.maximum(out.sum(-1, keepdims=True), 1e-300)


def upsampling_matrix(fine_vertices: np.ndarray, coarse_vertices: np.ndarray,
                      coarse_faces: np.ndarray) -> sp.csr_matrix:
    """(V_fine, V_coarse) CSR: each fine vertex as barycentric weights of its closest point
    on the coarse surface. Rows are >= 0 and sum to 1 (float64)."""
    fv = np.asarray(fine_vertices, dtype=np.float64)
    cv = np.asarray(coarse_vertices, dtype=np.float64)
    cf = np.asarray(coarse_faces, dtype=np.int64)
    tri, bary, _ = closest_point_barycentric(fv, cv[cf])
    rows = np.repeat(np.arange(fv.shape[0]), 3)
    cols = cf[tri].ravel()
    up = sp.csr_matrix((bary.ravel(), (rows, cols)), shape=(fv.shape[0], cv.shape[0]))
    up.eliminate_zeros()
    up.sort_indices()
    return up


def downsampling_matrix(source: np.ndarray, num_fine: int) -> sp.csr_matrix:
    """(V_coarse, V_fine) CSR selection matrix: row j picks fine vertex ``source[j]``."""
    src = np.asarray(source, dtype=np.int64)
    return sp.csr_matrix((np.ones(src.size), (np.arange(src.size), src)), shape=(src.size, num_fine))


def _decimate_once(v: np.ndarray, f: np.ndarray, target_faces: int,
                   agg: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import fast_simplification  # the only compiled dependency, imported where used

    _, _, collapses = fast_simplification.simplify(v, f, target_count=target_faces, agg=agg, return_collapses=True)
    pts, tri, mapping = fast_simplification.replay_simplification(v, f, collapses)
    return pts, np.asarray(tri, dtype=np.int64), np.asarray(mapping, dtype=np.int64)


def decimate(vertices: np.ndarray, faces: np.ndarray,
             target_vertices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quadric decimation to about ``target_vertices`` vertices, snapped onto the input.

    Args:
        vertices: (V, 3); faces: (F, 3) int, an edge-manifold oriented mesh.
        target_vertices: wanted V' (approximate; the decimator counts faces).

    Returns:
        vertices (V', 3) float64 (a subset of the input rows), faces (F', 3) int64 and
        source (V',) int64 with ``vertices == input_vertices[source]``.
    """
    # Writable copies: the compiled decimator rejects read-only arrays (templates are frozen).
    v = np.array(vertices, dtype=np.float64, order="C")
    f = np.array(faces, dtype=np.int32, order="C")
    nv, nf = v.shape[0], f.shape[0]
    if not 4 <= target_vertices < nv:
        raise MeshError(f"cannot decimate a {nv}-vertex mesh to {target_vertices} vertices "
                        f"(need 4 <= target < {nv}); use fewer levels or a smaller factor")
    # Deterministic retries: per aggressiveness (the decimator's default 7 first; gentler
    # settings avoid the pinched two-face "pillows" thin fingers can collapse into), the
    # face budget corrected for size, then nearby stopping points (+2, -2, +4, -4 faces).
    errors: list[str] = []
    for agg in (7, 5, 3):
        target_faces = max(4, int(round(nf * target_vertices / nv)))  # F ~ 2V
        for _ in range(2):
            n_out = _decimate_once(v, f, target_faces, agg)[0].shape[0]
            if abs(n_out - target_vertices) <= 0.1 * target_vertices:
                break
            target_faces = max(4, min(int(round(target_faces * target_vertices / n_out)), nf - 1))
        for nudge in (0, 2, -2, 4, -4):
            pts, tri, mapping = _decimate_once(v, f, max(4, min(target_faces + nudge, nf - 1)), agg)
            try:
                check_triangle_mesh(pts, tri, name=f"decimated mesh ({pts.shape[0]} vertices)")
            except MeshError as e:
                errors.append(str(e))
                continue
            break
        else:
            continue
        break
    else:
        raise MeshError(f"decimation of a {nv}-vertex mesh did not give a valid mesh: {errors[-1]}")
    n_out = pts.shape[0]
    # Source of each coarse vertex: the fine vertex of its cluster nearest to the
    # decimator's position (clusters are disjoint, so sources are distinct).
    d2 = ((v - pts[mapping]) ** 2).sum(1)
    order = np.lexsort((np.arange(nv), d2, mapping))
    first = np.ones(nv, dtype=bool)
    first[1:] = mapping[order][1:] != mapping[order][:-1]
    source = np.empty(n_out, dtype=np.int64)
    source[mapping[order][first]] = order[first]
    return v[source], tri, source


def build_hierarchy(vertices: np.ndarray, faces: np.ndarray, levels: int = 4, factor: float = 2.0) -> Hierarchy:
    """Levels 0..L-1 (level 0 = the input) and sampling matrices, see the module docstring.

    Args:
        vertices: (V, 3); faces: (F, 3) int, a valid mesh (checked).
        levels: L >= 1. factor: > 1, vertex ratio between consecutive levels.
    """
    if levels < 1:
        raise InputError(f"levels must be >= 1, got {levels}")
    if not factor > 1:
        raise InputError(f"factor must be > 1, got {factor}")
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    check_triangle_mesh(v, f, name="level 0")
    vs, fs, srcs, downs, ups = [v], [f], [], [], []
    for level in range(1, levels):
        target = int(round(vs[-1].shape[0] / factor))
        cv, cf, src = decimate(vs[-1], fs[-1], target)
        downs.append(downsampling_matrix(src, vs[-1].shape[0]))
        ups.append(upsampling_matrix(vs[-1], cv, cf))
        log.debug("level %d: %d vertices, %d faces", level, cv.shape[0], cf.shape[0])
        vs.append(cv)
        fs.append(cf)
        srcs.append(src)
    return Hierarchy(tuple(vs), tuple(fs), tuple(srcs), tuple(downs), tuple(ups))
