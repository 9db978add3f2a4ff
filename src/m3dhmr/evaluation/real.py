"""The real-photo yardstick: the network's hands against a real-photo landmark model.

Two checks, both without human labels:

1. **2D agreement** with the packaged real-photo landmark model
   (:mod:`m3dhmr.data.pseudo_labels`): the network's 2D joints (``PredictionResult.joints2d``,
   the projection of its own 3D joints, from the Predictor's own crop around the detector's
   landmarks) against the landmark model's, in units of the reference palm (wrist to middle
   MCP, joints 0-9): PCK at half a palm, the median error, per joint.
2. **Finger states** on the sign-language digits (:mod:`m3dhmr.data.sign_digits`): each
   finger's state measured from 3D joints (:func:`finger_states`) against the digit's
   expected handshape; the same measured from the landmark model's own 3D landmarks
   (x, y, MediaPipe's z) is the reference point.

Finger states from 3D joints: :mod:`m3dhmr.geometry.finger_states` (its thresholds and
how they were set are there).

Images where either model finds no hand are counted (``n_detected`` out of ``n_images``)
and left out of the other figures, which are thus over the images where both found one.
Sign-digit photos are tight 100-px crops, so the hand is searched in the photo as it is
and edge-padded (:func:`m3dhmr.data.pseudo_labels.detect_best`), for the network's crop
as for the reference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from m3dhmr.conventions import NUM_JOINTS
from m3dhmr.geometry.finger_states import finger_states
from m3dhmr.errors import InputError

log = logging.getLogger(__name__)

#: PCK threshold, in palms (wrist to middle MCP of the reference).
PCK_PALMS = 0.5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# ---------------------------------------------------------------------- maths


def palm_length(ref: np.ndarray) -> np.ndarray:
    """ref (..., 21, D) -> (...,) distance from the wrist (0) to the middle MCP (9)."""
    return np.linalg.norm(ref[..., 9, :] - ref[..., 0, :], axis=-1)


def palm_errors(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """pred, ref (N, 21, 2) pixels -> (N, 21) distance in palms of the reference."""
    if pred.shape != ref.shape or pred.shape[-2:] != (NUM_JOINTS, 2):
        raise InputError(f"pred and ref must both be (N, 21, 2), got {pred.shape} and {ref.shape}")
    palm = palm_length(ref)
    if np.any(palm <= 0):
        raise InputError("a reference hand has its wrist on its middle MCP (palm length 0)")
    return np.linalg.norm(pred - ref, axis=-1) / palm[:, None]


def pck(errors: np.ndarray, threshold: float = PCK_PALMS) -> tuple[float, np.ndarray]:
    """errors (N, 21) in palms -> (all joints' fraction <= threshold, (21,) per joint)."""
    ok = errors <= threshold
    return float(ok.mean()), ok.mean(axis=0)


def state_accuracy(states: np.ndarray, digits: np.ndarray) -> tuple[float, dict[int, float]]:
    """states (N, 5) measured, digits (N,) the digit shown -> (overall, per digit) fraction of
    fingers in their expected state (:data:`~m3dhmr.data.sign_digits.EXPECTED_FINGER_STATES`;
    "any" fingers skipped). NaN where there is nothing to count."""
    # heavy: m3dhmr.data, the inference modules (cv2) and scipy.stats load when used
    from m3dhmr.data.sign_digits import EXPECTED_FINGER_STATES

    expected = np.array([EXPECTED_FINGER_STATES[int(d)].as_tuple() for d in digits]).reshape(-1, 5)
    counted = expected != "any"
    right = (np.asarray(states).reshape(-1, 5) == expected) & counted
    per = {}
    for d in range(10):
        m = np.asarray(digits) == d
        per[d] = float(right[m].sum() / counted[m].sum()) if counted[m].any() else float("nan")
    overall = float(right.sum() / counted.sum()) if counted.any() else float("nan")
    return overall, per


def reference_joints3d(landmarks: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """The landmark model's 3D landmarks: landmarks (..., 21, 2) and depth (..., 21), both in
    image pixels -> (..., 21, 3) (x right, y down, z away from the camera)."""
    return np.concatenate([landmarks, depth[..., None]], axis=-1)


# ---------------------------------------------------------------------- runner


@dataclass(frozen=True)
class RealResult:
    """Figures of one run (N images).

    n_images; n_detected: images where both the reference and the predictor found a hand
    (``detected`` (N,) bool); n_reference / n_predicted: where each did; pck_half_palm,
    median_err_palm: over the detected images' joints; per_joint_pck: (21,);
    finger_state_acc (+ per digit, + the reference's): sign digits only, else None / {}.

    Per image (NaN where not detected): paths (N,); digits (N,) int, -1 outside the sign
    set; errors (N, 21) palms; joints2d (N, 21, 2) the network's, image px; joints3d (N, 21, 3)
    the network's, camera metres; reference (N, 21, 2) px; reference_depth (N, 21) px;
    presence (N,) the reference's; reprojection_error (N,) the registration's, crop px;
    states / reference_states (N, 5) finger states ("" where not detected); quality (N,)
    the Predictor's per-hand score (:mod:`m3dhmr.inference.quality`), NaN where none.
    """

    n_images: int
    n_detected: int
    n_reference: int
    n_predicted: int
    pck_half_palm: float
    median_err_palm: float
    per_joint_pck: np.ndarray
    finger_state_acc: float | None
    finger_state_acc_per_digit: dict[int, float]
    reference_finger_state_acc: float | None
    reference_finger_state_acc_per_digit: dict[int, float]
    paths: tuple[Path, ...]
    digits: np.ndarray
    detected: np.ndarray
    errors: np.ndarray
    joints2d: np.ndarray
    joints3d: np.ndarray
    reference: np.ndarray
    reference_depth: np.ndarray
    presence: np.ndarray
    reprojection_error: np.ndarray
    states: np.ndarray
    reference_states: np.ndarray
    quality: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def detection_rate(self) -> float:
        return self.n_detected / self.n_images

    @property
    def image_errors(self) -> np.ndarray:
        """(N,) mean joint error of each image in palms (NaN where not detected)."""
        return self.errors.mean(axis=1)

    @property
    def wrong_fingers(self) -> np.ndarray:
        """(N,) fingers whose measured state contradicts the digit's handshape (sign digits;
        "any" fingers skipped), -1 where not detected or outside the set."""
        from m3dhmr.data.sign_digits import EXPECTED_FINGER_STATES

        out = np.full(self.n_images, -1, dtype=np.int64)
        for i in np.flatnonzero(self.detected & (self.digits >= 0)):
            exp = np.array(EXPECTED_FINGER_STATES[int(self.digits[i])].as_tuple())
            out[i] = int(((self.states[i] != exp) & (exp != "any")).sum())
        return out

    def quality_correlations(self) -> dict[str, float]:
        """Spearman rank correlations over the detected images: the quality score (negated,
        so that a positive value means a low score goes with a large error) with the 2D error
        (``quality_spearman``), with the wrong-finger count (``quality_spearman_fingers``, sign
        digits only), and the registration residual alone with the 2D error (``residual_spearman``)."""
        m = self.detected & np.isfinite(self.quality)
        out = {"quality_spearman": spearman(-self.quality[m], self.image_errors[m]),
               "residual_spearman": spearman(self.reprojection_error[m], self.image_errors[m])}
        if self.finger_state_acc is not None:
            out["quality_spearman_fingers"] = spearman(-self.quality[m], self.wrong_fingers[m])
        return out

    def summary(self) -> dict[str, float]:
        """The headline figures as ``name -> value`` (the benchmark's ``name=value`` lines)."""
        out = {"n_images": float(self.n_images), "n_detected": float(self.n_detected),
               "detection_rate": self.detection_rate, "pck_half_palm": self.pck_half_palm,
               "median_err_palm": self.median_err_palm}
        for j in (4, 8, 12, 16, 20):
            out[f"pck_tip{j}"] = float(self.per_joint_pck[j])
        if self.finger_state_acc is not None:
            out["finger_state_acc"] = self.finger_state_acc
            out["reference_finger_state_acc"] = float(self.reference_finger_state_acc)
            for d, v in self.finger_state_acc_per_digit.items():
                out[f"finger_state_acc_{d}"] = v
        if np.isfinite(self.quality[self.detected]).any():
            out.update(self.quality_correlations())
            out["quality_poor_fraction"] = float(np.mean(self.quality_flags[self.detected] == "poor"))
        return {**out, **self.extra}

    @property
    def quality_flags(self) -> np.ndarray:
        """(N,) the quality flag of each image's hand ("" where none); from :attr:`quality`."""
        from m3dhmr.inference.quality import FAIR, GOOD

        q = self.quality
        return np.where(~np.isfinite(q), "", np.where(q >= GOOD, "good", np.where(q >= FAIR, "fair", "poor")))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two (N,) arrays (ties get their mean rank); NaN for N < 3
    or a constant array."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(f"spearman needs two (N,) arrays, got {a.shape} and {b.shape}")
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b)[0])


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively, sorted); FileNotFoundError when none."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of photos")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not paths:
        raise FileNotFoundError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    return paths


