"""Training losses (paper eq. 7) and the first stack's pretraining losses.

Normalisation (so that the paper's all-ones weights balance sensibly):
- 3D terms (mesh, edge, 3D consistency) are computed on vertices divided by
  ``VERTEX_NORMALISATION_M`` (0.2 m), as CMR/MobRecon do; the normal term is
  scale-free.
- 2D terms (pose, 2D consistency, stack-1 landmarks) are in crop pixels divided by
  the crop size (x by W, y by H).
- The paper's sums become means (over samples, vertices/faces/edges, coordinates),
  so no term grows with the mesh resolution or batch size.
- 3D terms use only samples with ``target["has_3d"]`` (all when the key is absent).

``target`` keys (the data sample's, batched): ``vertices (B, V, 3)`` root-relative
metres, ``joints2d (B, 21, 2)`` crop pixels, optional ``has_3d (B,)`` bool. With a
second view: ``mapping = {"R12": (B, 3, 3), "A12": (B, 2, 3)}`` (see
:func:`view_mapping`) takes view 1's prediction into view 2's frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from m3dhmr.conventions import VERTEX_NORMALISATION_M
from m3dhmr.geometry import crop as crop_maths
from m3dhmr.geometry.mesh_normals import face_normals
from m3dhmr.geometry.procrustes import NORM_EPS
from m3dhmr.models.backbone import Stack1Output
from m3dhmr.models.network import ModelOutput, TwoStackOutput
from m3dhmr.errors import InputError


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term; the paper's eq. 7 is all ones for the six main terms.

    ``heatmap`` (MSE to Gaussian heatmaps) and ``pose2d_stack1`` (L1 on the first
    stack's landmarks) are for the first stack's pretraining and default to 0;
    ``heatmap2`` (the same MSE on the second stack's heatmaps, whose soft-argmax is
    ``L^p``) is an auxiliary term of stage 2, 0 in the paper's configurations;
    ``mesh_aligned`` (L1 after a Procrustes alignment of the prediction onto the truth,
    :func:`aligned_vertex_loss`) is an auxiliary shape term, 0 in the paper's configurations;
    ``heatmap_sigma`` is the Gaussian's standard deviation in heatmap cells.
    """

    mesh: float = 1.0
    pose2d: float = 1.0
    normal: float = 1.0
    edge: float = 1.0
    con3d: float = 1.0
    con2d: float = 1.0
    heatmap: float = 0.0
    pose2d_stack1: float = 0.0
    heatmap2: float = 0.0
    mesh_aligned: float = 0.0
    heatmap_sigma: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not value >= 0.0 or value == float("inf"):
                raise InputError(f"loss.{f.name}: {value} must be a finite number >= 0")
        if self.heatmap_sigma <= 0.0:
            raise InputError(f"loss.heatmap_sigma: {self.heatmap_sigma} must be > 0")


TERMS = ("mesh", "pose2d", "normal", "edge", "con3d", "con2d", "heatmap", "pose2d_stack1", "heatmap2", "mesh_aligned")


