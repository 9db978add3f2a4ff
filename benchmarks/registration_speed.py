"""Batched camera-space registration vs CMR's per-sample scipy SLSQP solve.

Random root-relative hand-sized joints, translations with tz in [0.3, 1.0] m, crop-like
intrinsics, 1.5 px Gaussian noise and 10% outlier joints (30-80 px off). Both methods
start from scratch on the same data, single-threaded:

(a) ours: :func:`m3dhmr.geometry.registration.register_camera_space` on the whole batch;
    per-sample time = batch time / B (median of a few repeats, interleaved with (b));
(b) CMR-style: per sample, scipy SLSQP from t = (0, 0, 0.6) with tz in [0.05, 2],
    minimising the mean squared reprojection error (pixels) with finite-difference
    gradients, up to 5 rounds that drop joints above mean + std while the mean error
    is above 2 px, stopping below 13 joints.

Reprojection error is the mean pixel distance over the joints that were *not*
corrupted (the same joints for both methods), averaged over samples.

Batch size 1 (one hand per frame, as in the Predictor): the torch function against its
NumPy twin :func:`m3dhmr.geometry.registration_numpy.register_camera_space_numpy`, one
call each per sample in turn (interleaved), median milliseconds per call.

Run: ``.venv/bin/python benchmarks/registration_speed.py [--batch 256] [--slsqp-samples 64] [--b1-calls 400]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.optimize
import torch

from m3dhmr.geometry.camera import project
from m3dhmr.geometry.registration import register_camera_space
from m3dhmr.geometry.registration_numpy import register_camera_space_numpy


def make_data(B: int, seed: int, outlier_frac: float = 0.1, noise_px: float = 1.5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, 21, 3)) * 0.035
    X -= X[:, :1]
    t = np.stack([rng.uniform(-0.1, 0.1, B), rng.uniform(-0.1, 0.1, B), rng.uniform(0.3, 1.0, B)], -1)
    f = rng.uniform(300, 700, B)
    K = np.zeros((B, 3, 3))
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f, 64.0, 64.0, 1.0
    uv = project(X + t[:, None], K) + rng.normal(size=(B, 21, 2)) * noise_px
    outlier = rng.random((B, 21)) < outlier_frac
    ang = rng.uniform(0, 2 * np.pi, (B, 21))
    mag = rng.uniform(30, 80, (B, 21))
    uv = np.where(outlier[..., None], uv + np.stack([np.cos(ang), np.sin(ang)], -1) * mag[..., None], uv)
    return X, t, K, uv, outlier


def slsqp_one(X: np.ndarray, uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    """CMR's loop with a mean squared reprojection error objective."""

    def cost(tt, Xs, uvs):
        return ((project(Xs + tt, K) - uvs) ** 2).sum(-1).mean()

    t = np.array([0.0, 0.0, 0.6])
    sel = np.ones(len(X), bool)
    err = np.array([5.0])
    attempt = 5
    while err.mean() > 2 and attempt:
        attempt -= 1
        Xs, uvs = X[sel], uv[sel]
        sol = scipy.optimize.minimize(cost, t, args=(Xs, uvs), method="SLSQP",
                                      bounds=((None, None), (None, None), (0.05, 2.0)))
        t = sol.x
        err = np.linalg.norm(project(Xs + t, K) - uvs, axis=-1)
        keep = err < err.mean() + err.std()
        if keep.sum() < 13:
            break
        new = np.zeros_like(sel)
        new[np.flatnonzero(sel)[keep]] = True
        sel = new
    return t


def clean_error(X, t, K, uv, outlier) -> np.ndarray:
    e = np.linalg.norm(project(X + t[:, None], K) - uv, axis=-1)         # (B, 21)
    good = ~outlier
    return (e * good).sum(1) / good.sum(1)


