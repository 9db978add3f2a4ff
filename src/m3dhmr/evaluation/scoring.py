"""Scoring FreiHAND-format predictions against a data folder (what the server used to do).

``pred.json`` is ``[xyz_list, verts_list]``: N x 21 x 3 keypoints and N x V x 3 vertices,
camera space, metres, in the split's sample order. Metrics follow
:mod:`m3dhmr.metrics`; results are written as ``metrics.json`` (the summary) and
``per_sample_metrics.csv`` beside it, both atomically. JSON is always written strictly
(``allow_nan=False``): a non-finite metric is written as ``null``, never as ``Infinity``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from m3dhmr.conventions import NUM_JOINTS, ROOT_JOINT
from m3dhmr.fileio import atomic_write_text, read_json
from m3dhmr.metrics import PER_SAMPLE_KEYS, MetricsResult, check_points, freihand_metrics
from m3dhmr.errors import InputError

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PER_SAMPLE_FILE = "per_sample_metrics.csv"
#: Largest coordinate (metres, absolute) a prediction file may hold: hands are filmed
#: within a few metres, and the metrics square coordinates (1e300 would overflow to inf).
MAX_ABS_COORD_M = 100.0


def read_prediction_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a FreiHAND prediction file.

    Args:
        path: a ``pred.json`` holding ``[xyz_list, verts_list]``.

    Returns:
        xyz (N, 21, 3) and verts (N, V, 3), float64 metres.

    Raises:
        FileNotFoundError: no such file. ValueError: not JSON, not a 2-element list,
        ragged or wrongly shaped lists, sample counts that differ, NaN or infinity, a
        coordinate beyond :data:`MAX_ABS_COORD_M` (all naming the file).
    """
    path = Path(path)
    data = read_json(path, "prediction file")
    if not isinstance(data, list) or len(data) != 2:
        got = f"a list of {len(data)} items" if isinstance(data, list) else type(data).__name__
        raise InputError(f"{path}: expected a 2-element list [xyz_list, verts_list], got {got}")
    arrays = []
    for name, lst in (("xyz_list", data[0]), ("verts_list", data[1])):
        try:
            arr = np.asarray(lst, dtype=np.float64)
        except (ValueError, TypeError):
            raise InputError(f"{path}: {name} is not a regular N x P x 3 list of numbers") from None
        arrays.append(arr)
    xyz, verts = arrays
    try:
        xyz = check_points(f"{path}: xyz_list", xyz, p=NUM_JOINTS)
        verts = check_points(f"{path}: verts_list", verts)
    except ValueError as e:
        raise InputError(str(e).replace("(N, 21, 3)", "N x 21 x 3").replace("(N, P, 3)", "N x V x 3")) from None
    if len(xyz) != len(verts):
        raise InputError(f"{path}: xyz_list has {len(xyz)} samples but verts_list has {len(verts)}")
    for name, arr in (("xyz_list", xyz), ("verts_list", verts)):
        big = np.abs(arr).max(axis=(1, 2)) > MAX_ABS_COORD_M if arr.size else np.zeros(len(arr), bool)
        if big.any():
            i = int(np.flatnonzero(big)[0])
            raise InputError(f"{path}: {name} sample {i} has a coordinate of {np.abs(arr[i]).max():.3g} m; "
                             f"predictions must be in metres, within {MAX_ABS_COORD_M:g} m of the camera "
                             f"({int(big.sum())} such sample(s))")
    return xyz, verts


def write_prediction_file(path: str | Path, xyz: np.ndarray, verts: np.ndarray) -> Path:
    """Write ``[xyz_list, verts_list]`` (metres) atomically.

    Args:
        path: destination ``pred.json``.
        xyz: (N, 21, 3) camera-space keypoints. verts: (N, V, 3) camera-space vertices.
    """
    xyz = check_points("xyz", np.asarray(xyz, dtype=np.float64), p=NUM_JOINTS)
    verts = check_points("verts", np.asarray(verts, dtype=np.float64), n=len(xyz))
    atomic_write_text(path, json.dumps([xyz.tolist(), verts.tolist()], allow_nan=False))
    return Path(path)


