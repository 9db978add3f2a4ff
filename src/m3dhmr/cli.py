"""The ``m3dhmr`` command line: one subcommand per module in :mod:`m3dhmr.commands`.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``; the
one-line help of every command is here, in :data:`COMMANDS`. Modules are imported only when their command runs, so
``m3dhmr --help`` stays fast and a heavy import never slows another command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from m3dhmr.errors import InputError, UserError
from m3dhmr.fileio import FolderInUseError, os_error_message

#: Command name -> (module under ``m3dhmr.commands``, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "topology": ("topology", "build a template's topology bundle (spirals, hierarchy, regions)"),
    "template": ("template", "write the open hand (or MANO) template, joint regressor and regions"),
    "fit": ("fit", "fit joint rotations, shape and a rigged .glb to saved meshes (VERTS.json)"),
    "synth": ("synth", "render a synthetic data set in FreiHAND's layout"),
    "train": ("train", "train a model (one process, or torchrun for DDP)"),
    "eval": ("evaluate", "evaluate the packaged model, a checkpoint or a pred.json (FreiHAND protocol)"),
    "benchmark": ("synth_benchmark", "score the packaged model (or a checkpoint) on the synthetic benchmark, or on real photos (--real DIR)"),
    "predict": ("predict", "find and reconstruct the hands in images, folders or videos"),
    "export-onnx": ("export_onnx", "export the packaged model or a checkpoint to ONNX (with metadata)"),
    "bench": ("bench", "frames per second end to end and per stage"),
    "app": ("app", "a local web page: photos and clips in, hands, meshes and rigged .glb out (needs m3dhmr[app])"),
    "demo": ("demo", "the main job: score and run the packaged model, and train a small one, on built-in data"),
}


__all__ = ["COMMANDS", "UserError", "build_parser", "main"]  # UserError: kept importable from here


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (help for the rest is static)."""
    parser = argparse.ArgumentParser(prog="m3dhmr", description="Monocular 3D hand mesh recovery.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (modname, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            importlib.import_module(f"m3dhmr.commands.{modname}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        module = importlib.import_module(f"m3dhmr.commands.{COMMANDS[args.command][0]}")
        return int(module.run(args) or 0)
    except (InputError, FileNotFoundError, FolderInUseError) as e:
        # Input problems get one clear line; anything else (a ValueError deep in NumPy
        # included) is a bug and keeps its traceback (m3dhmr.errors).
        if args.verbose:
            raise
        print(f"m3dhmr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # The machine's problems (a full disk, a read-only or vanished folder): one line
        # naming the path and the cause.
        if args.verbose:
            raise
        print(f"m3dhmr {args.command}: error: {os_error_message(e) if e.errno is not None else e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"m3dhmr {args.command}: interrupted", file=sys.stderr)
        return 130
