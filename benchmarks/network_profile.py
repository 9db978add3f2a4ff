"""Where the exported network's time goes: ONNX Runtime's own profile of the packaged model,
fp32 and int8, per operator type and per part of the network (issue 23).

    .venv/bin/python benchmarks/network_profile.py [--runs 100] [--threads 1]

For each precision: the median time of a batch-1 crop (``ms_median_<precision>``), then a
profiled session's kernel time per operator type and per scope (the first four levels of
the node names: ``/model/backbone/layers.3``, ``/model/decoder/convs.1``, ...), each as
milliseconds per run. The network's GFLOP per crop (:func:`m3dhmr.inference.speed.network_gflop`)
is printed first, so a scope's time can be set against the arithmetic it does. One thread
by default: the split between the parts is clearest without the thread pool's scheduling.
The files are the Predictor's cached exports (built on first use, ~1 min for int8).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def profile(path: Path, size: int, runs: int, threads: int) -> tuple[float, dict[str, float], dict[str, float]]:
    """Median ms of a run on a (1, 3, size, size) crop, then ms per run by operator type and
    by scope (profiled runs)."""
    import onnxruntime as ort

    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)

    def session(profile_prefix: str | None):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if profile_prefix:
            so.enable_profiling, so.profile_file_prefix = True, profile_prefix
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    plain = session(None)
    name = plain.get_inputs()[0].name
    for _ in range(10):
        plain.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        plain.run(None, {name: x})
        times.append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        prof = session(str(Path(tmp) / "ort"))
        for _ in range(runs):
            prof.run(None, {name: x})
        events = json.loads(Path(prof.end_profiling()).read_text())
    by_op, by_scope = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        node = e["name"][:-len("_kernel_time")]
        ms = e["dur"] / 1000.0 / runs
        by_op[e["args"].get("op_name", "?")] += ms
        by_scope["/".join(node.split("/")[:4]) if node.startswith("/") else "(graph)"] += ms
    return 1000.0 * statistics.median(times), dict(by_op), dict(by_scope)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="timed and profiled runs per precision")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--top", type=int, default=12, help="rows per table")
    args = parser.parse_args()
    if args.runs < 1 or args.threads < 1 or args.top < 1:
        parser.error("--runs, --threads and --top must be >= 1")

    from m3dhmr.hardware import cpu_summary
    from m3dhmr.inference.quantize import cached_network_file
    from m3dhmr.inference.speed import network_gflop
    from m3dhmr.pretrained import DEFAULT_MODEL, load_pretrained

    model, exp = load_pretrained(DEFAULT_MODEL, "cpu")
    print(f"# cpu: {cpu_summary()}; threads={args.threads}; runs={args.runs}")
    print(f"gflop_per_crop={network_gflop(model.eval(), exp.model.input_size):.3f}")
    for precision in ("fp32", "int8"):
        with cached_network_file(model, precision=precision) as path:
            median, by_op, by_scope = profile(Path(path), exp.model.input_size, args.runs, args.threads)
        print(f"ms_median_{precision}={median:.2f}")
        print(f"# {precision}: profiled kernel time {sum(by_op.values()):.2f} ms per run")
        for title, table in (("operator", by_op), ("scope", by_scope)):
            for key, ms in sorted(table.items(), key=lambda kv: -kv[1])[:args.top]:
                print(f"#   {title:8s} {key:44s} {ms:6.2f} ms")


if __name__ == "__main__":
    main()
