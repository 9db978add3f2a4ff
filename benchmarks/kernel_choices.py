"""The speed ratios behind two implementation choices, measured side by side (one thread).

- ``vertex_normals_numba_speedup``: the renderer's compiled
  :func:`m3dhmr.render.shading.vertex_normals` against the NumPy
  :func:`m3dhmr.geometry.mesh_normals.vertex_normals` on the open hand's mesh (why the
  render path keeps its own).
- ``dense_skinning_speedup_b64``: :func:`m3dhmr.hand.kinematics.linear_blend_skinning`
  (dense weights, the hand models) against :func:`~m3dhmr.hand.kinematics.influence_skinning`
  (each vertex's 4 influences, which the fit's Jacobian needs), the open hand's vertex count,
  batch 64, forward and backward (why there are two).

Each pair alternates call by call; medians. Run: ``.venv/bin/python benchmarks/kernel_choices.py``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _paired(a, b, repeats: int) -> tuple[float, float]:
    """Median seconds of ``a()`` and ``b()``, called in turn ``repeats`` times after a warm-up."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        t = time.perf_counter(); a(); ta.append(time.perf_counter() - t)
        t = time.perf_counter(); b(); tb.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def normals(repeats: int) -> tuple[float, float]:
    from m3dhmr.geometry.mesh_normals import vertex_normals as numpy_normals
    from m3dhmr.hand.load import load_template
    from m3dhmr.render.shading import vertex_normals as compiled_normals

    t = load_template("open_hand")
    v, f = np.asarray(t.vertices, np.float64), np.asarray(t.faces, np.int64)
    return _paired(lambda: numpy_normals(v, f), lambda: compiled_normals(v, f), repeats)


def skinning(repeats: int, batch: int = 64, influences: int = 4) -> tuple[float, float]:
    from m3dhmr.hand.kinematics import batch_rodrigues, linear_blend_skinning, influence_skinning
    from m3dhmr.hand.load import load_template

    V, J = int(np.asarray(load_template("open_hand").vertices).shape[0]), 16
    g = torch.Generator().manual_seed(1)
    ids = torch.stack([torch.randperm(J, generator=g)[:influences] for _ in range(V)])          # (V, K)
    w = torch.rand(V, influences, generator=g)
    w = w / w.sum(1, keepdim=True)
    dense = torch.zeros(V, J).scatter_(1, ids, w)                                              # (V, J)
    rest = torch.randn(batch, V, 3, generator=g) * 0.05
    world = batch_rodrigues(torch.randn(batch, J, 3, generator=g))
    offsets = torch.randn(batch, J, 3, generator=g) * 0.05
    transforms = torch.zeros(batch, J, 4, 4)
    transforms[..., :3, :3], transforms[..., :3, 3], transforms[..., 3, 3] = world, offsets, 1.0
    transforms.requires_grad_(True)
    world, offsets = world.requires_grad_(True), offsets.requires_grad_(True)

    def run_dense():
        linear_blend_skinning(rest, dense, transforms).square().sum().backward()

    def run_influence():
        influence_skinning(rest, world, offsets, ids, w)[0].square().sum().backward()

    out_d = linear_blend_skinning(rest, dense, transforms)
    out_i = influence_skinning(rest, world, offsets, ids, w)[0]
    if not torch.allclose(out_d, out_i, atol=1e-5):
        raise AssertionError("the two skinning functions disagree: the comparison would be meaningless")
    return _paired(run_dense, run_influence, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="calls of each side (default 20)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    torch.set_num_threads(1)
    from m3dhmr.hardware import cpu_summary

    print(f"# cpu: {cpu_summary()}", flush=True)  # every figure with its processor
    numpy_s, numba_s = normals(args.repeats * 10)
    print(f"vertex_normals_ms_numpy={numpy_s * 1e3:.3f}\nvertex_normals_ms_numba={numba_s * 1e3:.3f}")
    dense_s, infl_s = skinning(args.repeats)
    print(f"skinning_ms_dense_b64={dense_s * 1e3:.2f}\nskinning_ms_influence_b64={infl_s * 1e3:.2f}")
    print(f"vertex_normals_numba_speedup={numpy_s / numba_s:.1f}")
    print(f"dense_skinning_speedup_b64={infl_s / dense_s:.2f}")


if __name__ == "__main__":
    main()
