"""Similarity (Procrustes) alignment exactly as FreiHAND's official evaluation code.

The official ``align_w_scale(mtx1=gt, mtx2=pred)``: centre both sets, divide each by
its Frobenius norm plus ``1e-8``, ``R, s = scipy.linalg.orthogonal_procrustes(gt_n,
pred_n)`` (so ``R`` minimises ``||gt_n @ R - pred_n||`` and ``s`` is the sum of the
singular values of ``gt_n^T @ pred_n``), then ``aligned = pred_n @ R.T * s * |gt_c| +
mean(gt)``. ``R`` may be a reflection: the protocol does not exclude reflections.

Note the argument order: scipy is called with the *ground truth first*; with
``pred_n @ R.T`` that is what maps the prediction onto the ground truth.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import scipy.linalg
import torch
from m3dhmr.errors import InputError

Array = TypeVar("Array", np.ndarray, torch.Tensor)

#: Added to each Frobenius norm, as in the official code (keeps all-zero sets finite).
NORM_EPS = 1e-8


def align_w_scale(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Align ``pred`` to ``gt`` with rotation (or reflection), scale and translation.

    A literal transcription of the official FreiHAND evaluation, computed in float64.

    Args:
        gt: (N, 3) ground-truth points.
        pred: (N, 3) predicted points (same order).

    Returns:
        (N, 3) float64 aligned prediction.
    """
    gt = np.array(gt, dtype=np.float64)
    pred = np.array(pred, dtype=np.float64)
    if gt.ndim != 2 or gt.shape[1] != 3 or pred.shape != gt.shape:
        raise InputError(f"align_w_scale: expected gt and pred of shape (N, 3), got {gt.shape} and {pred.shape}")
    t1 = gt.mean(0)
    gt_c = gt - t1
    pred_c = pred - pred.mean(0)
    s1 = np.linalg.norm(gt_c) + NORM_EPS
    gt_c /= s1
    pred_c /= np.linalg.norm(pred_c) + NORM_EPS
    R, s = scipy.linalg.orthogonal_procrustes(gt_c, pred_c)
    return (pred_c @ R.T) * s * s1 + t1


def align_w_scale_batch(gt: Array, pred: Array) -> Array:
    """Batched :func:`align_w_scale` (one SVD per sample, no Python loop).

    Matches the official per-sample result up to floating-point rounding (checked in
    the tests); numpy inputs are computed in float64, torch inputs in their own dtype
    and on their own device (differentiable, except at repeated singular values).

    Args:
        gt: (B, N, 3) ground-truth points.
        pred: (B, N, 3) predictions.

    Returns:
        (B, N, 3) aligned predictions (numpy float64 or a tensor like ``pred``).
    """
    if tuple(gt.shape) != tuple(pred.shape) or gt.ndim != 3 or gt.shape[-1] != 3:
        raise InputError(f"align_w_scale_batch: expected gt and pred of shape (B, N, 3), "
                         f"got {tuple(gt.shape)} and {tuple(pred.shape)}")
    if isinstance(gt, torch.Tensor):
        t1 = gt.mean(1, keepdim=True)                                    # (B, 1, 3)
        gt_c = gt - t1
        pred_c = pred - pred.mean(1, keepdim=True)
        s1 = torch.linalg.vector_norm(gt_c, dim=(1, 2), keepdim=True) + NORM_EPS
        gt_c = gt_c / s1
        pred_c = pred_c / (torch.linalg.vector_norm(pred_c, dim=(1, 2), keepdim=True) + NORM_EPS)
        # scipy: svd((B^T A)^T) = svd(A^T B) with A = gt_c, B = pred_c; R = U V^T.
        u, w, vt = torch.linalg.svd(gt_c.transpose(1, 2) @ pred_c)      # (B, 3, 3), (B, 3)
        R = u @ vt
        s = w.sum(-1)[:, None, None]
        return (pred_c @ R.transpose(1, 2)) * s * s1 + t1
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    t1 = gt.mean(1, keepdims=True)
    gt_c = gt - t1
    pred_c = pred - pred.mean(1, keepdims=True)
    s1 = np.sqrt((gt_c ** 2).sum(axis=(1, 2), keepdims=True)) + NORM_EPS
    gt_c = gt_c / s1
    pred_c = pred_c / (np.sqrt((pred_c ** 2).sum(axis=(1, 2), keepdims=True)) + NORM_EPS)
    u, w, vt = np.linalg.svd(np.swapaxes(gt_c, 1, 2) @ pred_c)
    R = u @ vt
    s = w.sum(-1)[:, None, None]
    return (pred_c @ np.swapaxes(R, 1, 2)) * s * s1 + t1
