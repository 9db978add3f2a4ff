"""How the packaged hand detector does on the synthetic benchmark (renders, not photos).

    .venv/bin/python benchmarks/detector_on_synthetic.py [--bench outputs/benchmark] [--num 200]

For each benchmark image (a right hand) and its mirror image (a left hand): whether a
hand is found, whether its handedness is right, and the mean distance of its 21
landmarks to the true 2D joints. Prints ``name=value`` lines.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", type=Path, default=REPO / "outputs" / "benchmark")
    ap.add_argument("--num", type=int, default=200)
    args = ap.parse_args()

    from m3dhmr.evaluation.benchmark import ensure_benchmark
    from m3dhmr.detect import HandDetector
    from m3dhmr.inference.images import load_image

    bench = ensure_benchmark(args.bench, 1000)
    xyz = np.asarray(json.loads((bench / "evaluation_xyz.json").read_text())[: args.num], float)
    K = np.asarray(json.loads((bench / "evaluation_K.json").read_text())[: args.num], float)
    uv = np.einsum("nij,nkj->nki", K, xyz)
    uv = uv[..., :2] / uv[..., 2:]
    det = HandDetector(max_hands=1)
    counts = {"right": [0, 0], "left": [0, 0]}  # found, handedness right
    errors = []
    for i in range(args.num):
        img = load_image(bench / "evaluation" / "rgb" / f"{i:08d}.jpg")
        W = img.shape[1]
        for side, image, truth in (("right", img, uv[i]),
                                   ("left", np.ascontiguousarray(img[:, ::-1]),
                                    np.stack([W - 1 - uv[i, :, 0], uv[i, :, 1]], 1))):
            hands = det.detect(image)
            if hands:
                counts[side][0] += 1
                counts[side][1] += hands[0].handedness == side
                errors.append(float(np.linalg.norm(hands[0].landmarks - truth, axis=1).mean()))
    n = args.num
    print(f"# {n} benchmark images of {bench} and their mirror images")
    for side, (found, right) in counts.items():
        print(f"found_{side}={found / n:.3f}")
        print(f"handedness_correct_{side}={right / max(found, 1):.3f}")
    print(f"landmark_error_px_median={np.median(errors):.2f}")
    print(f"landmark_error_px_mean={np.mean(errors):.2f}")


if __name__ == "__main__":
    main()
