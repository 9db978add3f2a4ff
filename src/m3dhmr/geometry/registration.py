"""Batched camera-space registration: the translation that puts a root-relative hand
where its 2D joints are.

CMR/MobRecon solve ``t`` per sample with scipy SLSQP and finite differences (about
5 ms a sample). Here the whole batch is solved at once in torch, with no per-sample
Python loop and no data-dependent Python control flow:

1. **Closed form.** For joint ``j`` with root-relative position ``X_j`` and normalised
   image coordinates ``(x_j, y_j) = K^-1 (u_j, v_j, 1)``, the pinhole equations
   ``x_j (Z_j + t_z) = X_j + t_x`` and ``y_j (Z_j + t_z) = Y_j + t_y`` are linear in
   ``t``: 2J equations, 3 unknowns. Each equation is scaled by ``f / z_ref`` (``z_ref`` the
   mean depth) so that it reads in pixels, and the 3x3 weighted normal equations are
   solved by the adjugate; this is iterated twice with the depth of each joint.
2. **Gauss-Newton (Levenberg-Marquardt)** on the true reprojection error in pixels,
   with Huber IRLS weights (``huber_px``); a step is accepted per sample only if the
   robust cost decreases (``torch.where``, so still batched).
3. **Outlier rounds as in CMR**: after each round the joints with a residual above
   mean + std (over the current inliers) are dropped, unless fewer than
   ``min_inliers`` would remain; once a sample stops, it stays stopped. Unlike CMR
   (which stops once the *mean* error is below 2 px, so one 35 px outlier among 18
   joints survives), a joint within ``outlier_px`` of its 2D position is never
   dropped, and the rounds go on while some joint is beyond it.

A sample fails (``success = False``) when its input is not finite, fewer than 3
usable joints remain, the final 3x3 system is singular or ill-conditioned
(coincident points), ``t_z <= 0`` or an inlier joint ends up at depth
``<= min_depth`` (behind the camera). A failed sample gets the fallback translation:
the centroid of its usable joints placed on the ray through the centroid of their 2D
positions at depth ``fallback_depth`` (the principal point when nothing is usable),
so outputs are always finite for finite 3D input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import Tensor

from m3dhmr.errors import InputError


@dataclass(frozen=True)
class RegistrationSettings:
    """How :func:`register_camera_space` and its NumPy twin solve (one contract for both).

    The defaults, and why:

    - ``iterations = 4`` Gauss-Newton steps in the first round: from the closed-form
      start they converge to ~1e-9 m on noise-free hands (``tests/test_registration.py``);
    - ``refine_iterations = 2`` in each later round, which starts next to the optimum;
    - ``outlier_rounds = 4`` CMR-style rounds (drop the joints above mean + std): enough
      to remove 20 % of gross 2D outliers;
    - ``min_inliers = 13`` of 21 joints, CMR's floor (a round never goes below it);
    - ``outlier_px = 5`` px: a joint this close to its 2D position is never dropped (a
      good network's 2D error on a 128-px crop is about that);
    - ``huber_px = 4`` px: robust weights start at about the typical 2D error
      (<= 0: plain least squares);
    - ``min_depth = 0.01`` m: an inlier joint nearer than 1 cm is at or behind the camera;
    - ``fallback_depth = 0.6`` m: where a failed sample's hand is put, a typical
      hand-to-camera distance;
    - ``min_rcond = 1e-7``: a final 3x3 system conditioned worse than this is singular
      (coincident points, all joints on one ray).
    """

    iterations: int = 4
    refine_iterations: int = 2
    outlier_rounds: int = 4
    min_inliers: int = 13
    outlier_px: float = 5.0
    huber_px: float = 4.0
    min_depth: float = 0.01
    fallback_depth: float = 0.6
    min_rcond: float = 1e-7

    def __post_init__(self) -> None:
        for name in ("iterations", "refine_iterations", "outlier_rounds"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"registration {name} must be >= 0, got {getattr(self, name)}")
        if self.min_inliers < 3:
            raise InputError(f"registration min_inliers must be >= 3 (three unknowns), got {self.min_inliers}")
        for name in ("outlier_px", "min_depth", "fallback_depth", "min_rcond"):
            if not getattr(self, name) > 0:
                raise InputError(f"registration {name} must be > 0, got {getattr(self, name)}")


#: The array type of one :class:`RegistrationResult`: torch tensors from
#: :func:`register_camera_space`, NumPy arrays from its NumPy twin.
ArrayT = TypeVar("ArrayT", Tensor, np.ndarray)


@dataclass(frozen=True)
class RegistrationResult(Generic[ArrayT]):
    """Output of :func:`register_camera_space` (``RegistrationResult[Tensor]``) and
    :func:`~m3dhmr.geometry.registration_numpy.register_camera_space_numpy`
    (``RegistrationResult[np.ndarray]``), in the dtype of the 3D input.

    Attributes:
        translation: (B, 3) metres; camera point = root-relative point + translation.
        joints: (B, J, 3) camera-space joints.
        vertices: (B, V, 3) camera-space vertices, or None when none were given.
        success: (B,) bool; a failed sample holds the fallback translation.
        reprojection_error: (B,) mean pixel distance over the inliers (inf if none).
        inliers: (B, J) bool, the joints used in the final solve.
    """

    translation: ArrayT
    joints: ArrayT
    vertices: ArrayT | None
    success: ArrayT
    reprojection_error: ArrayT
    inliers: ArrayT


def check_inputs(joints3d_rr, joints2d, K, vertices_rr=None, weights=None) -> tuple[int, int]:
    """Shape checks shared by both solvers (arrays or tensors); returns ``(B, J)``.

    ``K`` may be (B, 3, 3) or (3, 3). Errors name the argument and the expected shape.
    """
    if joints3d_rr.ndim != 3 or joints3d_rr.shape[-1] != 3:
        raise InputError(f"joints3d_rr: expected shape (B, J, 3), got {tuple(joints3d_rr.shape)}")
    B, J, _ = joints3d_rr.shape
    if tuple(joints2d.shape) != (B, J, 2):
        raise InputError(f"joints2d: expected shape ({B}, {J}, 2) to match joints3d_rr, got {tuple(joints2d.shape)}")
    if tuple(K.shape) not in ((3, 3), (B, 3, 3)):
        raise InputError(f"K: expected shape ({B}, 3, 3) or (3, 3), got {tuple(K.shape)}")
    if vertices_rr is not None and (vertices_rr.ndim != 3 or vertices_rr.shape[0] != B or vertices_rr.shape[-1] != 3):
        raise InputError(f"vertices_rr: expected shape ({B}, V, 3), got {tuple(vertices_rr.shape)}")
    if weights is not None and tuple(weights.shape) != (B, J):
        raise InputError(f"weights: expected shape ({B}, {J}), got {tuple(weights.shape)}")
    return int(B), int(J)


def _solve3(N: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor]:
    """Solve symmetric 3x3 systems by the adjugate.

    Args:
        N: (B, 3, 3) matrices. rhs: (B, 3).

    Returns:
        x (B, 3) (zeros where singular) and rcond (B,): ``det / (trace / 3)^3``, a cheap
        scale-free proxy of the reciprocal condition number (0 when singular).
    """
    a, b, c = N[:, 0], N[:, 1], N[:, 2]                   # rows, (B, 3)
    cols = torch.stack([torch.linalg.cross(b, c), torch.linalg.cross(c, a),
                        torch.linalg.cross(a, b)], dim=-1)  # adj(N) = inverse * det, (B, 3, 3)
    det = (a * cols[..., 0]).sum(-1)
    trace = N.diagonal(dim1=-2, dim2=-1).sum(-1)
    scale = (trace / 3.0).clamp(min=torch.finfo(N.dtype).tiny) ** 3
    rcond = det / scale
    ok = torch.isfinite(rcond) & (rcond.abs() > 0)
    x = (cols @ rhs.unsqueeze(-1)).squeeze(-1) / torch.where(ok, det, torch.ones_like(det)).unsqueeze(-1)
    return torch.where(ok.unsqueeze(-1), x, torch.zeros_like(x)), torch.where(ok, rcond, torch.zeros_like(rcond))


def _robust_weights(err: Tensor, huber_px: float) -> Tensor:
    """Huber IRLS weights for per-joint pixel distances (B, J); 1 inside ``huber_px``."""
    if huber_px <= 0:
        return torch.ones_like(err)
    return huber_px / err.clamp(min=huber_px)


def _huber(err: Tensor, huber_px: float) -> Tensor:
    if huber_px <= 0:
        return 0.5 * err ** 2
    return torch.where(err <= huber_px, 0.5 * err ** 2, huber_px * (err - 0.5 * huber_px))


def register_camera_space(
    joints3d_rr: Tensor,
    joints2d: Tensor,
    K: Tensor,
    vertices_rr: Tensor | None = None,
    *,
    weights: Tensor | None = None,
    settings: RegistrationSettings | None = None,
    compute_dtype: torch.dtype | None = torch.float64,
) -> RegistrationResult[Tensor]:
    """Solve the camera-space translation of a batch of root-relative hands.

    Args:
        joints3d_rr: (B, J, 3) root-relative 3D joints, metres, camera axes.
        joints2d: (B, J, 2) the same joints in pixels of the image ``K`` describes.
        K: (B, 3, 3) or (3, 3) intrinsics.
        vertices_rr: optional (B, V, 3) root-relative vertices moved by the same ``t``.
        weights: optional (B, J) non-negative joint weights (e.g. 2D confidences);
            zero-weight joints are excluded.
        settings: how to solve (:class:`RegistrationSettings`; default: its defaults).
        compute_dtype: dtype of the solve (default float64: cheap at 3x3 and exact to
            ~1e-12 m); None computes in the input dtype.

    Returns:
        :class:`RegistrationResult`, in the dtype and on the device of ``joints3d_rr``.
    """
    B, J = check_inputs(joints3d_rr, joints2d, K, vertices_rr, weights)
    if K.ndim == 2:
        K = K.expand(B, 3, 3)
    st = RegistrationSettings() if settings is None else settings
    iterations, refine_iterations, outlier_rounds = st.iterations, st.refine_iterations, st.outlier_rounds
    min_inliers, outlier_px, huber_px = st.min_inliers, st.outlier_px, st.huber_px
    min_depth, fallback_depth, min_rcond = st.min_depth, st.fallback_depth, st.min_rcond
    out_dtype = joints3d_rr.dtype
    dt = compute_dtype if compute_dtype is not None else out_dtype
    X = joints3d_rr.detach().to(dt)
    uv = joints2d.detach().to(dt)
    Kc = K.detach().to(dt)
    w_in = torch.ones(B, J, dtype=dt, device=X.device) if weights is None else weights.detach().to(dt)

    # Usable joints: finite 3D and 2D, positive weight; a non-finite K fails the sample.
    fx, fy = Kc[:, 0, 0], Kc[:, 1, 1]
    k_ok = torch.isfinite(Kc).flatten(1).all(-1) & (fx > 0) & (fy > 0)
    usable = (torch.isfinite(X).all(-1) & torch.isfinite(uv).all(-1)
              & torch.isfinite(w_in) & (w_in > 0) & k_ok.unsqueeze(-1))       # (B, J)
    Kc = torch.where(k_ok[:, None, None], Kc, torch.eye(3, dtype=dt, device=X.device).expand(B, 3, 3))
    fx, fy = Kc[:, 0, 0], Kc[:, 1, 1]
    X = torch.where(usable.unsqueeze(-1), X, torch.zeros_like(X))
    uv = torch.where(usable.unsqueeze(-1), uv, torch.zeros_like(uv))
    w_in = torch.where(usable, w_in, torch.zeros_like(w_in))

    # Normalised image coordinates (K^-1 applied analytically; skew allowed).
    yn = (uv[..., 1] - Kc[:, 1, 2, None]) / fy[:, None]                    # (B, J)
    xn = (uv[..., 0] - Kc[:, 0, 2, None] - Kc[:, 0, 1, None] * yn) / fx[:, None]

    def linear_solve(w: Tensor, depth: Tensor) -> tuple[Tensor, Tensor]:
        # Rows (1, 0, -x) t = x Z - X and (0, 1, -y) t = y Z - Y, scaled by f / depth.
        a = w * (fx[:, None] / depth) ** 2                                   # (B, J)
        b = w * (fy[:, None] / depth) ** 2
        zero = torch.zeros_like(a[:, 0])
        sa, sb = a.sum(1), b.sum(1)
        sax, sby = (a * xn).sum(1), (b * yn).sum(1)
        N = torch.stack([torch.stack([sa, zero, -sax], -1),
                         torch.stack([zero, sb, -sby], -1),
                         torch.stack([-sax, -sby, (a * xn ** 2).sum(1) + (b * yn ** 2).sum(1)], -1)], -2)
        c1 = xn * X[..., 2] - X[..., 0]
        c2 = yn * X[..., 2] - X[..., 1]
        rhs = torch.stack([(a * c1).sum(1), (b * c2).sum(1), -(a * xn * c1).sum(1) - (b * yn * c2).sum(1)], -1)
        return _solve3(N, rhs)

    # Fallback (and start when the linear system is singular): the usable joints'
    # centroid on the ray through their 2D centroid, at depth fallback_depth.
    nu = usable.sum(1).clamp(min=1).to(dt)
    c3 = (X * usable.unsqueeze(-1)).sum(1) / nu[:, None]                      # (B, 3)
    cxn, cyn = (xn * usable).sum(1) / nu, (yn * usable).sum(1) / nu         # 0 when nothing usable
    fallback = torch.stack([cxn * fallback_depth, cyn * fallback_depth,
                            torch.full_like(cxn, fallback_depth)], -1) - c3

    inl = usable.clone()
    w = w_in
    t, rc = linear_solve(w, torch.full_like(w, fallback_depth))
    t = torch.where((rc > min_rcond).unsqueeze(-1), t, fallback)
    # Second pass with each joint's own depth: the equations then read as pixel errors.
    t2, rc = linear_solve(w, (X[..., 2] + t[:, 2:3]).clamp(min=min_depth))
    t = torch.where((rc > min_rcond).unsqueeze(-1), t2, t)

    K2 = Kc[:, :2, :]                                                         # (B, 2, 3)
    K2X = (X.unsqueeze(-2) * K2.unsqueeze(1)).sum(-1)                         # (B, J, 2), fixed

    def residual(t_: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Pixel residuals (B, J, 2), their norms (B, J), projections (B, J, 2), 1/depth (B, J)."""
        iz = 1.0 / (X[..., 2] + t_[:, 2:3]).clamp(min=min_depth)
        proj = (K2X + (K2 @ t_.unsqueeze(-1)).transpose(1, 2)) * iz.unsqueeze(-1)
        r = proj - uv
        return r, r.norm(dim=-1), proj, iz

    def normal_equations(w_: Tensor, r: Tensor, proj: Tensor, iz: Tensor) -> tuple[Tensor, Tensor]:
        """Gauss-Newton H = sum_j w J^T J (B, 3, 3) and g = sum_j w J^T r (B, 3).

        Joint j's Jacobian w.r.t. t is ``A_j / z_j`` with ``A_j = K[:2] - p_j e3^T``
        (``p_j`` its projection), so ``A^T A = K2^T K2 - K2^T p e3^T - e3 p^T K2 + |p|^2 e3 e3^T``
        and both sums reduce to per-sample sums over joints (cheaper than 3x3 blocks).
        """
        c = w_ * iz * iz                                                      # (B, J)
        s0 = c.sum(1)                                                         # (B,)
        s1 = (c.unsqueeze(-1) * proj).sum(1)                                  # (B, 2)
        s2 = (c * (proj * proj).sum(-1)).sum(1)                               # (B,)
        K2tK2 = K2.transpose(1, 2) @ K2                                       # (B, 3, 3)
        k = (K2.transpose(1, 2) @ s1.unsqueeze(-1)).squeeze(-1)               # (B, 3) = K2^T s1
        cross = k.unsqueeze(-1) * e3                                          # K2^T s1 e3^T
        H = s0[:, None, None] * K2tK2 - cross - cross.transpose(1, 2) + s2[:, None, None] * e3e3
        cr = (w_ * iz).unsqueeze(-1) * r                                      # (B, J, 2)
        g = (K2.transpose(1, 2) @ cr.sum(1).unsqueeze(-1)).squeeze(-1) - e3 * (cr * proj).sum((1, 2)).unsqueeze(-1)
        return H, g

    e3 = torch.tensor([0.0, 0.0, 1.0], dtype=dt, device=X.device)
    e3e3 = torch.outer(e3, e3)
    eye3 = torch.eye(3, dtype=dt, device=X.device)
    lam = torch.full((B,), 1e-4, dtype=dt, device=X.device)
    active = torch.ones(B, dtype=torch.bool, device=X.device)
    r, err, proj, iz = residual(t)
    for rnd in range(outlier_rounds + 1):
        w = w_in * inl
        cost = (w * _huber(err, huber_px)).sum(1)
        for _ in range(iterations if rnd == 0 else refine_iterations):
            H, g = normal_equations(w * _robust_weights(err, huber_px), r, proj, iz)   # IRLS weights
            damped = H * (1.0 + lam[:, None, None] * eye3)           # H + lam * diag(H)
            step, _ = _solve3(damped, -g)
            t_new = t + step
            r_n, err_n, proj_n, iz_n = residual(t_new)
            cost_n = (w * _huber(err_n, huber_px)).sum(1)
            # Accept per sample only if the robust cost does not increase (Levenberg-Marquardt).
            better = torch.isfinite(cost_n) & (cost_n <= cost)
            b1, b2, b3 = better[:, None], better[:, None, None], better[:, None]
            t = torch.where(b1, t_new, t)
            r, err, proj, iz = torch.where(b2, r_n, r), torch.where(b3, err_n, err), \
                torch.where(b2, proj_n, proj), torch.where(b3, iz_n, iz)
            cost = torch.where(better, cost_n, cost)
            lam = torch.where(better, (lam * 0.1).clamp(min=1e-9), (lam * 10.0).clamp(max=1e6))
        if rnd < outlier_rounds:
            n = inl.sum(1).clamp(min=1)
            mean = (err * inl).sum(1) / n
            std = (((err - mean[:, None]) ** 2 * inl).sum(1) / n).sqrt()   # population std, like numpy
            cand = inl & ((err < (mean + std)[:, None]) | (err <= outlier_px))
            n_cand = cand.sum(1)
            update = active & (n_cand >= min_inliers) & (n_cand < inl.sum(1))
            inl = torch.where(update.unsqueeze(-1), cand, inl)
            active = update

    # Conditioning of the final (undamped, unweighted) Gauss-Newton system on the inliers.
    H, _ = normal_equations(w_in * inl, r, proj, iz)
    _, rcond = _solve3(H, torch.zeros_like(t))
    n_inl = inl.sum(1)
    depth = X[..., 2] + t[:, 2:3]
    depth_ok = torch.where(inl, depth > min_depth, torch.ones_like(inl)).all(-1)
    success = (k_ok & (n_inl >= 3) & torch.isfinite(t).all(-1) & (t[:, 2] > 0) & depth_ok
               & (rcond > min_rcond))
    t = torch.where(success.unsqueeze(-1), t, fallback)

    err = residual(t)[1]
    reproj = torch.where(n_inl > 0, (err * inl).sum(1) / n_inl.clamp(min=1), torch.full_like(err[:, 0], float("inf")))
    t_out = t.to(out_dtype)
    joints = joints3d_rr + t_out.unsqueeze(1)
    verts = None if vertices_rr is None else vertices_rr + t_out.to(vertices_rr.dtype).unsqueeze(1)
    return RegistrationResult(translation=t_out, joints=joints, vertices=verts, success=success,
                              reprojection_error=reproj.to(out_dtype), inliers=inl)
