"""FreiHAND-protocol metrics, to the letter of the official evaluation code.

Per sample (``N`` samples, 21 keypoints, ``V`` vertices, metres in, mm out):

- **PA-MPJPE / PA-MPVPE**: mean Euclidean distance after :func:`align_w_scale`
  (scale, rotation *or reflection*, translation); keypoints and vertices are aligned
  separately, each with its own transform.
- **F@5mm / F@15mm**: on the *aligned* vertices, nearest-neighbour distances both
  ways, strict ``d < threshold``; precision = fraction of predicted vertices near the
  truth, recall = fraction of true vertices near the prediction, ``F = 2PR / (P + R)``
  and 0 when ``P + R = 0``.
- **AUC**: PCK with ``d <= threshold`` over ``linspace(0, 0.05, 100)`` m, integrated with
  the trapezoid rule and divided by the integral of 1 (so in [0, 1]). The official code
  averages per-keypoint AUCs; with every keypoint present in every sample that equals
  the AUC of the pooled PCK curve and the mean of the per-sample AUCs reported here.
- **MPJPE root-relative** (not aligned; root = wrist, joint 0) and **root error**
  (camera-space distance of the wrists).

Summary values are means over samples. Inputs with NaN/inf raise a ValueError naming
the array and the first bad sample.

Pure NumPy (numba for the nearest neighbours), below both the evaluation and training's
learning curve (:mod:`m3dhmr.train.validation`), which score with it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from m3dhmr.conventions import MM_PER_M, NUM_JOINTS, ROOT_JOINT
from m3dhmr.geometry.procrustes import align_w_scale_batch
from m3dhmr.errors import InputError

#: PCK thresholds of the AUC, metres (official: ``np.linspace(0.0, 0.05, 100)``).
AUC_THRESHOLDS_M: np.ndarray = np.linspace(0.0, 0.05, 100)
#: F-score thresholds, metres.
F_THRESHOLDS_M: tuple[float, float] = (0.005, 0.015)
#: Keys of :attr:`MetricsResult.summary`, the keys of ``metrics.json``.
SUMMARY_KEYS: tuple[str, ...] = ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "auc_pa_joints",
                                 "auc_pa_verts", "mpjpe_rr_mm", "root_error_mm", "num_samples")
#: Columns of the per-sample CSV (after ``index``).
PER_SAMPLE_KEYS: tuple[str, ...] = ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "mpjpe_rr_mm", "root_error_mm")

# numpy >= 2 renamed trapz to trapezoid (same trapezoid rule).
_trapezoid = getattr(np, "trapezoid", None) or np.trapz

# Elements per chunk of the PCK computation (bounds memory).
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class MetricsResult:
    """FreiHAND metrics: the summary (``metrics.json``) and per-sample arrays (N,)."""

    summary: dict[str, float | int]
    pa_mpjpe_mm: np.ndarray
    pa_mpvpe_mm: np.ndarray
    f5: np.ndarray
    f15: np.ndarray
    auc_pa_joints: np.ndarray
    auc_pa_verts: np.ndarray
    mpjpe_rr_mm: np.ndarray
    root_error_mm: np.ndarray
    #: Pooled PCK curves over :data:`AUC_THRESHOLDS_M`, (T,) each, for plots.
    pck_pa_joints: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    pck_pa_verts: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    @property
    def num_samples(self) -> int:
        return int(self.pa_mpjpe_mm.shape[0])


def check_points(name: str, x: np.ndarray, n: int | None = None, p: int | None = None) -> np.ndarray:
    """Validate a (N, P, 3) point array: shape, then finiteness per sample; float64 copy."""
    x = np.asarray(x, dtype=np.float64)
    want = f"({n if n is not None else 'N'}, {p if p is not None else 'P'}, 3)"
    if x.ndim != 3 or x.shape[-1] != 3 or (n is not None and x.shape[0] != n) or (p is not None and x.shape[1] != p):
        raise InputError(f"{name}: expected shape {want}, got {x.shape}")
    bad = ~np.isfinite(x).all(axis=(1, 2))
    if bad.any():
        idx = np.flatnonzero(bad)
        raise InputError(f"{name}: sample {idx[0]} contains NaN or inf ({idx.size} bad sample(s))")
    return x


def mean_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance per sample: (N, P, 3), (N, P, 3) -> (N,)."""
    return np.linalg.norm(a - b, axis=-1).mean(-1)


