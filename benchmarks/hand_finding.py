"""Finding hands in whole pictures and following them through clips: how well, how fast.

    .venv/bin/python benchmarks/hand_finding.py [--pictures 40] [--clips 6] [--frames 30] [--backend torch]

Pictures: 640 x 480 scenes over a blurred-noise background with 2-4 hands each: rendered
hands of the synthetic benchmark (``outputs/benchmark``, made on first use) as they are
(right) or mirrored (left), 110-330 px, turned up to +-30 degrees, and, where
``../shared/data/sign-language-digits`` is present, real sign-language photos (100 px
crops, pasted at 110-260 px). Printed: recall (a hand found in a pasted hand's box),
duplicates (a pasted hand found twice), false hands (found where no hand was pasted),
handedness accuracy (rendered hands, whose side is known).

Clips: 640 x 480, one or two rendered hands moving (up to ~10 px, 1.5 degrees and 1.5 %
of their size a frame), each frame predicted by the packaged network in four modes:
``detect`` (the palm detector and landmark model on every frame, as for still
pictures), ``track1`` (:class:`m3dhmr.inference.video.MultiHandTracker`, the landmark
model every frame, MediaPipe's way), ``track3`` and ``track6`` (the landmark model every
3rd / 6th frame, the network's 2D joints placing the hand in between). The modes take
turns frame by frame, so load on a shared machine hits all alike. Printed per mode:
hand-frames lost (no result on a pasted hand), the network's mean 2D joint error in
pixels and in palm lengths (wrist to middle MCP), the finding's and the network's
milliseconds per frame. ``name=value`` lines come last.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIGN = REPO.parent / "shared" / "data" / "sign-language-digits" / "Dataset"
SIZE = (480, 640)
MODES = {"detect": None, "track1": 1, "track3": 3, "track6": 6}


def background(rng) -> np.ndarray:
    return cv2.GaussianBlur(rng.integers(40, 220, (*SIZE, 3), dtype=np.uint8), (41, 41), 0)


def paste(canvas: np.ndarray, patch: np.ndarray, cx: float, cy: float, side: float, angle: float,
          joints: np.ndarray | None = None):
    """Draw the square ``patch`` at centre (cx, cy), ``side`` px, turned ``angle`` degrees;
    returns its joints (21, 2) in canvas pixels (or None) and the pasted region's box x, y, w, h."""
    n = patch.shape[0]
    A = cv2.getRotationMatrix2D((n / 2, n / 2), angle, side / n)
    A[:, 2] += [cx - n / 2, cy - n / 2]
    H, W = canvas.shape[:2]
    warped = cv2.warpAffine(patch, A, (W, H), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((n, n), 255, np.uint8), A, (W, H), flags=cv2.INTER_NEAREST) > 0
    canvas[mask] = warped[mask]
    corners = np.array([[0, 0], [n, 0], [0, n], [n, n]], float) @ A[:, :2].T + A[:, 2]
    lo, hi = corners.min(0), corners.max(0)
    j = None if joints is None else (np.asarray(joints) + 0.5) @ A[:, :2].T + A[:, 2] - 0.5
    return j, np.r_[lo, hi - lo]


class Renders:
    """Rendered right hands of the synthetic benchmark with their 2D joints."""

    def __init__(self, num: int) -> None:
        from m3dhmr.evaluation.benchmark import ensure_benchmark
        from m3dhmr.inference.images import load_image

        bench = ensure_benchmark(REPO / "outputs" / "benchmark", 1000)
        xyz = np.asarray(json.loads((bench / "evaluation_xyz.json").read_text())[:num], float)
        K = np.asarray(json.loads((bench / "evaluation_K.json").read_text())[:num], float)
        uv = np.einsum("nij,nkj->nki", K, xyz)
        self.joints = uv[..., :2] / uv[..., 2:]
        self.images = [load_image(bench / "evaluation" / "rgb" / f"{i:08d}.jpg") for i in range(num)]

    def clear(self, detector) -> list[int]:
        """The renders whose hand the detector finds with presence >= 0.9, as they are
        and mirrored, with the right side both times (the clips' hands: the modes are
        compared on following hands, not on the detector's misses on renders)."""
        keep = []
        for i in range(len(self.images)):
            sides = [detector.detect(self.get(i, left)[0]) for left in (False, True)]
            if all(len(h) == 1 and h[0].score >= 0.9 and h[0].handedness == s
                   for h, s in zip(sides, ("right", "left"))):
                keep.append(i)
        return keep

    def get(self, i: int, left: bool) -> tuple[np.ndarray, np.ndarray]:
        img, j = self.images[i], self.joints[i]
        if left:
            return np.ascontiguousarray(img[:, ::-1]), np.stack([img.shape[1] - 1 - j[:, 0], j[:, 1]], 1)
        return img, j


