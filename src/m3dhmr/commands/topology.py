"""``m3dhmr topology``: build a template's topology bundle and print a summary."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from m3dhmr.errors import InputError, UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("template", metavar="TEMPLATE",
                        help="a mesh file (.ply/.obj), or a template name/folder for m3dhmr.hand.load_template "
                             "(e.g. open_hand)")
    parser.add_argument("--joint-regressor", type=Path, default=None, metavar="J.npy",
                        help="(21, V) joint regressor, FreiHAND joint order (needed for a mesh file)")
    parser.add_argument("--regions", type=Path, default=None, metavar="R.npy",
                        help="(V,) region labels 0..5; default: from the template, else nearest bone")
    parser.add_argument("--levels", type=int, default=4, help="mesh levels including the full mesh (default 4)")
    parser.add_argument("--factor", type=float, default=2.0, help="vertex ratio between levels (default 2)")
    parser.add_argument("--spiral-length", type=int, default=9, help="spiral length S (default 9)")
    parser.add_argument("--dilation", type=int, default=1, help="spiral dilation (default 1)")
    parser.add_argument("--roi-spiral-length", type=int, default=9, help="ROI spiral length (default 9)")
    parser.add_argument("--roi-dilation", type=int, default=2, help="ROI spiral dilation (default 2)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="output bundle (.npz)")


def _load_npy(path: Path, what: str):
    # heavy: NumPy and the mesh modules (scipy) load when the command runs, so m3dhmr --help stays fast
    import numpy as np

    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npy array for {what} ({e})") from e


def run(args: argparse.Namespace) -> int:
    from m3dhmr.mesh import TopologyParams, build_topology, read_mesh, save_bundle
    from m3dhmr.mesh.io import SUFFIXES

    if args.out.suffix.lower() != ".npz":
        raise UserError(f"--out must end in .npz, got {args.out}")
    try:
        params = TopologyParams(levels=args.levels, factor=args.factor, spiral_length=args.spiral_length,
                                dilation=args.dilation, roi_spiral_length=args.roi_spiral_length,
                                roi_dilation=args.roi_dilation)
    except ValueError as e:
        raise UserError(str(e)) from e

    regressor = skinning = regions = joint_region = None
    if Path(args.template).suffix.lower() in SUFFIXES:
        vertices, faces = read_mesh(args.template)
        if args.joint_regressor is None and args.regions is None:
            raise UserError(f"{args.template}: a plain mesh has no regions; pass --regions R.npy, or "
                            "--joint-regressor J.npy to derive them from the nearest bone")
        if args.joint_regressor is None:
            raise UserError(f"{args.template}: the bundle stores a joint regressor; pass --joint-regressor J.npy")
        name = str(args.template)
    else:
        try:
            from m3dhmr.hand import load_template  # imported only for named templates
        except ImportError as e:
            raise UserError(f"{args.template!r} is not a .ply/.obj file and the template loader "
                            f"m3dhmr.hand.load_template is unavailable ({e})") from e
        template = load_template(args.template)
        vertices, faces = template.vertices, template.faces
        regressor = template.joint_regressor
        regions = getattr(template, "regions", None)
        skinning = getattr(template, "skinning_weights", None)
        joint_region = getattr(template, "joint_region", None)
        if skinning is not None and joint_region is None:
            skinning = None  # no mapping from its skinning joints to regions: use regions/bones
        name = getattr(template, "name", str(args.template))
    if args.joint_regressor is not None:
        regressor = _load_npy(args.joint_regressor, "--joint-regressor")
    if args.regions is not None:
        regions = _load_npy(args.regions, "--regions")

    t0 = time.perf_counter()
    bundle = build_topology(vertices, faces, regressor, params, skinning_weights=skinning,
                            joint_region=joint_region, regions=regions)
    elapsed = time.perf_counter() - t0
    save_bundle(args.out, bundle)

    print(f"topology of {name}: built in {elapsed:.2f} s, key {bundle.key[:16]}")
    for level, (v, f) in enumerate(zip(bundle.vertices, bundle.faces)):
        print(f"  level {level}: {v.shape[0]:6d} vertices {f.shape[0]:6d} faces  spirals {bundle.spirals[level].shape}")
    print(f"  spiral length {params.spiral_length} (dilation {params.dilation}); ROI spirals "
          f"{params.roi_spiral_length} (dilation {params.roi_dilation})")
    sizes = bundle.region_sizes()
    print("  regions: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    print(f"wrote {args.out}")
    return 0
