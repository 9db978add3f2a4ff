"""NumPy twin of :func:`m3dhmr.geometry.registration.register_camera_space`, for small
batches on CPU (the Predictor registers one hand per frame).

Why: the torch version runs about a thousand tiny tensor ops per call, so at batch size
1 its time is all per-op dispatch overhead: 9-15 ms a call on this project's 2-core CPU
(one thread; the spread is the machine's). The same algorithm in NumPy, laid out so
that each Gauss-Newton step is about 25 array ops (the weighted normal equations as one
Gram-matrix product, the damped 3x3 adjugate solve in Python floats when the batch is
small, no copies when the whole batch accepts or rejects a step), takes 0.6-1.5 ms
there back to back and about 2 ms when every call follows a torch call (a cold cache),
7-10x less than torch side by side. ``benchmarks/registration_speed.py`` prints both
(``registration_ms_per_call_b1_*``).

What: the algorithm, its parameters and defaults, the acceptance rule, the outlier
rounds, the success conditions and the fallback are documented in
:mod:`m3dhmr.geometry.registration`; this module runs the same steps in the same order,
in float64, batched over B the same way, with the same input checks. Only the rounding
differs (summation order, fused products), so results agree to ~1e-15 m typically and
to a few 1e-9 m at worst (where the Levenberg-Marquardt test ``cost_new <= cost`` meets
two costs equal to the last bit, the two versions can branch differently), with the
same inlier masks and success flags. ``tests/test_registration_numpy.py`` pins the two
together, degenerate inputs included: change one, change the other.
"""

from __future__ import annotations


import numpy as np

from m3dhmr.geometry.registration import RegistrationResult, RegistrationSettings, check_inputs

_TINY = float(np.finfo(np.float64).tiny)
_MAX = float(np.finfo(np.float64).max)
_EYE3 = np.eye(3)
_EYE2 = np.eye(2)
_DAMP = np.diag([1.0, 1.0, 1.0, 0.0])     # N + lam diag(N) in [:3, :3], rhs in [:3, 3] untouched
#: :func:`solve3` loops over the samples in Python floats up to this batch size (a few
#: samples: cheaper than a dozen array ops on (B,)-sized arrays), and runs array ops above it.
SOLVE3_LOOP_MAX_B = 8


def _gather_index() -> np.ndarray:
    """Flat indices into an augmented row-major 4x4 ``[N | rhs]`` for :func:`solve3`.

    0-35: the four factors of each adjugate entry, ``adj[i, k] = (cross product k)_i``
    with the cross products of the rows (1, 2), (2, 0), (0, 1) of N (the inverse times
    det, as in ``registration._solve3``): ``N[k+1, i+1] N[k+2, i+2] - N[k+1, i+2] N[k+2, i+1]``
    (indices mod 3), in (i, k) row-major order; 36-41: ``[rhs_k, N[k, 0]]`` for k = 0..2,
    so that ``adj @ that`` gives ``adj rhs`` and ``(adj N)[0, 0] = det``; 42-44: diag(N).
    """
    i, k = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    i1, i2, k1, k2 = (i + 1) % 3, (i + 2) % 3, (k + 1) % 3, (k + 2) % 3
    cof = [4 * k1 + i1, 4 * k2 + i2, 4 * k1 + i2, 4 * k2 + i1]
    return np.concatenate([c.ravel() for c in cof] + [np.array([3, 0, 7, 4, 11, 8, 0, 5, 10])])


_GATHER = _gather_index()