def sign_photos(step: int = 41) -> list[np.ndarray]:
    from m3dhmr.inference.images import load_image

    return [load_image(p) for p in sorted(SIGN.glob("*/*.JPG"))[::step]] if SIGN.is_dir() else []


def scene(rng, renders: Renders, photos: list[np.ndarray]):
    """One picture and its hands: dicts with ``box`` (x, y, w, h where the hand was
    pasted), ``side`` ("left"/"right", None for photos) and ``joints`` (21, 2) or None."""
    canvas, hands, taken = background(rng), [], []
    for _ in range(int(rng.integers(2, 5))):
        real = bool(photos) and rng.random() < 0.35
        side = float(rng.uniform(110, 260 if real else 330))
        for _try in range(30):
            cx, cy = rng.uniform(side / 2, SIZE[1] - side / 2), rng.uniform(side / 2, SIZE[0] - side / 2)
            if all(abs(cx - x) > (side + s) / 2 * 1.05 or abs(cy - y) > (side + s) / 2 * 1.05 for x, y, s in taken):
                break
        else:
            continue
        taken.append((cx, cy, side))
        angle = float(rng.uniform(-30, 30))
        if real:
            photo = photos[int(rng.integers(len(photos)))]
            _, box = paste(canvas, photo, cx, cy, side, angle)
            hands.append({"box": box, "side": None, "joints": None})
        else:
            left = bool(rng.random() < 0.5)
            img, j = renders.get(int(rng.integers(len(renders.images))), left)
            j, box = paste(canvas, img, cx, cy, side, angle, j)
            hands.append({"box": box, "side": "left" if left else "right", "joints": j})
    return canvas, hands


def match(found_points: list[np.ndarray], truths: list[dict]) -> list[list[int]]:
    """For each truth, the found hands whose landmark centroid lies in its box."""
    out = []
    for t in truths:
        x, y, w, h = t["box"]
        out.append([i for i, p in enumerate(found_points)
                    if x <= p[:, 0].mean() <= x + w and y <= p[:, 1].mean() <= y + h])
    return out


