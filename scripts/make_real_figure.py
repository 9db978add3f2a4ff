"""The README's real-photo picture: held-out sign-language digit photos with the mesh over them.

One held-out photo per digit (persons never trained on; ``m3dhmr.data.sign_digits``),
predicted as ``m3dhmr predict`` does (the packaged detector finds the hand, no box given),
each shown as the photo, the mesh and skeleton over it, and the mesh from the side.
The photos are from the Sign Language Digits Dataset (Apache-2.0, Mavi 2020); the picture
is for the docs only (never in the package).

    .venv/bin/python scripts/make_real_figure.py [--checkpoint CKPT] [--root ../shared/data/sign-language-digits]
        [--pick 0] [--out docs/images/real_photos.jpg]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "sign-language-digits"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the packaged model")
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--pick", type=int, default=0, help="which held-out photo of each digit (its index, spread)")
    ap.add_argument("--size", type=int, default=200, help="tile side in pixels")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "real_photos.jpg")
    args = ap.parse_args()

    import cv2

    from m3dhmr import Predictor, viz
    from m3dhmr.data.sign_digits import digit_of, split_by_person
    from m3dhmr.inference.images import load_image
    from m3dhmr.inference.outputs import write_image

    predictor = Predictor.from_pretrained() if args.checkpoint is None else Predictor.from_checkpoint(args.checkpoint)
    heldout = split_by_person(args.root)["heldout"]
    tiles = []
    for d in range(10):
        photos = [p for p in heldout if digit_of(p) == d]
        path = photos[(args.pick * 37 + d * 11) % len(photos)]  # spread over persons, reproducible
        image = cv2.resize(load_image(path), (args.size, args.size), interpolation=cv2.INTER_CUBIC)
        hands = predictor.predict(image)[:1]
        side = (viz.render_front_side(hands[0].vertices, hands[0].faces, args.size)[1] if hands
                else np.full_like(image, 255))
        panel = viz.make_panel([image, viz.draw_hands(image, hands), side], height=args.size)
        cv2.putText(panel, str(d), (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(panel)
        print(f"digit {d}: {path.name}: " + (f"{hands[0].quality_flag}" if hands else "no hand found"))
    w = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 4), (0, w - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
    # two columns of five digits
    left, right = np.concatenate(tiles[:5], 0), np.concatenate(tiles[5:], 0)
    figure = np.concatenate([left, np.full((left.shape[0], 8, 3), 255, np.uint8), right], 1)
    write_image(args.out, np.ascontiguousarray(figure), quality=85)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