def main() -> None:
    from m3dhmr.hardware import cpu_summary

    print(f"# cpu: {cpu_summary()}", flush=True)  # every figure with its processor
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--slsqp-samples", type=int, default=64, help="samples solved by SLSQP (timed per sample)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--b1-calls", type=int, default=400, help="batch-size-1 calls timed per implementation")
    args = ap.parse_args()
    torch.set_num_threads(1)
    X, t, K, uv, outlier = make_data(args.batch, seed=0)
    Xt, uvt, Kt = (torch.from_numpy(a) for a in (X, uv, K))

    register_camera_space(Xt, uvt, Kt)  # warm-up
    n = min(args.slsqp_samples, args.batch)
    t_sl = np.empty((n, 3))
    # Interleave the two timings so that both see the same machine load.
    ours_s, slsqp_s = [], 0.0
    chunks = np.array_split(np.arange(n), args.repeats)
    for chunk in chunks:
        t0 = time.perf_counter()
        with torch.no_grad():
            res = register_camera_space(Xt, uvt, Kt)
        ours_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in chunk:
            t_sl[i] = slsqp_one(X[i], uv[i], K[i])
        slsqp_s += time.perf_counter() - t0
    ours_ms = float(np.median(ours_s)) / args.batch * 1e3
    slsqp_ms = slsqp_s / n * 1e3
    t_ours = res.translation.numpy()

    e_ours = clean_error(X, t_ours, K, uv, outlier)
    e_sl = clean_error(X[:n], t_sl, K[:n], uv[:n], outlier[:n])
    print(f"samples: ours {args.batch} (batched), slsqp {n}; outlier joints {outlier.mean():.1%}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"success rate ours: {res.success.float().mean().item():.3f}")
    print(f"translation error (mm), same {n} samples: ours {np.linalg.norm(t_ours[:n] - t[:n], axis=1).mean() * 1e3:.2f}, "
          f"slsqp {np.linalg.norm(t_sl - t[:n], axis=1).mean() * 1e3:.2f}")
    print(f"reprojection error on the same {n} samples (px): ours {e_ours[:n].mean():.3f}, slsqp {e_sl.mean():.3f}")
    # Batch size 1: torch vs NumPy, interleaved call by call over the samples.
    for i in range(20):  # warm-up
        register_camera_space(Xt[i:i + 1], uvt[i:i + 1], Kt[i:i + 1])
        register_camera_space_numpy(X[i:i + 1], uv[i:i + 1], K[i:i + 1])
    b1_torch, b1_numpy, b1_diff, b1_same = [], [], 0.0, True
    for c in range(args.b1_calls):
        i = c % args.batch
        t0 = time.perf_counter()
        with torch.no_grad():
            r_t = register_camera_space(Xt[i:i + 1], uvt[i:i + 1], Kt[i:i + 1])
        t1 = time.perf_counter()
        r_n = register_camera_space_numpy(X[i:i + 1], uv[i:i + 1], K[i:i + 1])
        t2 = time.perf_counter()
        b1_torch.append(t1 - t0)
        b1_numpy.append(t2 - t1)
        b1_diff = max(b1_diff, float(np.abs(r_t.translation.numpy() - r_n.translation).max()))
        b1_same &= bool((r_t.success.numpy() == r_n.success).all() and (r_t.inliers.numpy() == r_n.inliers).all())
    b1_t_ms, b1_n_ms = float(np.median(b1_torch)) * 1e3, float(np.median(b1_numpy)) * 1e3
    print(f"batch size 1, {args.b1_calls} calls each: torch {b1_t_ms:.3f} ms, numpy {b1_n_ms:.3f} ms (medians); "
          f"max |t_torch - t_numpy| {b1_diff:.1e} m, same inliers and success: {b1_same}")
    # The figures, last, as name=value lines.
    print(f"registration_ours_ms_per_sample={ours_ms:.4f}")
    print(f"registration_slsqp_ms_per_sample={slsqp_ms:.3f}")
    print(f"registration_reproj_px_ours={e_ours[:n].mean():.4f}")
    print(f"registration_reproj_px_slsqp={e_sl.mean():.4f}")
    print(f"registration_speedup={slsqp_ms / ours_ms:.1f}")
    print(f"registration_ms_per_call_b1_torch={b1_t_ms:.3f}")
    print(f"registration_ms_per_call_b1_numpy={b1_n_ms:.3f}")
    print(f"registration_numpy_speedup_b1={b1_t_ms / b1_n_ms:.1f}")


if __name__ == "__main__":
    main()