def pictures(detector, renders, photos, n: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    c = dict(hands=0, found=0, dup=0, false=0, real=0, real_found=0, sided=0, side_ok=0)
    for _ in range(n):
        img, truths = scene(rng, renders, photos)
        found = detector.detect(img)
        m = match([h.landmarks for h in found], truths)
        used = {i for ms in m for i in ms}
        c["false"] += len(found) - len(used)
        for t, ms in zip(truths, m):
            c["hands"] += 1
            c["found"] += bool(ms)
            c["dup"] += len(ms) > 1
            if t["side"] is None:
                c["real"] += 1
                c["real_found"] += bool(ms)
            elif ms:
                c["sided"] += 1
                c["side_ok"] += found[ms[0]].handedness == t["side"]
    return c


def clip(rng, renders: Renders, frames: int, pool: list[int]):
    """Frames of one or two rendered hands moving, and per frame the hands' truth dicts."""
    bg = background(rng)
    movers = []
    for k in range(int(rng.integers(1, 3))):
        left = bool(rng.random() < 0.5) if k == 0 else not movers[0]["left"]
        movers.append(dict(left=left, i=int(rng.choice(pool)),
                           c=np.array([rng.uniform(170, 230) + 260 * k, rng.uniform(180, 300)]),
                           v=rng.uniform(-1, 1, 2) * rng.uniform(3, 10), side=rng.uniform(190, 280),
                           angle=rng.uniform(-20, 20), spin=rng.uniform(-1.5, 1.5), grow=rng.uniform(-0.015, 0.015),
                           wobble=rng.uniform(0, 2 * math.pi)))
    out = []
    for f in range(frames):
        canvas, truths = bg.copy(), []
        for m in movers:
            img, j = renders.get(m["i"], m["left"])
            c = m["c"] + m["v"] * f + 12 * np.array([math.sin(0.3 * f + m["wobble"]), math.cos(0.2 * f)])
            side = m["side"] * (1 + m["grow"]) ** f
            j, box = paste(canvas, img, c[0], c[1], side, m["angle"] + m["spin"] * f, j)
            truths.append({"box": box, "side": "left" if m["left"] else "right", "joints": j})
        out.append((canvas, truths))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pictures", type=int, default=40)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--backend", default="torch", help="the network's backend (torch or onnxruntime)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from m3dhmr.detect import HandDetector
    from m3dhmr.hardware import cpu_summary
    from m3dhmr.inference.predictor import Predictor
    from m3dhmr.inference.video import MultiHandTracker

    renders = Renders(200)
    photos = sign_photos()
    detector = HandDetector(max_hands=4)
    lines: list[str] = []

    c = pictures(detector, renders, photos, args.pictures, args.seed)
    print(f"# pictures: {args.pictures}, {c['hands']} hands ({c['real']} real photos)")
    lines += [f"recall={c['found'] / max(c['hands'], 1):.3f}",
              f"recall_real_photos={c['real_found'] / max(c['real'], 1):.3f}",
              f"duplicates={c['dup']}", f"false_hands={c['false']}",
              f"handedness_accuracy={c['side_ok'] / max(c['sided'], 1):.3f}"]

    predictor = Predictor.from_pretrained(backend=args.backend)
    predictor.detector = detector
    pool = renders.clear(detector)
    print(f"# {len(pool)} of {len(renders.images)} renders found clearly (both sides): the clips' hands")
    warm, _ = scene(np.random.default_rng(99), renders, photos)
    for _ in range(3):
        predictor.predict_hands(warm, hands=detector.detect(warm))
    rng = np.random.default_rng(args.seed + 1)
    stats = {m: dict(hf=0, lost=0, err=[], err_palm=[], find=[], net=[]) for m in MODES}
    for k in range(args.clips):
        frames = clip(rng, renders, args.frames, pool)
        trackers = {m: MultiHandTracker(detector, landmarks_every=n) for m, n in MODES.items() if n}
        for img, truths in frames:
            for m in MODES:
                t0 = time.perf_counter()
                if m == "detect":
                    hands = detector.detect(img)
                else:
                    hands = [h for _, h, _ in trackers[m].update(img)]
                t1 = time.perf_counter()
                results = predictor.predict_hands(img, hands=hands) if hands else []
                t2 = time.perf_counter()
                if m != "detect":
                    trackers[m].feedback(results)
                s = stats[m]
                s["find"].append(1e3 * (t1 - t0))
                s["net"].append(1e3 * (t2 - t1))
                for t, ms in zip(truths, match([r.joints2d for r in results], truths)):
                    s["hf"] += 1
                    if not ms:
                        s["lost"] += 1
                        continue
                    e = min(np.linalg.norm(results[i].joints2d - t["joints"], axis=1).mean() for i in ms)
                    s["err"].append(e)
                    s["err_palm"].append(e / np.linalg.norm(t["joints"][9] - t["joints"][0]))
    print(f"# clips: {args.clips} x {args.frames} frames, 640 x 480, network backend {args.backend}")
    for m, s in stats.items():
        lines += [f"lost_{m}={s['lost'] / max(s['hf'], 1):.3f}",
                  f"err2d_px_{m}={np.mean(s['err']):.2f}", f"err2d_palm_{m}={np.mean(s['err_palm']):.3f}",
                  f"ms_find_{m}={np.mean(s['find']):.2f}", f"ms_network_{m}={np.mean(s['net']):.2f}",
                  f"fps_{m}={1e3 / (np.mean(s['find']) + np.mean(s['net'])):.1f}"]
    print(f"# cpu: {cpu_summary()}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