def finite_or_null(obj: Any, where: str = "") -> Any:
    """``obj`` (nested dicts, lists, numbers) with every non-finite float replaced by
    ``None`` (JSON ``null``), each replacement logged: strict JSON has no NaN or Infinity."""
    if isinstance(obj, dict):
        return {k: finite_or_null(v, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (float, np.floating)) and not math.isfinite(obj):
        log.warning("%s is %s: written as null", where or "value", obj)
        return None
    return obj


def write_json_strict(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON (atomically): non-finite floats become ``null``
    (:func:`finite_or_null`) and ``allow_nan=False`` guarantees no ``NaN``/``Infinity``."""
    atomic_write_text(path, json.dumps(finite_or_null(obj), indent=indent, allow_nan=False))
    return Path(path)


def _ground_truth(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from m3dhmr.data.freihand import load_annotations  # heavy: m3dhmr.data imports cv2

    ann = load_annotations(data_dir, split)
    if ann.xyz is None or ann.verts is None:
        missing = Path(data_dir) / f"{split}_xyz.json"
        raise FileNotFoundError(f"{missing} not found: the {split} split of {data_dir} has no 3D ground truth "
                                f"to score against")
    return np.asarray(ann.xyz, dtype=np.float64), np.asarray(ann.verts, dtype=np.float64)


def score_predictions(pred_xyz: np.ndarray, pred_verts: np.ndarray, data_dir: str | Path,
                      split: str = "evaluation") -> MetricsResult:
    """Score predictions against a split's ground truth.

    Args:
        pred_xyz: (N, 21, 3) keypoints; pred_verts: (N, V, 3) vertices (camera space, metres).
        data_dir: FreiHAND-layout folder (read by :func:`m3dhmr.data.freihand.load_annotations`).
        split: ``"evaluation"`` or ``"training"``.

    Raises:
        FileNotFoundError: no ground truth in the split (the missing file named).
        ValueError: sample or vertex counts that differ from the split's (both named).
    """
    gt_xyz, gt_verts = _ground_truth(data_dir, split)
    pred_xyz = np.asarray(pred_xyz)
    pred_verts = np.asarray(pred_verts)
    if pred_xyz.ndim < 1 or len(pred_xyz) != len(gt_xyz) or pred_verts.ndim < 1 or len(pred_verts) != len(gt_xyz):
        n_p = len(pred_xyz) if pred_xyz.ndim else 0
        raise InputError(f"the prediction has {n_p} samples but the {split} split of {data_dir} has {len(gt_xyz)}")
    if pred_verts.ndim != 3 or pred_verts.shape[1] != gt_verts.shape[1]:
        raise InputError(f"the predicted meshes have {pred_verts.shape[1] if pred_verts.ndim == 3 else '?'} "
                         f"vertices but the ground truth in {data_dir} ({split}_verts.json) has {gt_verts.shape[1]}")
    return freihand_metrics(pred_xyz, pred_verts, gt_xyz, gt_verts)


def score_prediction_file(path: str | Path, data_dir: str | Path, split: str = "evaluation") -> MetricsResult:
    """:func:`read_prediction_file` then :func:`score_predictions`; errors name ``path``."""
    xyz, verts = read_prediction_file(path)
    try:
        return score_predictions(xyz, verts, data_dir, split)
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None


def mean_pose_prediction(reference_xyz: np.ndarray, reference_verts: np.ndarray,
                         target_xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The trivial baseline: one mean root-relative hand for every sample, at its true root.

    Args:
        reference_xyz: (M, 21, 3) and reference_verts: (M, V, 3) camera-space hands whose
            root-relative mean is the guess (a training set, or the scored set itself).
        target_xyz: (N, 21, 3) the scored samples' true joints (only their roots are used).
    Returns:
        xyz (N, 21, 3) and verts (N, V, 3), float64 metres. PA metrics ignore the
        placement; it only keeps the root error at zero.
    """
    ref_xyz = check_points("reference_xyz", np.asarray(reference_xyz, np.float64), p=NUM_JOINTS)
    ref_verts = check_points("reference_verts", np.asarray(reference_verts, np.float64), n=len(ref_xyz))
    tgt = check_points("target_xyz", np.asarray(target_xyz, np.float64), p=NUM_JOINTS)
    root = ref_xyz[:, ROOT_JOINT:ROOT_JOINT + 1]
    mean_xyz, mean_verts = (ref_xyz - root).mean(0), (ref_verts - root).mean(0)
    t = tgt[:, ROOT_JOINT:ROOT_JOINT + 1]
    return mean_xyz[None] + t, mean_verts[None] + t


def constant_prediction(vertices: np.ndarray, joint_regressor: np.ndarray,
                        target_xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Another trivial baseline: one fixed hand (e.g. the template at rest) for every sample.

    Args:
        vertices: (V, 3) the hand. joint_regressor: (21, V).
        target_xyz: (N, 21, 3) the scored samples' true joints (their roots place it).
    Returns:
        xyz (N, 21, 3) and verts (N, V, 3), float64 metres.

    Unlike :func:`mean_pose_prediction`, whose average over global orientations is a
    shrunken blob, a rest hand keeps a hand's shape, which is what the aligned (PA)
    metrics score: it is the stronger constant baseline for them.
    """
    v = np.asarray(vertices, np.float64)
    jreg = np.asarray(joint_regressor, np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or jreg.shape != (NUM_JOINTS, v.shape[0]):
        raise InputError(f"constant_prediction: vertices (V, 3) and joint_regressor (21, V) expected, "
                         f"got {v.shape} and {jreg.shape}")
    j = jreg @ v
    v, j = v - j[ROOT_JOINT], j - j[ROOT_JOINT]
    t = check_points("target_xyz", np.asarray(target_xyz, np.float64), p=NUM_JOINTS)[:, ROOT_JOINT:ROOT_JOINT + 1]
    return j[None] + t, v[None] + t


def write_metrics(out_dir: str | Path, result: MetricsResult) -> list[Path]:
    """Write ``metrics.json`` (summary) and ``per_sample_metrics.csv``; returns both paths.

    CSV columns: ``index`` then :data:`m3dhmr.metrics.PER_SAMPLE_KEYS`.
    """
    out_dir = Path(out_dir)
    metrics_path = out_dir / METRICS_FILE
    csv_path = out_dir / PER_SAMPLE_FILE
    write_json_strict(metrics_path, result.summary, indent=2)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("index",) + PER_SAMPLE_KEYS)
    columns = [getattr(result, k) for k in PER_SAMPLE_KEYS]
    for i in range(result.num_samples):
        writer.writerow([i] + [repr(float(c[i])) for c in columns])
    atomic_write_text(csv_path, buf.getvalue())
    log.info("wrote %s and %s", metrics_path, csv_path)
    return [metrics_path, csv_path]
