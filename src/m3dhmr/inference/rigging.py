"""Articulation of predicted hands: joint rotations (``pose.json``) and rigged ``.glb``/``.bvh`` files.

:class:`Articulator` fits the network's template's hand model (:func:`m3dhmr.hand.fit.fit_hand`)
to :class:`~m3dhmr.inference.result.PredictionResult` meshes. A left hand is fitted
as its mirror image (``x -> -x``: the right hand the network predicted), so its
rotations are a right hand's, flagged ``"mirrored": true``; its ``.glb`` holds the
mirrored right rig, which is the left hand with proper rotations throughout
(:func:`m3dhmr.export.rig.mirror_rig`).

:class:`TrackAnimation` collects one hand's meshes through a video and writes
``hand_anim.glb`` (one key per frame) and ``hand.bvh``: every frame is fitted, then all
are fitted again with their median shape, so one rig (one rest mesh) plays them all.
Frames where the hand is missing hold the last pose (the BVH needs every frame).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from m3dhmr.errors import InputError
from m3dhmr.export import write_bvh, write_glb
from m3dhmr.export.from_fit import fit_animation, fit_rig
from m3dhmr.fileio import atomic_write_text
from m3dhmr.hand.fit import FitSettings, HandFit, fit_hand
from m3dhmr.hand.load import load_hand_model

MIRROR = np.array([-1.0, 1.0, 1.0])


@dataclass(frozen=True, repr=False)
class HandArticulation:
    """One predicted hand's fitted articulation, NumPy float64 like the rest of a
    :class:`~m3dhmr.inference.result.PredictionResult` (:attr:`fit` keeps the torch fit).

    A left hand is fitted as its mirror image (``x -> -x``), so its rotations are a right
    hand's (``mirrored`` True); ``vertices`` and ``joints`` are mirrored back into the
    result's camera frame (OpenCV axes, metres).

    Attributes:
        rotations: (16, 3, 3) each of :data:`~m3dhmr.conventions.KINEMATIC_JOINTS`
            relative to its parent (the wrist's: global). axis_angle: (16, 3) radians.
        quaternion: (16, 4) x, y, z, w (w >= 0). anatomical: (16, 3) flexion, abduction,
            twist in radians (row 0: the global rotation).
        pose: (48,) the hand model's own pose values. shape: (S,) named by ``shape_names``.
        translation: (3,) of the fit (in the mirrored frame for a left hand).
        vertices: (V, 3) and joints: (21, 3) the fitted mesh and joints, camera space.
        error_mean_mm, error_max_mm: vertex distance to the predicted mesh (mm).
        joint_error_mm: mean joint distance (mm). poor: the fit missed by more than allowed.
        mirrored: fitted as the mirror image (a left hand).
        fit: the :class:`~m3dhmr.hand.fit.HandFit` (batch 1, torch) the exports rig from.
    """

    rotations: np.ndarray
    axis_angle: np.ndarray
    quaternion: np.ndarray
    anatomical: np.ndarray
    pose: np.ndarray
    shape: np.ndarray
    shape_names: tuple[str, ...]
    translation: np.ndarray
    vertices: np.ndarray
    joints: np.ndarray
    error_mean_mm: float
    error_max_mm: float
    joint_error_mm: float
    poor: bool
    mirrored: bool
    fit: HandFit

    @classmethod
    def from_fit(cls, fit: HandFit, i: int, left: bool) -> "HandArticulation":
        """Hand ``i`` of ``fit`` (fitted mirrored when ``left``)."""
        one = fit.take(i)

        def a(t: torch.Tensor) -> np.ndarray:
            return t[0].detach().cpu().numpy().astype(np.float64)

        flip = MIRROR if left else np.ones(3)
        return cls(rotations=a(one.rotations), axis_angle=a(one.axis_angle), quaternion=a(one.quaternion),
                   anatomical=a(one.anatomical), pose=a(one.pose), shape=a(one.shape),
                   shape_names=tuple(one.shape_names), translation=a(one.translation),
                   vertices=a(one.vertices) * flip, joints=a(one.joints) * flip,
                   error_mean_mm=float(one.error_mean_mm[0]), error_max_mm=float(one.error_max_mm[0]),
                   joint_error_mm=float(one.joint_error_mm[0]), poor=bool(one.poor[0]), mirrored=bool(left),
                   fit=one)

    def to_json(self) -> dict:
        """``pose.json``'s content (see :func:`pose_json`)."""
        return pose_json(self.fit, 0, self.mirrored)

    def __repr__(self) -> str:
        return (f"HandArticulation({len(self.rotations)} joints, fit error {self.error_mean_mm:.1f} mm"
                f"{', mirrored' if self.mirrored else ''}{', poor' if self.poor else ''})")


class Articulator:
    """Fits a hand model to predictions. ``template``: the network's (``open_hand`` or ``mano[:PATH]``)."""

    def __init__(self, template: str = "open_hand", settings: FitSettings | None = None) -> None:
        self.template = str(template)
        self.model = load_hand_model(self.template)
        self.settings = settings or FitSettings()

    def fit_meshes(self, vertices: np.ndarray, joints: np.ndarray | None, left: np.ndarray,
                   shape: torch.Tensor | None = None, init=None) -> HandFit:
        """Fit (B, V, 3) camera-space meshes (and (B, 21, 3) joints); left (B,) hands are mirrored first."""
        flip = np.where(np.asarray(left, dtype=bool)[:, None, None], MIRROR, 1.0)
        v = torch.as_tensor(np.asarray(vertices, dtype=np.float64) * flip)
        j = None if joints is None else torch.as_tensor(np.asarray(joints, dtype=np.float64) * flip)
        if v.shape[1] != self.model.num_vertices:
            raise InputError(f"the predictions have {v.shape[1]} vertices but the {self.template} hand model has "
                             f"{self.model.num_vertices}")
        return fit_hand(self.model, v, j, settings=self.settings, shape=shape, init=init)

    def attach(self, results: list) -> list:
        """Copies of ``results`` with :attr:`~m3dhmr.inference.result.PredictionResult.articulation` set (one batch)."""
        if not results:
            return []
        fit = self.fit_meshes(np.stack([r.vertices for r in results]), np.stack([r.joints3d for r in results]),
                              np.array([r.left for r in results]))
        return [dataclasses.replace(r, articulation=HandArticulation.from_fit(fit, i, r.left))
                for i, r in enumerate(results)]


def pose_json(fit: HandFit, i: int, left: bool) -> dict:
    """``pose.json`` content of hand ``i`` of ``fit``."""
    return {"mirrored": bool(left), "handedness": "left" if left else "right", **fit.to_json(i)}


def write_hand_files(folder: str | Path, result) -> list[Path]:
    """``pose.json`` and ``hand.glb`` of a result with :attr:`articulation` into ``folder``."""
    art = result.articulation
    if art is None:
        raise InputError("the result has no articulation (Predictor.articulation = True fits it)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rig, g = fit_rig(art.fit, 0)
    glb = write_glb(folder / "hand.glb", rig, g, mirror=result.left, name="hand")
    pose = folder / "pose.json"
    atomic_write_text(pose, json.dumps(art.to_json(), indent=1))
    return [pose, glb]


class TrackAnimation:
    """One hand's meshes through a video, written as an animated rig (see the module doc)."""

    def __init__(self, articulator: Articulator, fps: float) -> None:
        self.articulator = articulator
        self.fps = float(fps)
        self.frames: list[int] = []
        self.vertices: list[np.ndarray] = []
        self.joints: list[np.ndarray] = []
        self.left: list[bool] = []

    def add(self, frame: int, result) -> None:
        """Record ``result`` (a prediction of this hand) at ``frame``."""
        self.frames.append(int(frame))
        self.vertices.append(np.asarray(result.vertices, dtype=np.float64))
        self.joints.append(np.asarray(result.joints3d, dtype=np.float64))
        self.left.append(bool(result.left))

    def __len__(self) -> int:
        return len(self.frames)

    def fit(self) -> tuple[HandFit, bool]:
        """All frames fitted with one shape (their median); whether the track is a left hand (majority).

        Each frame is mirrored by its own side before the fit (a frame predicted as the
        other side is still a right hand once mirrored); the rig takes the majority's."""
        left = np.array(self.left)
        side = bool(left.mean() > 0.5)
        v, j = np.stack(self.vertices), np.stack(self.joints)
        first = self.articulator.fit_meshes(v, j, left)
        shape = first.shape.median(dim=0).values.expand_as(first.shape).contiguous()
        init = (first.local, shape, first.translation)
        return self.articulator.fit_meshes(v, j, left, shape=shape, init=init), side

    def write(self, folder: str | Path, num_frames: int) -> list[Path]:
        """``hand_anim.glb``, ``hand.bvh`` and ``pose.json`` (one entry per recorded frame) in ``folder``.

        ``num_frames``: frames of the video; the animation spans the recorded ones, holding
        the last pose where the hand was missing."""
        if not self.frames:
            raise InputError("no frame of this hand to animate")
        fit, left = self.fit()
        rig, g = fit_animation(fit)
        first, last = self.frames[0], min(self.frames[-1], num_frames - 1)
        slot = np.searchsorted(np.asarray(self.frames), np.arange(first, last + 1), side="right") - 1
        g_full = g[slot]                                     # one pose per video frame, held where missing
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        glb = write_glb(folder / "hand_anim.glb", rig, g_full, fps=self.fps, mirror=left, name="hand")
        bvh = write_bvh(folder / "hand.bvh", rig, g_full, fps=self.fps, mirror=left)
        entries = [{"frame": f, "time_s": round(f / self.fps, 6), **pose_json(fit, i, left)}
                   for i, f in enumerate(self.frames)]
        pose = folder / "pose.json"
        atomic_write_text(pose, json.dumps({"first_frame": first, "fps": self.fps, "frames": entries}))
        return [glb, bvh, pose]
