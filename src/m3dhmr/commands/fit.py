"""``m3dhmr fit VERTS.json --out DIR``: joint rotations and a rigged hand for saved meshes.

``VERTS.json`` is a list of (V, 3) right-hand meshes in metres, as FreiHAND's
``*_verts.json`` (or one mesh). Each is fitted by :func:`m3dhmr.hand.fit.fit_hand` with
the hand model of ``--template`` (``open_hand``, the default, or ``mano:/path/MANO_RIGHT.pkl``).
Writes ``DIR/pose.json`` (one entry per mesh: per-joint rotations as axis-angle,
quaternion and matrix, anatomical angles, shape, translation and fit error) and
``DIR/%08d.glb`` (the rigged hand posed like the mesh; ``--no-glb`` skips them), and
prints ``fit_error_mm_mean=...`` and ``fit_error_mm_max=...`` last.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from m3dhmr.errors import InputError, UserError
from m3dhmr.fileio import atomic_write_text, check_output_folder, read_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("verts", metavar="VERTS.json", help="a JSON list of (V, 3) meshes in metres")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--template", default="open_hand",
                        help="hand model: open_hand (default), mano (the pickle at $M3DHMR_MANO) or "
                             "mano:/path/MANO_RIGHT.pkl")
    parser.add_argument("--left", action="store_true", help="the meshes are left hands (fitted mirrored)")
    parser.add_argument("--batch-size", type=int, default=256, help="meshes fitted at once (default 256)")
    parser.add_argument("--no-glb", action="store_true", help="write pose.json only")


#: Largest coordinate (metres, absolute) accepted in VERTS.json: hands are within a few
#: metres of any camera or origin; 1e300 would overflow the fit.
MAX_ABS_COORD_M = 100.0


def read_meshes(path):
    """(N, V, 3) float64 from a JSON list of (V, 3) meshes (or a single mesh); a finite
    coordinate beyond :data:`MAX_ABS_COORD_M` metres is a ValueError naming the file, mesh
    and vertex."""
    # heavy: NumPy and torch load when the command runs, so m3dhmr --help stays fast
    import numpy as np

    path = Path(path)
    data = read_json(path)
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise InputError(f"{path}: expected a list of (V, 3) meshes of numbers; the meshes differ in size "
                         f"or hold non-numbers ({e})") from e
    if arr.size == 0:
        raise InputError(f"{path}: the list of meshes is empty")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"{path}: expected a list of (V, 3) meshes, got an array of shape {arr.shape}")
    # NaN and infinity are refused by fit_hand, per batch of meshes (naming them).
    with np.errstate(invalid="ignore"):
        big = np.isfinite(arr) & (np.abs(arr) > MAX_ABS_COORD_M)
    if big.any():
        i, v, k = np.argwhere(big)[0]
        raise InputError(f"{path}: mesh {i}, vertex {v}: coordinate {'xyz'[k]} = {arr[i, v, k]:.6g} is beyond "
                         f"{MAX_ABS_COORD_M:g} m; the meshes must be in metres "
                         f"({int(big.any(axis=(1, 2)).sum())} such mesh(es))")
    return arr


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from m3dhmr.export import write_glb
    from m3dhmr.export.from_fit import fit_rig
    from m3dhmr.hand.fit import fit_hand
    from m3dhmr.hand.load import load_hand_model

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not Path(args.verts).is_file():
        raise FileNotFoundError(f"file not found: {args.verts}")
    # A bad --out (a file, under a file, not writable) is one line before any work.
    out = check_output_folder(args.out, "--out")
    meshes = read_meshes(args.verts)
    model = load_hand_model(args.template)
    if meshes.shape[1] != model.num_vertices:
        raise UserError(f"{args.verts}: meshes have {meshes.shape[1]} vertices but the {args.template} hand has "
                        f"{model.num_vertices}: pass the template the meshes are in (--template)")
    if args.left:
        meshes = meshes * np.array([-1.0, 1.0, 1.0])
    # Every mesh is fitted before anything is written: bad input leaves no file behind.
    fits = []
    for start in range(0, len(meshes), args.batch_size):
        chunk = torch.as_tensor(meshes[start:start + args.batch_size])
        try:
            fits.append((start, fit_hand(model, chunk)))
        except ValueError as e:
            raise InputError(f"{args.verts}, meshes {start}..{start + len(chunk) - 1}: {e}") from e
    entries, means, maxes = [], [], []
    for start, fit in fits:
        for i in range(len(fit)):
            entries.append({"index": start + i, "mirrored": bool(args.left), **fit.to_json(i)})
            if not args.no_glb:
                rig, g = fit_rig(fit, i)
                write_glb(out / f"{start + i:08d}.glb", rig, g, mirror=args.left, name=f"hand_{start + i:08d}")
        means.append(fit.error_mean_mm.double())
        maxes.append(fit.error_max_mm.double())
    atomic_write_text(out / "pose.json", json.dumps(entries, indent=1))
    mean = torch.cat(means)
    worst = torch.cat(maxes)
    poor = sum(e["poor_fit"] for e in entries)
    print(f"fitted {len(entries)} mesh(es) with the {model.pose_convention} hand -> {out}"
          + (f"; {poor} poor fit(s)" if poor else ""))
    print(f"fit_error_mm_mean={float(mean.mean()):.4f}")
    print(f"fit_error_mm_max={float(worst.max()):.4f}")
    return 0