def real_photos(root: Path, split: str = "heldout") -> tuple[list[Path], bool]:
    """The photos to score -> (paths, is the sign-digits set). For the sign-language digits
    (``root`` holds ``0``..``9`` or ``Dataset/0``..``9``), the ``split`` ("train", "heldout"
    or "all") by person; for any other folder, all its images (``split`` must be "heldout"
    or "all")."""
    from m3dhmr.data import sign_digits as sd

    if split not in ("train", "heldout", "all"):
        raise InputError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    try:
        sd.dataset_dir(root)
    except FileNotFoundError:
        if split == "train":
            raise InputError(f"{root} is not the sign-language-digits set: it has no 'train' split") from None
        return list_images(root), False
    if split == "all":
        return sd.list_photos(root), True
    return sd.split_by_person(root)[split], True


def evaluate_real(predictor, root: Path, split: str = "heldout", limit: int | None = None,
                  cache: Path | None = None, progress: bool = False, labels=None) -> RealResult:
    """Score ``predictor`` (:class:`m3dhmr.Predictor`) on the photos of ``root`` (see
    :func:`real_photos`), the first ``limit`` of them when given; reference landmarks from
    :func:`m3dhmr.data.pseudo_labels.pseudo_labels` (``cache``; or ``labels`` computed
    already for exactly these paths)."""
    from m3dhmr.data.pseudo_labels import DEFAULT_MIN_PRESENCE, detect_best, pseudo_labels
    from m3dhmr.data.sign_digits import digit_of
    from m3dhmr.inference.images import load_image

    paths, is_sign = real_photos(root, split)
    if limit is not None:
        if limit < 1:
            raise InputError(f"limit must be >= 1, got {limit}")
        if is_sign:  # every digit in a small run: take the photos evenly over the split
            paths = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(limit, len(paths))).round()
                                                 .astype(int))]
        else:
            paths = paths[:limit]
    ref = pseudo_labels(paths, cache=cache, progress=progress) if labels is None else labels
    if tuple(ref.paths) != tuple(Path(p) for p in paths):
        raise InputError("labels are not for the photos being scored")
    n = len(paths)
    has_ref = ref.select(DEFAULT_MIN_PRESENCE)
    j2 = np.full((n, NUM_JOINTS, 2), np.nan)
    j3 = np.full((n, NUM_JOINTS, 3), np.nan)
    reproj = np.full(n, np.nan)
    has_pred = np.zeros(n, bool)
    quality = np.full(n, np.nan)
    # A bar on a terminal (ETA); elsewhere the log line every 100 photos below.
    for i, p in enumerate(tqdm(paths, desc="real photos", unit="photo", disable=True if not progress else None,
                               leave=False, dynamic_ncols=True)):
        image = load_image(p)
        hand = detect_best(predictor.detector, image)
        if hand is not None:
            r = predictor.predict_hands(image, hands=[hand])[0]
            j2[i], j3[i], reproj[i], has_pred[i] = r.joints2d, r.joints3d, r.reprojection_error, True
            q = getattr(r, "quality", None)
            quality[i] = np.nan if q is None else q
        if progress and (i + 1) % 100 == 0:
            log.info("real photos: %d / %d", i + 1, n)
    detected = has_ref & has_pred
    errors = np.full((n, NUM_JOINTS), np.nan)
    if detected.any():
        errors[detected] = palm_errors(j2[detected], ref.landmarks[detected].astype(np.float64))
        pck_all, per_joint = pck(errors[detected])
        median = float(np.median(errors[detected]))
    else:
        pck_all, per_joint, median = float("nan"), np.full(NUM_JOINTS, np.nan), float("nan")
    digits = np.array([digit_of(p) if is_sign else -1 for p in paths], dtype=np.int64)
    states = np.full((n, 5), "", dtype="<U8")
    ref_states = np.full((n, 5), "", dtype="<U8")
    ref3 = reference_joints3d(ref.landmarks.astype(np.float64), ref.depth.astype(np.float64))
    if detected.any():
        states[detected] = finger_states(j3[detected])
        ref_states[detected] = finger_states(ref3[detected])
    acc = per = ref_acc = ref_per = None
    if is_sign and detected.any():
        acc, per = state_accuracy(states[detected], digits[detected])
        ref_acc, ref_per = state_accuracy(ref_states[detected], digits[detected])
    return RealResult(
        n_images=n, n_detected=int(detected.sum()), n_reference=int(has_ref.sum()), n_predicted=int(has_pred.sum()),
        pck_half_palm=pck_all, median_err_palm=median, per_joint_pck=per_joint,
        finger_state_acc=acc, finger_state_acc_per_digit=per or {},
        reference_finger_state_acc=ref_acc, reference_finger_state_acc_per_digit=ref_per or {},
        paths=tuple(paths), digits=digits, detected=detected, errors=errors, joints2d=j2, joints3d=j3,
        reference=np.where(has_ref[:, None, None], ref.landmarks, np.nan),
        reference_depth=np.where(has_ref[:, None], ref.depth, np.nan), presence=ref.presence.astype(np.float64),
        reprojection_error=reproj, states=states, reference_states=ref_states, quality=quality)