@dataclass
class LossTerms:
    """Unweighted terms (0-dim tensors; 0 when not computed) and the weighted ``total``."""

    total: Tensor
    mesh: Tensor
    pose2d: Tensor
    normal: Tensor
    edge: Tensor
    con3d: Tensor
    con2d: Tensor
    heatmap: Tensor
    pose2d_stack1: Tensor
    heatmap2: Tensor
    mesh_aligned: Tensor
    # Further logged values, e.g. the real photos' 2D terms ("real_pose2d"; trainer.StepLoss).
    extra: dict[str, Tensor] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Plain floats for logging (the terms, ``total`` and ``extra``)."""
        out = {f.name: float(getattr(self, f.name).detach()) for f in fields(self) if f.name != "extra"}
        out.update({k: float(v.detach()) for k, v in self.extra.items()})
        return out


# --- pure loss functions -------------------------------------------------------------


def face_edges(faces: Tensor) -> Tensor:
    """The three directed edges (i, j) of every face: (F, 3) -> (F, 3, 2)."""
    return torch.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=1)


def normal_loss(pred: Tensor, gt: Tensor, faces: Tensor, eps: float = 1e-12) -> Tensor:
    """Mean over samples, faces and their 3 edges of ``|unit(V_i - V_j) . n*_c|``.

    pred, gt: (B, V, 3); faces (F, 3) -> 0-dim.
    """
    e = face_edges(faces)  # (F, 3, 2)
    d = pred[:, e[..., 0]] - pred[:, e[..., 1]]  # (B, F, 3, 3)
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(eps)
    n = face_normals(gt, faces, unit=True, eps=eps).unsqueeze(2)  # (B, F, 1, 3)
    return (d * n).sum(-1).abs().mean()


def edge_length_loss(pred: Tensor, gt: Tensor, faces: Tensor) -> Tensor:
    """Mean over samples, faces and their 3 edges of ``| |V_i - V_j| - |V*_i - V*_j| |``.

    pred, gt: (B, V, 3); faces (F, 3) -> 0-dim (units of the inputs).
    """
    e = face_edges(faces)
    lp = (pred[:, e[..., 0]] - pred[:, e[..., 1]]).norm(dim=-1)
    lg = (gt[:, e[..., 0]] - gt[:, e[..., 1]]).norm(dim=-1)
    return (lp - lg).abs().mean()


def aligned_vertex_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """Mean L1 between ``gt`` and ``pred`` aligned onto it by the FreiHAND Procrustes (scale,
    rotation, translation; :func:`m3dhmr.geometry.procrustes.align_w_scale_batch`).

    The camera-frame mesh L1 is dominated by the global orientation: while the network
    is unsure of it, the L1-optimal mesh is an average over orientations, a shrunken,
    curled hand whose aligned (PA) error is larger than a constant open hand's. This
    term scores the articulated shape alone. The alignment (its rotation, scale and
    target centre) is computed without gradient, so the gradient is that of an L1 on
    fixed-frame points: no SVD derivative, which is unstable at repeated singular values.

    pred, gt: (B, V, 3) -> 0-dim.
    """
    with torch.no_grad():
        p, g = pred.detach(), gt
        g_mean = g.mean(1, keepdim=True)
        g_c, p_c = g - g_mean, p - p.mean(1, keepdim=True)
        s_g = torch.linalg.vector_norm(g_c, dim=(1, 2), keepdim=True) + NORM_EPS
        s_p = torch.linalg.vector_norm(p_c, dim=(1, 2), keepdim=True) + NORM_EPS
        u, w, vt = torch.linalg.svd((g_c / s_g).transpose(1, 2) @ (p_c / s_p))
        rot = u @ vt  # (B, 3, 3); prediction rows map by x @ rot^T
        scale = w.sum(-1)[:, None, None] * s_g / s_p
    aligned = (pred - pred.mean(1, keepdim=True)) @ rot.transpose(1, 2) * scale + g_mean
    return (aligned - gt).abs().mean()


def heatmap_targets(joints2d: Tensor, size: tuple[int, int], sigma: float, image_size: tuple[int, int]) -> Tensor:
    """Gaussian heatmaps (peak 1) centred on the joints.

    A heatmap cell (i, j) covers the crop at stride ``s = image_size / size``, its
    centre at crop pixel ``((j + 0.5) s_x - 0.5, (i + 0.5) s_y - 0.5)``.

    Args:
        joints2d: (B, J, 2) crop pixels (x, y).
        size: (h, w) of the heatmaps.
        sigma: standard deviation in heatmap cells.
        image_size: (H, W) of the crop.
    Returns:
        (B, J, h, w).
    """
    h, w = size
    sy, sx = image_size[0] / h, image_size[1] / w
    # Joint positions in heatmap-cell units, cell centres at integers.
    jx = (joints2d[..., 0] + 0.5) / sx - 0.5
    jy = (joints2d[..., 1] + 0.5) / sy - 0.5
    xs = torch.arange(w, dtype=joints2d.dtype, device=joints2d.device)
    ys = torch.arange(h, dtype=joints2d.dtype, device=joints2d.device)
    gx = torch.exp(-((xs - jx.unsqueeze(-1)) ** 2) / (2 * sigma**2))  # (B, J, w)
    gy = torch.exp(-((ys - jy.unsqueeze(-1)) ** 2) / (2 * sigma**2))  # (B, J, h)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def view_mapping(target: dict[str, Tensor]) -> dict[str, Tensor]:
    """View 1 -> view 2 maps of a two-view batch (:func:`m3dhmr.geometry.crop.view_mapping`):
    ``{"R12": (B, 3, 3), "A12": (B, 2, 3)}``."""
    for key in ("rot", "rot_2", "affine", "affine_2"):
        if key not in target:
            raise InputError(f"view_mapping needs target[{key!r}] (a two-view batch)")
    r12, a12 = crop_maths.view_mapping(target["rot"], target["affine"], target["rot_2"], target["affine_2"])
    return {"R12": r12, "A12": a12}


# --- the combined loss ---------------------------------------------------------------

#: Terms that need the predicted mesh and its 3D ground truth (never from a 2D-only output).
MESH_TERMS = ("mesh", "normal", "edge", "mesh_aligned")
#: Two-view consistency terms (view 1's prediction mapped into view 2's frame).
CONSISTENCY_TERMS = ("con3d", "con2d")
#: Terms of the 2D landmarks and heatmaps.
TERMS_2D = ("pose2d", "pose2d_stack1", "heatmap", "heatmap2")


def _check(name: str, t: Tensor, shape: tuple[int | None, ...]) -> None:
    if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
        raise InputError(f"target[{name!r}] has shape {tuple(t.shape)}, expected {shape} (None = any)")
    if not torch.isfinite(t).all():
        raise InputError(f"target[{name!r}] holds NaN or infinite values")


def _weighted(weights: LossWeights, names: tuple[str, ...]) -> bool:
    """Whether any of the terms ``names`` has a non-zero weight."""
    return any(getattr(weights, n) > 0 for n in names)


def _check_output_type(pred, weights: LossWeights) -> tuple[bool, bool]:
    """``(has_mesh, stack1_only)`` of the network output ``pred``; a ValueError when a term
    with a non-zero weight needs what that output type lacks."""
    if not isinstance(pred, (ModelOutput, TwoStackOutput, Stack1Output)):
        raise InputError(f"compute_losses takes a ModelOutput, TwoStackOutput or Stack1Output, "
                         f"not {type(pred).__name__}")
    has_mesh = isinstance(pred, ModelOutput)
    stack1_only = isinstance(pred, Stack1Output)  # its joints2d are the first stack's
    if not has_mesh:
        bad = [n for n in TERMS if n in MESH_TERMS + CONSISTENCY_TERMS and getattr(weights, n) > 0]
        if bad:
            what = "first-stack" if stack1_only else "2D-only"
            raise InputError(f"a {what} output has no {', '.join(bad)} terms; set those loss weights to 0")
    if stack1_only and (weights.heatmap2 > 0 or weights.pose2d > 0):
        raise InputError("a first-stack output has no heatmap2 or pose2d term; set loss.heatmap2 and loss.pose2d to 0")
    return has_mesh, stack1_only


def _crop_size(pred, target: dict[str, Tensor], image_size: tuple[int, int] | None) -> tuple[int, int]:
    """(H, W) of the crop: ``image_size``, else the output's, else ``target["image"]``'s."""
    if image_size is None:
        image_size = getattr(pred, "image_size", None)  # Stack1Output carries none
    if image_size is None:
        if "image" not in target:
            raise InputError("compute_losses needs image_size (or target['image']) to normalise 2D terms")
        image_size = tuple(target["image"].shape[-2:])
    return image_size


def _terms_2d(pred, gt2d: Tensor, scale2d: Tensor, weights: LossWeights, image_size: tuple[int, int],
              stack1_only: bool) -> dict[str, Tensor]:
    """Landmark L1s (crop pixels / crop size) and heatmap MSEs; gt2d (B, 21, 2) crop pixels."""
    terms = {}
    if weights.pose2d > 0 and not stack1_only:
        terms["pose2d"] = ((pred.joints2d - gt2d) / scale2d).abs().mean()
    if weights.pose2d_stack1 > 0:
        p1 = pred.joints2d if stack1_only else pred.joints2d_stack1
        terms["pose2d_stack1"] = ((p1 - gt2d) / scale2d).abs().mean()
    if weights.heatmap > 0:
        hm = pred.heatmaps
        tgt = heatmap_targets(gt2d, tuple(hm.shape[-2:]), weights.heatmap_sigma, image_size)
        terms["heatmap"] = ((hm - tgt) ** 2).mean()
    if weights.heatmap2 > 0:
        hm2 = pred.heatmaps2
        if hm2 is None:
            raise InputError("loss.heatmap2 > 0 needs the second stack's heatmaps (ModelOutput.heatmaps2)")
        tgt2 = heatmap_targets(gt2d, tuple(hm2.shape[-2:]), weights.heatmap_sigma, image_size)
        terms["heatmap2"] = ((hm2 - tgt2) ** 2).mean()
    return terms


def _mesh_terms(vertices: Tensor, target: dict[str, Tensor], faces: Tensor, weights: LossWeights
                ) -> dict[str, Tensor]:
    """The 3D terms on the samples with 3D ground truth (``has_3d``), in units of
    ``VERTEX_NORMALISATION_M``; vertices (B, V, 3) metres; none when no sample has it."""
    b = vertices.shape[0]
    _check("vertices", target["vertices"], tuple(vertices.shape))
    mask = target.get("has_3d")
    sel = slice(None) if mask is None else mask.to(torch.bool).reshape(b)
    pv = vertices[sel] / VERTEX_NORMALISATION_M
    gv = target["vertices"][sel] / VERTEX_NORMALISATION_M
    terms = {}
    if pv.shape[0] > 0:
        if weights.mesh > 0:
            terms["mesh"] = (pv - gv).abs().mean()
        if weights.normal > 0:
            terms["normal"] = normal_loss(pv, gv, faces)
        if weights.edge > 0:
            terms["edge"] = edge_length_loss(pv, gv, faces)
        if weights.mesh_aligned > 0:
            terms["mesh_aligned"] = aligned_vertex_loss(pv, gv)
    return terms


def _consistency_terms(pred, pred_view2, mapping: dict[str, Tensor], scale2d: Tensor, weights: LossWeights
                       ) -> dict[str, Tensor]:
    """View 1's mesh and landmarks taken into view 2 (``mapping``'s R12, A12) against view 2's."""
    terms = {}
    if weights.con3d > 0:
        v1in2 = pred.vertices @ mapping["R12"].transpose(1, 2)
        terms["con3d"] = ((v1in2 - pred_view2.vertices) / VERTEX_NORMALISATION_M).abs().mean()
    if weights.con2d > 0:
        p1in2 = crop_maths.apply_affine(pred.joints2d, mapping["A12"])
        terms["con2d"] = ((p1in2 - pred_view2.joints2d) / scale2d).abs().mean()
    return terms