def solve3(M: np.ndarray, lam: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Solve a batch of symmetric 3x3 systems by the adjugate (the torch solver's maths).

    Up to :data:`SOLVE3_LOOP_MAX_B` samples are solved one by one in Python floats, larger
    batches with array ops; both give the same results to rounding (pinned by
    ``tests/test_registration_numpy.py``).

    Args:
        M: (B, 4, 4) C-contiguous, the matrices N in ``[:, :3, :3]`` and the right-hand
            sides in ``[:, :3, 3]`` (the last row is ignored).
        lam: optional (B,) Levenberg-Marquardt damping: solve ``N + lam diag(N)`` instead.

    Returns:
        x (B, 3) (zeros where singular) and rcond (B,): ``det / (trace / 3)^3``, a cheap
        scale-free proxy of the reciprocal condition number (0 when singular).
    """
    B = M.shape[0]
    if B <= SOLVE3_LOOP_MAX_B:
        # A few samples: Python floats beat a dozen array ops on (B,)-sized arrays.
        vals, lams = M.reshape(B, 16).tolist(), [0.0] * B if lam is None else lam.tolist()
        out = []                                            # rows (x0, x1, x2, rcond)
        for (a0, a1, a2, r0, b0, b1, b2, r1, c0, c1, c2, r2, *_), lm in zip(vals, lams, strict=True):
            if lm:
                d = 1.0 + lm
                a0, b1, c2 = a0 * d, b1 * d, c2 * d
            p0, p1, p2 = b1 * c2 - b2 * c1, b2 * c0 - b0 * c2, b0 * c1 - b1 * c0   # b x c
            q0, q1, q2 = c1 * a2 - c2 * a1, c2 * a0 - c0 * a2, c0 * a1 - c1 * a0   # c x a
            s0, s1, s2 = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0   # a x b
            det = a0 * p0 + a1 * p1 + a2 * p2
            s = (a0 + b1 + c2) / 3.0
            s = max(s, _TINY)                               # NaN stays NaN, as in clamp
            s = s * s * s
            rc = det / s if s != 0.0 else float("nan")      # x / 0.0 raises in Python
            if rc - rc == 0.0 and rc != 0.0:                # finite and non-zero
                out.append(((p0 * r0 + q0 * r1 + s0 * r2) / det, (p1 * r0 + q1 * r1 + s1 * r2) / det,
                            (p2 * r0 + q2 * r1 + s2 * r2) / det, rc))
            else:
                out.append((0.0, 0.0, 0.0, 0.0))
        res = np.array(out, dtype=np.float64).reshape(B, 4)
        return res[:, :3], res[:, 3]
    if lam is not None:
        M = M * (1.0 + lam[:, None, None] * _DAMP)
    T = M.reshape(B, 16)[:, _GATHER]                                  # (B, 45)
    adj = (T[:, 0:9] * T[:, 9:18] - T[:, 18:27] * T[:, 27:36]).reshape(B, 3, 3)
    Y = adj @ T[:, 36:42].reshape(B, 3, 2)                            # [adj rhs | adj N[:, 0]]
    det = Y[:, 0, 1]
    s = np.maximum((T[:, 42] + T[:, 43] + T[:, 44]) / 3.0, _TINY)
    rcond = det / (s * s * s)
    ok = np.isfinite(rcond) & (rcond != 0)
    if ok.all():
        return Y[:, :, 0] / det[:, None], rcond
    x = Y[:, :, 0] / np.where(ok, det, 1.0)[:, None]
    return np.where(ok[:, None], x, 0.0), np.where(ok, rcond, 0.0)


def register_camera_space_numpy(
    joints3d_rr: np.ndarray,
    joints2d: np.ndarray,
    K: np.ndarray,
    vertices_rr: np.ndarray | None = None,
    *,
    weights: np.ndarray | None = None,
    settings: RegistrationSettings | None = None,
) -> RegistrationResult[np.ndarray]:
    """Solve the camera-space translation of a batch of root-relative hands (NumPy).

    Same arguments, defaults and results as
    :func:`m3dhmr.geometry.registration.register_camera_space` (always computed in
    float64); see there for the meaning of each parameter.

    Args:
        joints3d_rr: (B, J, 3) root-relative 3D joints, metres, camera axes.
        joints2d: (B, J, 2) the same joints in pixels of the image ``K`` describes.
        K: (B, 3, 3) or (3, 3) intrinsics.
        vertices_rr: optional (B, V, 3) root-relative vertices moved by the same ``t``.
        weights: optional (B, J) non-negative joint weights; zero-weight joints are excluded.

    Returns:
        :class:`~m3dhmr.geometry.registration.RegistrationResult` of NumPy arrays, in the
        dtype of ``joints3d_rr`` (success and inliers bool).

    Raises:
        ValueError: an input has the wrong shape (the message names it).
    """
    joints3d_rr, joints2d, K = np.asarray(joints3d_rr), np.asarray(joints2d), np.asarray(K)
    vertices_rr = None if vertices_rr is None else np.asarray(vertices_rr)
    weights = None if weights is None else np.asarray(weights)
    B, J = check_inputs(joints3d_rr, joints2d, K, vertices_rr, weights)
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (B, 3, 3))
    st = RegistrationSettings() if settings is None else settings
    # Degenerate samples divide by zero, subtract inf from inf, ...: flagged, not warned about.
    with np.errstate(all="ignore"):
        return _register(joints3d_rr, joints2d, K, vertices_rr, weights, st.iterations, st.refine_iterations,
                         st.outlier_rounds, st.min_inliers, st.outlier_px, st.huber_px, st.min_depth,
                         st.fallback_depth, st.min_rcond)


def _register(joints3d_rr, joints2d, K, vertices_rr, weights, iterations, refine_iterations, outlier_rounds,
              min_inliers, outlier_px, huber_px, min_depth, fallback_depth,
              min_rcond) -> RegistrationResult[np.ndarray]:
    """Body of :func:`register_camera_space_numpy`, on validated arrays."""
    B, J, _ = joints3d_rr.shape
    f64 = np.float64
    X = np.asarray(joints3d_rr, dtype=f64)        # never written to in place
    uv = np.asarray(joints2d, dtype=f64)
    Kc = np.asarray(K, dtype=f64)
    w_in = np.ones((B, J)) if weights is None else np.asarray(weights, dtype=f64)

    # Usable joints: finite 3D and 2D, positive weight; a non-finite K fails the sample.
    # (Fast path: one finiteness test on sums when everything is finite.)
    fx, fy = Kc[:, 0, 0:1], Kc[:, 1, 1:2]                                    # (B, 1)
    if (np.isfinite(X.sum() + uv.sum() + Kc.sum()) and (fx > 0).all() and (fy > 0).all()
            and (weights is None or (np.isfinite(w_in.sum()) and (w_in > 0).all()))):
        k_ok, usable = np.ones(B, dtype=bool), np.ones((B, J), dtype=bool)
    else:
        k_ok = np.isfinite(Kc.reshape(B, 9)).all(-1) & (fx[:, 0] > 0) & (fy[:, 0] > 0)
        usable = (np.isfinite(X).all(-1) & np.isfinite(uv).all(-1) & np.isfinite(w_in) & (w_in > 0)
                  & k_ok[:, None])                                           # (B, J)
        Kc = np.where(k_ok[:, None, None], Kc, _EYE3)
        fx, fy = Kc[:, 0, 0:1], Kc[:, 1, 1:2]
        X = np.where(usable[..., None], X, 0.0)
        uv = np.where(usable[..., None], uv, 0.0)
        w_in = np.where(usable, w_in, 0.0)
    Xz = X[..., 2]

    # Closed form: rows (1, 0, -x | x Z - X) and (0, 1, -y | y Z - Y) of the augmented
    # system, (x, y) = K^-1 (u, v, 1) the normalised image coordinates (K^-1 applied
    # analytically, skew allowed), weighted by w (f / depth)^2; their Gram matrix holds N
    # and rhs.
    M = np.empty((B, J, 2, 4))
    M[..., :2] = _EYE2
    nxy = M[..., 2]                                                          # (B, J, 2), -(x, y) for now
    c = uv - Kc[:, None, :2, 2]                                              # (u - cx, v - cy)
    np.divide(c[..., 1], fy, out=nxy[..., 1])
    np.subtract(c[..., 0], Kc[:, 0, 1:2] * nxy[..., 1], out=nxy[..., 0])
    nxy[..., 0] /= fx
    xn, yn = nxy[..., 0].copy(), nxy[..., 1].copy()                          # (B, J) each
    np.subtract(nxy * Xz[..., None], X[..., :2], out=M[..., 3])             # x Z - X, y Z - Y
    np.negative(nxy, out=nxy)
    M = M.reshape(B, 2 * J, 4)
    f2 = np.concatenate([fx, fy], 1)[:, None, :]                             # (B, 1, 2)

    def linear_solve(depth: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        s = f2 / (depth[..., None] if isinstance(depth, np.ndarray) else depth)
        a = (w_in[..., None] * (s * s)).reshape(B, 2 * J, 1)
        return solve3((M * a).transpose(0, 2, 1) @ M)

    fallback = None

    def get_fallback() -> np.ndarray:
        """The usable joints' centroid on the ray through their 2D centroid, (B, 3)."""
        nonlocal fallback
        if fallback is None:
            nu = np.maximum(usable.sum(1), 1).astype(f64)[:, None]           # (B, 1)
            c3 = X.sum(1) / nu                                               # X is 0 where unusable
            cxn = (xn * usable).sum(1, keepdims=True) / nu                   # 0 when nothing usable
            cyn = (yn * usable).sum(1, keepdims=True) / nu
            fallback = np.concatenate([cxn * fallback_depth, cyn * fallback_depth,
                                       np.full((B, 1), fallback_depth)], 1) - c3
        return fallback

    t, rc = linear_solve(float(fallback_depth))                              # same depth for all
    ok = rc > min_rcond
    if not all(ok.tolist()):
        t = np.where(ok[:, None], t, get_fallback())
    # Second pass with each joint's own depth: the equations then read as pixel errors.
    t2, rc = linear_solve(np.maximum(Xz + t[:, 2:3], min_depth))
    ok = rc > min_rcond
    t = t2 if all(ok.tolist()) else np.where(ok[:, None], t2, t)

    # [K[:2]^T | e3]: (X + t) @ K3T holds the projection's numerator and the depth.
    K3T = np.zeros((B, 3, 3))
    K3T[:, :, :2] = Kc[:, :2, :].transpose(0, 2, 1)
    K3T[:, 2, 2] = 1.0
    K2a = np.zeros((B, 1, 2, 4))                                             # [K[:2] | 0], per joint
    K2a[:, 0, :, :3] = Kc[:, :2, :]
    robust = huber_px > 0
    # 0-d arrays: NumPy takes them faster than Python floats as ufunc operands.
    h, md, half, one = np.array(float(huber_px)), np.array(float(min_depth)), np.array(0.5), np.array(1.0)
    down, up, lam_min, lam_max = np.array(0.1), np.array(10.0), np.array(1e-9), np.array(1e6)

    def residual(t_: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """1 / depth (B, J, 1), projections (B, J, 2), pixel residuals (B, J, 2), their norms (B, J)."""
        Q = (X + t_[:, None, :]) @ K3T                                       # (B, J, 3)
        iz = np.maximum(Q[..., 2:], md)
        np.divide(one, iz, out=iz)
        proj = Q[..., :2] * iz
        r = proj - uv
        return iz, proj, r, np.hypot(r[..., 0], r[..., 1])

    def cost_of(w_: np.ndarray, err: np.ndarray) -> np.ndarray:
        # Huber: m (e - m / 2) with m = min(e, h) is 0.5 e^2 inside h and h (e - h / 2) beyond.
        m = np.minimum(err, h) if robust else err
        return np.vecdot(m * (err - half * m), w_)

    def gram(w_: np.ndarray, iz: np.ndarray, proj: np.ndarray, r: np.ndarray) -> np.ndarray:
        """sum_j w_j [J_j | r_j]^T [J_j | r_j] (B, 4, 4): H in [:3, :3], g in [:3, 3], with
        ``J_j = (K[:2] - p_j e3^T) / z_j`` the Jacobian of joint j's projection w.r.t. t."""
        A = K2a * iz[..., None]                                              # (B, J, 2, 4)
        A[..., 2] -= proj * iz
        A[..., 3] = r
        Aw = A * w_[:, :, None, None]
        return Aw.reshape(B, 2 * J, 4).transpose(0, 2, 1) @ A.reshape(B, 2 * J, 4)

    lam = np.full(B, 1e-4)
    active = np.ones(B, dtype=bool)
    inl = usable
    w = w_in                                    # = w_in * inl: w_in is 0 where unusable
    iz, proj, r, err = residual(t)
    cost = G = None                             # None: to (re)compute for the current w / state
    for rnd in range(outlier_rounds + 1):
        if cost is None:
            # Clamped to the largest float, so that cost_n <= cost also says cost_n is
            # finite (costs are sums of non-negative terms: never -inf).
            cost = np.minimum(cost_of(w, err), _MAX)
        for _ in range(iterations if rnd == 0 else refine_iterations):
            if G is None:                                                    # else: state unchanged
                G = gram(w * (h / np.maximum(err, h)) if robust else w, iz, proj, r)  # IRLS weights
            x, _ = solve3(G, lam)                                            # step = -x
            t_new = t - x
            iz_n, proj_n, r_n, err_n = residual(t_new)
            cost_n = cost_of(w, err_n)
            # Accept per sample only if the robust cost does not increase (Levenberg-Marquardt).
            better = cost_n <= cost
            # (Branches on Python lists of the (B,) flags: cheaper than .all() at small B.)
            if all(better.tolist()):
                t, iz, proj, r, err, cost, G = t_new, iz_n, proj_n, r_n, err_n, cost_n, None
                lam = np.maximum(lam * down, lam_min)
            elif not any(better.tolist()):
                lam = np.minimum(lam * up, lam_max)
            else:
                b1, b2 = better[:, None], better[:, None, None]
                t, err, cost = np.where(b1, t_new, t), np.where(b1, err_n, err), np.where(better, cost_n, cost)
                iz, proj, r = np.where(b2, iz_n, iz), np.where(b2, proj_n, proj), np.where(b2, r_n, r)
                lam = np.where(better, np.maximum(lam * down, lam_min), np.minimum(lam * up, lam_max))
                G = None
        if rnd < outlier_rounds and any(active.tolist()):
            n_inl = inl.sum(1)
            n = np.maximum(n_inl, 1)
            mean = np.vecdot(err, inl) / n
            d = err - mean[:, None]
            std = np.sqrt(np.vecdot(d * d, inl) / n)                         # population std
            cand = inl & ((err < (mean + std)[:, None]) | (err <= outlier_px))
            n_cand = cand.sum(1)
            active = active & (n_cand >= min_inliers) & (n_cand < n_inl)
            if any(active.tolist()):            # else inl, w, cost and G stay as they are
                inl = np.where(active[:, None], cand, inl)
                w = w_in * inl
                cost = G = None

    # Conditioning of the final (undamped, unweighted) Gauss-Newton system on the inliers.
    _, rcond = solve3(gram(w, iz, proj, r))
    n_inl = inl.sum(1)
    depth_ok = (~inl | (Xz + t[:, 2:3] > min_depth)).all(-1)
    success = (k_ok & (n_inl >= 3) & np.isfinite(t).all(-1) & (t[:, 2] > 0) & depth_ok
               & (rcond > min_rcond))
    if not all(success.tolist()):
        t = np.where(success[:, None], t, get_fallback())
        err = residual(t)[3]
    # else: err is already that of t

    if all(n_inl.tolist()):
        reproj = np.vecdot(err, inl) / n_inl
    else:
        reproj = np.where(n_inl > 0, np.vecdot(err, inl) / np.maximum(n_inl, 1), np.inf)
    out_dtype = joints3d_rr.dtype
    t_out = t.astype(out_dtype, copy=False)
    joints = joints3d_rr + t_out[:, None]
    verts = None if vertices_rr is None else vertices_rr + t_out.astype(vertices_rr.dtype, copy=False)[:, None]
    return RegistrationResult(translation=t_out, joints=joints, vertices=verts, success=success,
                                   reprojection_error=reproj.astype(out_dtype, copy=False), inliers=inl)
