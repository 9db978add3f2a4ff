"""Hand boxes like a hand detector's, made from a FreiHAND-layout split's ground truth.

For scoring or showing the packaged model on rendered images without running the
detector: :func:`detector_boxes` gives the tight box around the visible hand that a
detector reports, which :meth:`m3dhmr.inference.predictor.Predictor.predict` then
enlarges as the model's training crops were.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def detector_boxes(data: Path, split: str, names: list[str]) -> dict[str, list[float]]:
    """Hand boxes like a detector's (tight around the visible hand) from the ground-truth joints.

    ``data``: a FreiHAND-layout folder; ``split``: its split (``"evaluation"``); ``names``:
    image file names (``00000012.jpg``: the stem is the sample index). Returns
    ``{file name: [x, y, w, h]}`` in image pixels. The joints' box is widened by
    ``1 / JOINTS_PER_SILHOUETTE`` about its centre, the size of the silhouette's box.
    """
    # heavy: the data and inference modules (torch, cv2) load when called
    from m3dhmr.data.freihand import load_annotations
    from m3dhmr.geometry.camera import project
    from m3dhmr.inference.crops import JOINTS_PER_SILHOUETTE

    ann = load_annotations(data, split)
    boxes = {}
    for name in names:
        i = int(Path(name).stem)
        j = project(np.asarray(ann.xyz[i], np.float64), ann.K[i])
        lo, hi = j.min(0), j.max(0)
        c, half = (lo + hi) / 2, (hi - lo) / 2 / JOINTS_PER_SILHOUETTE
        boxes[Path(name).name] = [float(c[0] - half[0]), float(c[1] - half[1]), float(2 * half[0]), float(2 * half[1])]
    return boxes
