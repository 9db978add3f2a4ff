"""``m3dhmr template --out DIR [--mano MANO_RIGHT.pkl]``: write a hand template folder.

Writes ``template.ply``, ``j_reg.npy`` (21, V), ``regions.npy`` (V,) and
``skinning_weights.npy`` (V, 16); ``m3dhmr.hand.load_template(DIR)`` reads them back.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--mano", default=None, metavar="MANO_RIGHT.pkl",
                        help="write MANO's template instead of the open hand (read without chumpy)")


def run(args: argparse.Namespace) -> int:
    from ..hand.load import load_template
    from ..hand.template import write_template_dir

    template = load_template(f"mano:{args.mano}" if args.mano else "open_hand")
    written = write_template_dir(args.out, template)
    print(f"{template.name}: {template.num_vertices} vertices, {len(template.faces)} faces")
    for p in written:
        print(f"wrote {p}")
    return 0
