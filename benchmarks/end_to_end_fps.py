"""End-to-end frames per second of M3DHMR ResNet18 (random weights) at batch 1 on CPU:
PyTorch and ONNX Runtime side by side, per stage. Same as ``m3dhmr bench``; pass its
options (e.g. ``--config configs/m3dhmr_r18.yaml --seconds 20``). Figures are printed last
as ``name=value`` lines, among them ``fps_end_to_end_torch`` and ``fps_end_to_end_onnxruntime``.
"""

import sys

from m3dhmr.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
