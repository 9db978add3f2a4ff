"""Time to build the topology bundle cold (no cache) and to load it from the cache.

Uses the open hand template when ``m3dhmr.hand.load_template`` works, else a procedural
closed ~900-vertex capsule with a synthetic joint regressor. Prints ``name=value`` last.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def _template():
    try:
        from m3dhmr.hand import load_template

        t = load_template("open_hand")
        return "open_hand", t.vertices, t.faces, t.joint_regressor, t.regions
    except Exception as e:  # noqa: BLE001 - any failure means: fall back to the procedural mesh
        print(f"open_hand unavailable ({type(e).__name__}: {e}); using a procedural capsule")
    import trimesh

    m = trimesh.creation.capsule(height=0.12, radius=0.03, count=[30, 30])
    v = np.asarray(m.vertices, dtype=np.float64)
    f = np.asarray(m.faces, dtype=np.int64)
    # 21 joints as single vertices along the capsule, so nearest-bone regions exist.
    order = np.argsort(v[:, 2], kind="stable")
    reg = np.zeros((21, v.shape[0]))
    reg[np.arange(21), order[np.linspace(0, v.shape[0] - 1, 21).astype(int)]] = 1.0
    return "capsule", v, f, reg, None


def main() -> None:
    from m3dhmr.hardware import cpu_summary

    print(f"# cpu: {cpu_summary()}", flush=True)  # every figure with its processor
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="cold builds to time (best is reported)")
    args = parser.parse_args()

    from m3dhmr.mesh import TopologyParams, build_topology, load_or_build_topology

    name, v, f, reg, regions = _template()
    params = TopologyParams(levels=4)
    build_topology(v, f, reg, params, regions=regions)  # warm imports (fast_simplification, scipy.spatial)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        b = build_topology(v, f, reg, params, regions=regions)
        times.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as d:
        load_or_build_topology(v, f, reg, params, regions=regions, cache_dir=d)
        loads = []
        for _ in range(5):
            t0 = time.perf_counter()
            load_or_build_topology(v, f, reg, params, regions=regions, cache_dir=d)
            loads.append(time.perf_counter() - t0)
        size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print(f"template={name} vertices per level={[x.shape[0] for x in b.vertices]} "
          f"faces per level={[x.shape[0] for x in b.faces]} bundle_bytes={size} load_avg_1min={os.getloadavg()[0]:.1f}")
    print(f"cold builds (s): {' '.join(f'{t:.3f}' for t in times)}")
    print(f"topology_build_s={min(times):.3f}")
    print(f"topology_cache_load_s={min(loads):.4f}")


if __name__ == "__main__":
    main()