def pck_auc(dist: np.ndarray, thresholds: np.ndarray = AUC_THRESHOLDS_M) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample AUC of the PCK curve (``<=``, trapezoid rule, normalised to [0, 1]).

    Args:
        dist: (N, P) distances in metres.
        thresholds: (T,) increasing thresholds in metres.

    Returns:
        auc (N,) per sample and the pooled PCK curve (T,) over all samples and points.
    """
    n, p = dist.shape
    norm = _trapezoid(np.ones_like(thresholds), thresholds)
    pck = np.empty((n, thresholds.size))
    step = max(1, _CHUNK_ELEMENTS // max(1, p * thresholds.size))
    for s in range(0, n, step):            # chunks bound memory; each chunk is vectorised
        pck[s:s + step] = (dist[s:s + step, :, None] <= thresholds).mean(1)
    return _trapezoid(pck, thresholds, axis=1) / norm, pck.mean(0)


@functools.cache
def _nn_kernel():
    """Numba brute-force kernel (compiled on first use, cached on disk)."""
    import numba  # heavy: numba loads only when the kernel is first compiled

    @numba.njit(cache=True)
    def nearest_sq(a, b, d_ab, d_ba):  # pragma: no cover - compiled
        # a (n, p, 3), b (n, q, 3): squared nearest distances both ways, one pass over pairs.
        n, p, _ = a.shape
        q = b.shape[1]
        for s in range(n):
            for j in range(q):
                d_ba[s, j] = np.inf
            for i in range(p):
                ax, ay, az = a[s, i, 0], a[s, i, 1], a[s, i, 2]
                m = np.inf
                for j in range(q):
                    dx = ax - b[s, j, 0]
                    dy = ay - b[s, j, 1]
                    dz = az - b[s, j, 2]
                    d = dx * dx + dy * dy + dz * dz
                    m = min(m, d)
                    d_ba[s, j] = min(d_ba[s, j], d)
                d_ab[s, i] = m

    return nearest_sq


def nearest_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour distances both ways between point sets, per sample.

    Exact brute force (differences, not the ``|a|^2 + |b|^2 - 2ab`` expansion, so the
    distances equal a KD-tree's bit for bit), compiled with numba: every sample has
    few points (778), where a tree does not pay for itself.

    Args:
        a: (N, P, 3) points. b: (N, Q, 3) points.

    Returns:
        d_ab (N, P): distance from each point of ``a`` to the nearest of ``b``;
        d_ba (N, Q): the other way.
    """
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or a.shape[2] != 3 or b.shape[2] != 3:
        raise InputError(f"nearest_distances: expected (N, P, 3) and (N, Q, 3), got {a.shape} and {b.shape}")
    d_ab = np.empty(a.shape[:2])
    d_ba = np.empty(b.shape[:2])
    if a.shape[1] == 0 or b.shape[1] == 0:
        raise InputError(f"nearest_distances: empty point set, shapes {a.shape} and {b.shape}")
    _nn_kernel()(a, b, d_ab, d_ba)
    return np.sqrt(d_ab), np.sqrt(d_ba)


def f_score(pred: np.ndarray, gt: np.ndarray, thresholds=F_THRESHOLDS_M) -> np.ndarray:
    """Per-sample F-scores of two point sets.

    Args:
        pred: (N, P, 3) predicted points. gt: (N, Q, 3) true points.
        thresholds: metres; strict ``d < threshold``.

    Returns:
        (N, len(thresholds)) F-scores in [0, 1].
    """
    d_pg, d_gp = nearest_distances(np.asarray(pred, np.float64), np.asarray(gt, np.float64))
    out = np.empty((d_pg.shape[0], len(thresholds)))
    for k, th in enumerate(thresholds):
        precision = (d_pg < th).mean(1)
        recall = (d_gp < th).mean(1)
        denom = precision + recall
        out[:, k] = np.where(denom > 0, 2.0 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)
    return out


def freihand_metrics(pred_xyz: np.ndarray, pred_verts: np.ndarray, gt_xyz: np.ndarray,
                     gt_verts: np.ndarray) -> MetricsResult:
    """All FreiHAND metrics for a prediction set (camera-space metres).

    Args:
        pred_xyz: (N, 21, 3) predicted keypoints. pred_verts: (N, V, 3) predicted vertices.
        gt_xyz: (N, 21, 3) true keypoints. gt_verts: (N, V, 3) true vertices.

    Returns:
        :class:`MetricsResult` (mm for distances, F and AUC in [0, 1]).
    """
    gt_xyz = check_points("gt_xyz", gt_xyz, p=NUM_JOINTS)
    n = gt_xyz.shape[0]
    if n == 0:
        raise InputError("freihand_metrics: no samples")
    gt_verts = check_points("gt_verts", gt_verts, n=n)
    pred_xyz = check_points("pred_xyz", pred_xyz, n=n, p=NUM_JOINTS)
    pred_verts = check_points("pred_verts", pred_verts, n=n, p=gt_verts.shape[1])

    xyz_al = align_w_scale_batch(gt_xyz, pred_xyz)
    verts_al = align_w_scale_batch(gt_verts, pred_verts)
    d_j = np.linalg.norm(xyz_al - gt_xyz, axis=-1)                          # (N, 21)
    d_v = np.linalg.norm(verts_al - gt_verts, axis=-1)                      # (N, V)
    auc_j, pck_j = pck_auc(d_j)
    auc_v, pck_v = pck_auc(d_v)
    f = f_score(verts_al, gt_verts, F_THRESHOLDS_M)
    rr_pred = pred_xyz - pred_xyz[:, ROOT_JOINT:ROOT_JOINT + 1]
    rr_gt = gt_xyz - gt_xyz[:, ROOT_JOINT:ROOT_JOINT + 1]
    per = dict(
        pa_mpjpe_mm=d_j.mean(1) * MM_PER_M,
        pa_mpvpe_mm=d_v.mean(1) * MM_PER_M,
        f5=f[:, 0],
        f15=f[:, 1],
        auc_pa_joints=auc_j,
        auc_pa_verts=auc_v,
        mpjpe_rr_mm=mean_distance(rr_pred, rr_gt) * MM_PER_M,
        root_error_mm=np.linalg.norm(pred_xyz[:, ROOT_JOINT] - gt_xyz[:, ROOT_JOINT], axis=-1) * MM_PER_M,
    )
    summary = {k: float(v.mean()) for k, v in per.items()}
    summary["num_samples"] = n
    summary = {k: summary[k] for k in SUMMARY_KEYS}
    return MetricsResult(summary=summary, pck_pa_joints=pck_j, pck_pa_verts=pck_v, **per)


__all__ = ["AUC_THRESHOLDS_M", "F_THRESHOLDS_M", "PER_SAMPLE_KEYS", "SUMMARY_KEYS", "MetricsResult", "check_points",
           "f_score", "freihand_metrics", "mean_distance", "nearest_distances", "pck_auc"]