def compute_losses(
    pred,
    target: dict[str, Tensor],
    faces: Tensor,
    weights: LossWeights,
    pred_view2=None,
    mapping: dict[str, Tensor] | None = None,
    image_size: tuple[int, int] | None = None,
) -> LossTerms:
    """Weighted sum of the loss terms (see the module docstring for units).

    Args:
        pred: a :class:`m3dhmr.models.ModelOutput` (all terms), a
            :class:`m3dhmr.models.network.TwoStackOutput` (2D terms only) or a
            :class:`m3dhmr.models.backbone.Stack1Output` (pretraining: only
            ``heatmap`` and ``pose2d_stack1`` may have non-zero weights).
        target: the batch (view 1), see the module docstring.
        faces: (F, 3) int64 mesh faces.
        weights: :class:`LossWeights`; terms with weight 0 are skipped (reported as 0).
        pred_view2: the ModelOutput of the second view, for the consistency terms.
        mapping: ``{"R12", "A12"}``; defaults to :func:`view_mapping` (target).
        image_size: (H, W) of the crop; defaults to ``pred.image_size`` (ModelOutput)
            or ``target["image"]``'s size.
    Returns:
        :class:`LossTerms`.
    """
    ref = pred.joints2d
    zero = ref.new_zeros(())
    terms = dict.fromkeys(TERMS, zero)
    image_size = _crop_size(pred, target, image_size)
    scale2d = ref.new_tensor([float(image_size[1]), float(image_size[0])])
    b = ref.shape[0]
    has_mesh, stack1_only = _check_output_type(pred, weights)
    if b == 0:  # an empty batch: every mean would be 0 / 0; zero terms, still in the graph
        empty = ref.sum() * 0.0
        return LossTerms(total=empty, **dict.fromkeys(TERMS, empty))
    if _weighted(weights, TERMS_2D):
        _check("joints2d", target["joints2d"], (b, ref.shape[1], 2))
        terms.update(_terms_2d(pred, target["joints2d"], scale2d, weights, image_size, stack1_only))
    if has_mesh and _weighted(weights, MESH_TERMS):
        terms.update(_mesh_terms(pred.vertices, target, faces, weights))
    if has_mesh and pred_view2 is not None and _weighted(weights, CONSISTENCY_TERMS):
        m = view_mapping(target) if mapping is None else mapping
        terms.update(_consistency_terms(pred, pred_view2, m, scale2d, weights))
    total = sum(getattr(weights, n) * terms[n] for n in TERMS if getattr(weights, n) > 0)
    return LossTerms(total=total if isinstance(total, Tensor) else zero, **terms)
