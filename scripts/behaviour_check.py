"""Fingerprint the package's behaviour on fixed inputs, to check a refactoring changes nothing.

    .venv/bin/python scripts/behaviour_check.py --write outputs/behaviour.json   # before
    .venv/bin/python scripts/behaviour_check.py --check outputs/behaviour.json   # after

Covers the whole road on inputs that need no download: the synthetic generator (a tiny
set, seed 0), a tiny model trained 6 steps on it (both stages, the loader and the
in-memory pipelines: losses and final weights), the packaged model through the
Predictor (detector path and given box), ``m3dhmr eval`` on the set's evaluation split
(predictions and FreiHAND metrics), and the torch and NumPy registration on fixed
random inputs. ``--check`` compares every number to ``--atol`` / ``--rtol`` (1e-6) and
prints the first differences; exit status 1 when any differs. Numbers are as this
machine computes them: compare runs on one machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

TINY = """\
model: {backbone: resnet18, input_size: 64, stack_channels: 16, stack2_channels: [16, 16, 32],
        latent_channels: 32, decoder_channels: [8, 8, 16, 16], dsc_kernels: 2}
train: {batch_size: 4, stage1_epochs: 1, epochs: 2, lr_milestones: [1], seed: 3, log_every: 1}
data: {num_workers: 0, pipeline: PIPELINE, two_view: TWO_VIEW, augment: {rotation_deg: 30.0}}
"""


def _arr(x) -> list:
    return np.asarray(x, dtype=np.float64).round(12).tolist()


def fingerprint(work: Path) -> dict:
    import torch

    import m3dhmr
    from m3dhmr.cli import main as cli
    from m3dhmr.data.synth import generate
    from m3dhmr.geometry.registration import register_camera_space
    from m3dhmr.geometry.registration_numpy import register_camera_space_numpy
    from m3dhmr.inference.speed import whole_image_frame
    from m3dhmr.experiment import load_experiment
    from m3dhmr.train.trainer import train
    from safetensors.torch import load_file

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    out: dict = {}
    data = generate(work / "data", 8, 4, seed=0, workers=1, progress=False)
    out["synth_xyz"] = _arr(json.loads((data / "training_xyz.json").read_text()))
    out["synth_pixels"] = float(sum(np.frombuffer(p.read_bytes(), np.uint8).sum()
                                    for p in sorted((data / "training" / "rgb").glob("*.jpg"))))

    for pipeline, two_view in (("loader", "true"), ("memory", "false")):
        cfg_path = work / f"tiny_{pipeline}.yaml"
        cfg_path.write_text(TINY.replace("PIPELINE", pipeline).replace("TWO_VIEW", two_view))
        res = train(load_experiment(cfg_path), data, work / f"run_{pipeline}", progress_bar=False)
        out[f"train_{pipeline}_losses"] = {k: float(v) for k, v in sorted(res.last_losses.items())}
        w = load_file(work / f"run_{pipeline}" / "checkpoints" / "last.safetensors")
        out[f"train_{pipeline}_weights"] = {k: [float(v.double().sum()), float(v.double().abs().sum())]
                                            for k, v in sorted(w.items()) if v.is_floating_point()}

    predictor = m3dhmr.Predictor.from_pretrained()
    frame = whole_image_frame()
    for i, r in enumerate(predictor.predict(frame)):
        out[f"predict_detected_{i}"] = {"vertices": _arr(r.vertices), "joints2d": _arr(r.joints2d),
                                        "hand_box": _arr(r.hand_box), "handedness": r.handedness}
    [r] = predictor.predict(frame, hand_box=(280, 120, 200, 260))
    out["predict_box"] = {"vertices": _arr(r.vertices), "joints2d": _arr(r.joints2d), "box": _arr(r.crop_box)}

    assert cli(["eval", "--data", str(data), "--out", str(work / "eval")]) == 0
    out["eval_metrics"] = json.loads((work / "eval" / "metrics.json").read_text())
    out["eval_pred"] = json.loads((work / "eval" / "pred.json").read_text())

    g = torch.Generator().manual_seed(0)
    j3 = torch.randn(5, 21, 3, generator=g, dtype=torch.float64) * 0.04
    t = torch.tensor([0.02, -0.01, 0.5], dtype=torch.float64) + torch.rand(5, 3, generator=g, dtype=torch.float64) * 0.1
    K = torch.tensor([[500.0, 0, 112], [0, 500, 112], [0, 0, 1]], dtype=torch.float64).expand(5, 3, 3)
    p = (j3 + t[:, None]) @ K.transpose(1, 2)
    j2 = p[..., :2] / p[..., 2:] + torch.randn(5, 21, 2, generator=g, dtype=torch.float64)
    reg = register_camera_space(j3, j2, K)
    out["registration_torch"] = _arr(reg.translation)
    out["registration_numpy"] = _arr(register_camera_space_numpy(j3.numpy(), j2.numpy(), K.numpy()).translation)
    return out


def _compare(a, b, path: str, atol: float, rtol: float, diffs: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                diffs.append(f"{path}/{k}: only in {'the reference' if k in a else 'this run'}")
            else:
                _compare(a[k], b[k], f"{path}/{k}", atol, rtol, diffs)
    elif isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        if a != b:
            diffs.append(f"{path}: {a!r} != {b!r}")
    else:
        try:
            x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        except ValueError:  # ragged lists (e.g. pred.json's [joints, vertices]): item by item
            if len(a) != len(b):
                diffs.append(f"{path}: length {len(a)} != {len(b)}")
            for i, (u, v) in enumerate(zip(a, b)):
                _compare(u, v, f"{path}[{i}]", atol, rtol, diffs)
            return
        if x.shape != y.shape:
            diffs.append(f"{path}: shape {x.shape} != {y.shape}")
        elif not np.allclose(x, y, atol=atol, rtol=rtol):
            diffs.append(f"{path}: max abs difference {np.abs(x - y).max():.3g}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path)
    mode.add_argument("--check", type=Path)
    ap.add_argument("--atol", type=float, default=1e-6)
    ap.add_argument("--rtol", type=float, default=1e-6)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="m3dhmr-behaviour-") as tmp:
        fp = fingerprint(Path(tmp))
    if args.write:
        from m3dhmr.fileio import atomic_write_text

        atomic_write_text(args.write, json.dumps(fp))
        print(f"wrote {args.write} ({len(fp)} entries)")
        return 0
    diffs: list[str] = []
    _compare(json.loads(args.check.read_text()), fp, "", args.atol, args.rtol, diffs)
    for d in diffs[:30]:
        print(d)
    print(f"behaviour_unchanged={not diffs} ({len(diffs)} differences)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
