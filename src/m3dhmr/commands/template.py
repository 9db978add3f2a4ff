"""``m3dhmr template --out DIR``: write a hand template folder.

Sources: the open hand (default), MANO (``--mano MANO_RIGHT.pkl``, read without
chumpy), or any right-hand mesh with a 21-joint regressor (``--mesh template.ply
--joint-regressor j_reg.npy``; see :func:`m3dhmr.hand.load.template_from_mesh` for
what the network then uses as its rest shape). Writes ``template.ply``, ``j_reg.npy``
(21, V), ``regions.npy`` (V,) and, when the source has them, ``skinning_weights.npy``
(V, 16); ``--template DIR`` (or ``model.template: DIR``) uses the folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from m3dhmr.errors import InputError, UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--mano", default=None, metavar="MANO_RIGHT.pkl",
                     help="write MANO's template instead of the open hand (read without chumpy)")
    src.add_argument("--mesh", default=None, metavar="MESH",
                     help="a right-hand mesh (.ply/.obj, any pose and place) to make the template from")
    parser.add_argument("--joint-regressor", default=None, metavar="J_REG.npy",
                        help="with --mesh: the (21, V) joint regressor, FreiHAND's joint order")
    parser.add_argument("--name", default=None, help="template name (default: the output folder's name)")


def run(args: argparse.Namespace) -> int:
    # heavy: the hand models (torch, scipy) load when the command runs, so m3dhmr --help stays fast
    import numpy as np

    from m3dhmr.hand.load import load_template, template_from_mesh
    from m3dhmr.hand.template import write_template_dir
    from m3dhmr.mesh.io import read_mesh

    if (args.mesh is None) != (args.joint_regressor is None):
        raise UserError("--mesh and --joint-regressor go together")
    if args.mesh is not None:
        mesh, reg_path = Path(args.mesh), Path(args.joint_regressor)
        for p in (mesh, reg_path):
            if not p.is_file():
                raise FileNotFoundError(f"file not found: {p}")
        vertices, faces = read_mesh(mesh)
        try:
            reg = np.load(reg_path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InputError(f"{reg_path}: not a readable .npy array ({e})") from e
        template = template_from_mesh(vertices, faces, reg, name=args.name or Path(args.out).name,
                                      where=f"{mesh} with {reg_path}")
    else:
        template = load_template(f"mano:{args.mano}" if args.mano else "open_hand")
    written = write_template_dir(args.out, template)
    print(f"{template.name}: {template.num_vertices} vertices, {len(template.faces)} faces")
    for p in written:
        print(f"wrote {p}")
    return 0
