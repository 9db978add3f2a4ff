"""Articulation fit (:func:`m3dhmr.hand.fit.fit_hand`): accuracy against known poses, and speed.

Meshes come from ``m3dhmr synth`` (``--data DIR``, its evaluation split; default: 200
rendered into a temporary folder), whose ``evaluation_params.json`` holds the pose that
generated each mesh (finger values in the open hand's anatomical frames, the global
rotation separately). For the clean meshes and again with isotropic Gaussian noise of
``--noise-mm`` (default 5 mm *per coordinate*, i.e. ~8 mm mean displacement) it prints:

- the fit error (mean vertex distance to the given mesh; with noise also to the clean
  one, which is what the fit should recover);
- joint-angle errors: the geodesic angle between the fitted and the generating rotation
  of each joint relative to its parent, by joint kind, and the error of each anatomical
  component (flexion, abduction, twist). Twist about a finger's own axis is the least
  identifiable: the open hand's fingers are nearly round, so only the skin's bending at
  the joints shows it, and the fit's prior holds it near the rest value when noise hides it;

the fit error on the packaged model's predictions of the same images (a network's mesh is
not exactly an articulated hand); then the time per hand at batch 1 and batch 64 (median of repeated runs, torch's
default threads), and each target with PASS/FAIL:

    .venv/bin/python benchmarks/fit_speed.py [--data DIR] [--count 200] [--noise-mm 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from m3dhmr import conventions as cv
from m3dhmr.hand import load_open_hand
from m3dhmr.hand.articulation import articulated_hand
from m3dhmr.hand.fit import FitSettings, fit_hand
from m3dhmr.hand.kinematics import batch_rodrigues
from m3dhmr.hand.limits import joint_kind

TARGETS = {"clean_mm": 1.0, "clean_deg": 5.0, "noisy_mm": 5.0, "noisy_deg": 10.0, "batch1_ms": 10.0, "batch64_ms": 1.0}


def network_meshes(folder: Path, count: int) -> np.ndarray:
    """(N, V, 3) the packaged model's camera-space meshes of the set's first ``count`` images,
    each cropped around its true 2D joints (a detector's box)."""
    from m3dhmr.inference.images import load_image
    from m3dhmr.inference.predictor import Predictor

    K = np.asarray(json.loads((folder / "evaluation_K.json").read_text())[:count])
    xyz = np.asarray(json.loads((folder / "evaluation_xyz.json").read_text())[:count])
    uv = np.einsum("nxy,njy->njx", K, xyz)
    uv = uv[..., :2] / uv[..., 2:]
    boxes = np.concatenate([uv.min(1), uv.max(1) - uv.min(1)], axis=1)
    images = [load_image(folder / "evaluation" / "rgb" / f"{i:08d}.jpg") for i in range(len(K))]
    predictor = Predictor.from_pretrained()
    results = [predictor.predict(image, K=K[i], hand_box=box)[0] for i, (image, box) in enumerate(zip(images, boxes))]
    return np.stack([r.vertices for r in results])


def load_set(folder: Path, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, V, 3) vertices, (N, 16, 3) generating local values (FreiHAND kinematic order), (N, 3) global."""
    verts = np.asarray(json.loads((folder / "evaluation_verts.json").read_text())[:count], dtype=np.float64)
    params = json.loads((folder / "evaluation_params.json").read_text())[:count]
    local = np.stack([np.asarray(p["pose"]).reshape(16, 3) for p in params])
    glob = np.stack([np.asarray(p["global_rotation"]) for p in params])
    return verts, local, glob


def angle_errors(fit, hand, local: np.ndarray, glob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 16) geodesic degrees per joint (row 0: global) and (N, 15, 3) component degrees."""
    order = hand.freihand_order()
    frames = hand.frames[order].double()
    a = torch.as_tensor(local)
    true = batch_rodrigues(torch.einsum("jxy,bjy->bjx", frames, a))
    true[:, 0] = batch_rodrigues(torch.as_tensor(glob))
    rel = true.transpose(-1, -2) @ fit.rotations.double()
    cos = ((torch.diagonal(rel, dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0).clamp(-1.0, 1.0)
    geo = torch.rad2deg(torch.arccos(cos)).numpy()
    comp = np.degrees(np.abs(fit.anatomical.double().numpy()[:, 1:] - local[:, 1:]))
    return geo, comp


def report(name: str, fit, hand, local, glob, clean: np.ndarray | None) -> tuple[float, float]:
    geo, comp = angle_errors(fit, hand, local, glob)
    err = fit.error_mean_mm.double().numpy()
    print(f"\n## {name}: {len(err)} meshes")
    print(f"fit error to the given mesh: mean {err.mean():.3f} mm, worst hand's max "
          f"{fit.error_max_mm.double().max():.3f} mm, poor fits {int(fit.poor.sum())}")
    recovered = err.mean()
    if clean is not None:
        d = np.linalg.norm(fit.vertices.double().numpy() - clean, axis=-1) * cv.MM_PER_M
        recovered = d.mean()
        print(f"fit error to the clean mesh: mean {recovered:.3f} mm, max {d.max():.3f} mm")
    kinds = {"global": [0]}
    for k, j in enumerate(cv.KINEMATIC_JOINTS[1:], start=1):
        kinds.setdefault(joint_kind(j), []).append(k)
    print("| joints | geodesic mean (deg) | p95 | max |")
    print("|---|---:|---:|---:|")
    for kind, ks in kinds.items():
        g = geo[:, ks]
        print(f"| {kind} | {g.mean():.2f} | {np.percentile(g, 95):.2f} | {g.max():.2f} |")
    print(f"| all 16 | {geo.mean():.2f} | {np.percentile(geo, 95):.2f} | {geo.max():.2f} |")
    c = comp.reshape(-1, 3)
    print("finger components, mean (max) deg: " + ", ".join(
        f"{n} {c[:, i].mean():.2f} ({c[:, i].max():.2f})" for i, n in enumerate(("flexion", "abduction", "twist"))))
    return float(recovered), float(geo.mean())


def time_fits(model, verts: torch.Tensor, batch: int, repeats: int) -> float:
    """Median seconds per hand of fitting ``batch`` meshes at once."""
    times = []
    fit_hand(model, verts[:batch])                       # warm-up (caches, allocator)
    for r in range(repeats):
        start = (r * batch) % max(1, len(verts) - batch + 1)
        chunk = verts[start:start + batch]
        t0 = time.perf_counter()
        fit_hand(model, chunk)
        times.append((time.perf_counter() - t0) / len(chunk))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="an m3dhmr synth folder (default: render one)")
    p.add_argument("--count", type=int, default=200, help="evaluation meshes to use")
    p.add_argument("--noise-mm", type=float, default=5.0, help="Gaussian noise per coordinate, mm")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from m3dhmr.hardware import cpu_summary

    print(f"# cpu: {cpu_summary()}", flush=True)  # every figure with its processor

    with tempfile.TemporaryDirectory(prefix="m3dhmr-fit-bench-") as tmp:
        folder = args.data
        if folder is None:
            from m3dhmr.data.synth import generate

            folder = generate(Path(tmp) / "synth", 0, args.count, seed=11, workers=2, progress=False)
        verts, local, glob = load_set(Path(folder), args.count)
        predicted = network_meshes(Path(folder), args.count)
    model = load_open_hand()
    hand = articulated_hand(model)
    settings = FitSettings()
    print(f"# fit_hand on {len(verts)} meshes of {folder} ({settings.iterations} iterations, "
          f"{settings.max_vertices} vertices in the residual, {settings.dtype}), torch threads {torch.get_num_threads()}")
    v = torch.as_tensor(verts)
    clean_mm, clean_deg = report("clean meshes", fit_hand(model, v, settings=settings), hand, local, glob, None)
    rng = np.random.default_rng(args.seed)
    noisy = v + torch.as_tensor(rng.normal(0.0, args.noise_mm / cv.MM_PER_M, size=verts.shape))
    noisy_mm, noisy_deg = report(f"{args.noise_mm:g} mm noise per coordinate", fit_hand(model, noisy, settings=settings),
                                 hand, local, glob, verts)
    net = fit_hand(model, torch.as_tensor(predicted), settings=settings)
    print(f"\n## the packaged model's predictions of the same {len(predicted)} images\n"
          f"fit error to the predicted mesh: mean {float(net.error_mean_mm.mean()):.3f} mm (median hand "
          f"{float(net.error_mean_mm.median()):.3f} mm), poor fits {int(net.poor.sum())}")
    b1 = time_fits(model, v, 1, 40) * 1e3
    b64 = time_fits(model, v, min(64, len(v)), 6) * 1e3
    print(f"\n## speed\nfit_ms_batch1={b1:.2f}\nfit_ms_per_hand_batch64={b64:.3f}")
    results = {"clean_mm": clean_mm, "clean_deg": clean_deg, "noisy_mm": noisy_mm, "noisy_deg": noisy_deg,
               "batch1_ms": b1, "batch64_ms": b64}
    print("\n## targets (angles: mean geodesic error over the 16 joints)")
    for k, target in TARGETS.items():
        print(f"{k}: {results[k]:.3f} <= {target:g} {'PASS' if results[k] <= target else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
