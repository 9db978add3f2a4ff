import math

import pytest
import torch

from m3dhmr.config_loader import ConfigError, from_dict
from m3dhmr.losses import (
    LossWeights,
    compute_losses,
    edge_length_loss,
    heatmap_targets,
    normal_loss,
    view_mapping,
)
from m3dhmr.models.backbone import Stack1Output
from m3dhmr.models.network import ModelOutput

torch.manual_seed(0)
FACES = torch.tensor([[0, 1, 2], [0, 2, 3], [1, 3, 2]])


def normal_naive(pred, gt, faces):
    vals = []
    for b in range(pred.shape[0]):
        for a, bb, c in faces.tolist():
            n = torch.cross(gt[b, bb] - gt[b, a], gt[b, c] - gt[b, a], dim=0)
            n = n / n.norm()
            for i, j in ((a, bb), (bb, c), (c, a)):
                d = pred[b, i] - pred[b, j]
                vals.append((d / d.norm() @ n).abs())
    return torch.stack(vals).mean()


def edge_naive(pred, gt, faces):
    vals = []
    for b in range(pred.shape[0]):
        for a, bb, c in faces.tolist():
            for i, j in ((a, bb), (bb, c), (c, a)):
                vals.append(((pred[b, i] - pred[b, j]).norm() - (gt[b, i] - gt[b, j]).norm()).abs())
    return torch.stack(vals).mean()


def test_normal_and_edge_match_naive():
    pred, gt = torch.randn(3, 4, 3, dtype=torch.float64), torch.randn(3, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(normal_loss(pred, gt, FACES), normal_naive(pred, gt, FACES))
    torch.testing.assert_close(edge_length_loss(pred, gt, FACES), edge_naive(pred, gt, FACES))


def test_normal_and_edge_hand_computed():
    gt = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]])  # normal +z
    f = torch.tensor([[0, 1, 2]])
    assert normal_loss(gt, gt, f) == 0 and edge_length_loss(gt, gt, f) == 0
    pred = torch.tensor([[[0.0, 0, 0], [1, 0, 1], [0, 1, 0]]])  # vertex 1 lifted by 1 in z
    # edges: 0-1 dir (1,0,1)/sqrt2 -> 1/sqrt2; 1-2 dir (1,-1,1)/sqrt3 -> 1/sqrt3; 2-0 -> 0
    torch.testing.assert_close(normal_loss(pred, gt, f), torch.tensor((1 / math.sqrt(2) + 1 / math.sqrt(3)) / 3))
    # lengths sqrt2 vs 1, sqrt3 vs sqrt2, 1 vs 1
    torch.testing.assert_close(
        edge_length_loss(pred, gt, f), torch.tensor((math.sqrt(2) - 1 + math.sqrt(3) - math.sqrt(2)) / 3)
    )


def test_heatmap_targets():
    j = torch.tensor([[[13.5, 5.5], [0.0, 0.0]]])  # cell (row 1, col 3) at stride 4
    hm = heatmap_targets(j, (4, 5), sigma=1.0, image_size=(16, 20))
    assert hm.shape == (1, 2, 4, 5)
    assert hm[0, 0, 1, 3] == 1.0 and hm[0, 0].argmax() == 1 * 5 + 3
    torch.testing.assert_close(hm[0, 0, 1, 4], torch.tensor(math.exp(-0.5)))
    # naive
    for i in range(4):
        for k in range(5):
            cx, cy = (0.0 + 0.5) / 4 - 0.5, (0.0 + 0.5) / 4 - 0.5
            torch.testing.assert_close(hm[0, 1, i, k], torch.tensor(math.exp(-((k - cx) ** 2 + (i - cy) ** 2) / 2)))


def fake_pred(b=2, v=4, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    def t(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g) * scale + shift).requires_grad_(requires_grad)

    return ModelOutput(vertices=t(b, v, 3, scale=0.05), joints3d=t(b, 21, 3), joints2d=t(b, 21, 2, scale=30, shift=64),
                       heatmaps=t(b, 21, 8, 8), joints2d_stack1=t(b, 21, 2, scale=30, shift=64), image_size=(128, 128))


def test_compute_losses_terms_and_total():
    pred, pred2 = fake_pred(seed=0), fake_pred(seed=1)
    target = {"vertices": torch.randn(2, 4, 3) * 0.05, "joints2d": torch.rand(2, 21, 2) * 128,
              "has_3d": torch.tensor([True, False])}
    rot = torch.linalg.qr(torch.randn(2, 3, 3)).Q
    mapping = {"R12": rot, "A12": torch.tensor([[[2.0, 0, 1], [0, 2, -1]]]).repeat(2, 1, 1)}
    w = LossWeights(heatmap=0.5, pose2d_stack1=0.25)
    terms = compute_losses(pred, target, FACES, w, pred_view2=pred2, mapping=mapping)
    s = 0.2
    torch.testing.assert_close(terms.mesh, ((pred.vertices[:1] - target["vertices"][:1]) / s).abs().mean())
    torch.testing.assert_close(terms.pose2d, ((pred.joints2d - target["joints2d"]) / 128).abs().mean())
    torch.testing.assert_close(terms.pose2d_stack1, ((pred.joints2d_stack1 - target["joints2d"]) / 128).abs().mean())
    torch.testing.assert_close(terms.normal, normal_naive(pred.vertices[:1], target["vertices"][:1], FACES))
    torch.testing.assert_close(terms.edge, edge_naive(pred.vertices[:1] / s, target["vertices"][:1] / s, FACES))
    c3 = torch.stack([(pred.vertices[b] @ rot[b].T - pred2.vertices[b]).abs().mean() for b in range(2)]).mean() / s
    torch.testing.assert_close(terms.con3d, c3)
    c2 = ((pred.joints2d * 2 + torch.tensor([1.0, -1.0]) - pred2.joints2d) / 128).abs().mean()
    torch.testing.assert_close(terms.con2d, c2)
    hm = heatmap_targets(target["joints2d"], (8, 8), 2.0, (128, 128))
    torch.testing.assert_close(terms.heatmap, ((pred.heatmaps - hm) ** 2).mean())
    expected = (terms.mesh + terms.pose2d + terms.normal + terms.edge + terms.con3d + terms.con2d
                + 0.5 * terms.heatmap + 0.25 * terms.pose2d_stack1)
    torch.testing.assert_close(terms.total, expected)
    assert set(terms.as_dict()) >= {"total", "mesh", "con2d"}


def test_zero_weights_skip_terms_and_gradients_flow():
    pred = fake_pred(requires_grad=True)
    target = {"vertices": torch.randn(2, 4, 3) * 0.05, "joints2d": torch.rand(2, 21, 2) * 128}
    terms = compute_losses(pred, target, FACES, LossWeights(normal=0.0, edge=0.0))
    assert terms.normal == 0 and terms.con3d == 0  # no second view
    terms.total.backward()
    assert pred.vertices.grad.abs().sum() > 0 and pred.joints2d.grad.abs().sum() > 0


def test_stack1_only_output():
    s1 = Stack1Output(heatmaps=torch.randn(2, 21, 8, 8), joints2d=torch.rand(2, 21, 2) * 32, features=None)
    target = {"joints2d": torch.rand(2, 21, 2) * 32}
    w = LossWeights(mesh=0, pose2d=0, normal=0, edge=0, con3d=0, con2d=0, heatmap=1, pose2d_stack1=1)
    terms = compute_losses(s1, target, FACES, w, image_size=(32, 32))
    torch.testing.assert_close(terms.total, terms.heatmap + terms.pose2d_stack1)
    with pytest.raises(ValueError, match="no mesh"):
        compute_losses(s1, target, FACES, LossWeights(), image_size=(32, 32))


def test_two_stack_output_has_2d_terms_only_and_other_types_are_refused():
    from types import SimpleNamespace

    from m3dhmr.models.network import TwoStackOutput

    g = torch.Generator().manual_seed(4)
    out = TwoStackOutput(joints2d=torch.rand(2, 21, 2, generator=g) * 32, heatmaps=torch.randn(2, 21, 8, 8, generator=g),
                         heatmaps2=torch.randn(2, 21, 8, 8, generator=g),
                         joints2d_stack1=torch.rand(2, 21, 2, generator=g) * 32, image_size=(32, 32))
    target = {"joints2d": torch.rand(2, 21, 2, generator=g) * 32}
    w = LossWeights(mesh=0, normal=0, edge=0, con3d=0, con2d=0, heatmap=1, pose2d_stack1=1, heatmap2=1)
    terms = compute_losses(out, target, FACES, w)
    torch.testing.assert_close(terms.pose2d, ((out.joints2d - target["joints2d"]) / 32).abs().mean())
    torch.testing.assert_close(terms.total, terms.pose2d + terms.heatmap + terms.pose2d_stack1 + terms.heatmap2)
    with pytest.raises(ValueError, match="2D-only output has no mesh"):
        compute_losses(out, target, FACES, LossWeights())
    with pytest.raises(ValueError, match="not SimpleNamespace"):
        compute_losses(SimpleNamespace(joints2d=out.joints2d, image_size=(32, 32)), target, FACES, w)


def test_view_mapping():
    rot1, rot2 = torch.linalg.qr(torch.randn(1, 3, 3)).Q, torch.linalg.qr(torch.randn(1, 3, 3)).Q
    a1 = torch.tensor([[[2.0, 0, 3], [0, 2, 4]]])
    a2 = torch.tensor([[[0.0, -1, 10], [1, 0, 0]]])
    m = view_mapping({"rot": rot1, "rot_2": rot2, "affine": a1, "affine_2": a2})
    p = torch.tensor([5.0, 7.0])
    p1 = a1[0, :, :2] @ p + a1[0, :, 2]
    p2 = a2[0, :, :2] @ p + a2[0, :, 2]
    torch.testing.assert_close(m["A12"][0, :, :2] @ p1 + m["A12"][0, :, 2], p2)
    x = torch.randn(3)
    torch.testing.assert_close(m["R12"][0] @ (rot1[0] @ x), rot2[0] @ x)
    with pytest.raises(ValueError, match="rot_2"):
        view_mapping({"rot": rot1})


def test_bad_targets_and_weights():
    pred = fake_pred()
    with pytest.raises(ValueError, match=r"target\['vertices'\] has shape"):
        compute_losses(pred, {"vertices": torch.zeros(2, 5, 3), "joints2d": torch.zeros(2, 21, 2)}, FACES, LossWeights())
    with pytest.raises(ValueError, match="NaN"):
        compute_losses(pred, {"vertices": torch.zeros(2, 4, 3), "joints2d": torch.full((2, 21, 2), float("nan"))},
                       FACES, LossWeights())
    with pytest.raises(ConfigError, match="loss.mesh"):
        from_dict(LossWeights, {"mesh": -1.0})
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict(LossWeights, {"meshh": 1.0})


def test_second_stack_heatmap_term():
    pred = fake_pred(seed=2)
    pred.heatmaps2 = torch.randn(2, 21, 8, 8, generator=torch.Generator().manual_seed(5))
    target = {"vertices": torch.randn(2, 4, 3) * 0.05, "joints2d": torch.rand(2, 21, 2) * 128}
    w = LossWeights(mesh=0, pose2d=0, normal=0, edge=0, con3d=0, con2d=0, heatmap2=2.0)
    terms = compute_losses(pred, target, FACES, w)
    hm = heatmap_targets(target["joints2d"], (8, 8), 2.0, (128, 128))
    torch.testing.assert_close(terms.heatmap2, ((pred.heatmaps2 - hm) ** 2).mean())
    torch.testing.assert_close(terms.total, 2.0 * terms.heatmap2)
    assert float(terms.heatmap) == 0.0
    pred.heatmaps2 = None
    with pytest.raises(ValueError, match="heatmaps2"):
        compute_losses(pred, target, FACES, w)


def test_aligned_vertex_loss_ignores_similarity_transforms_and_matches_the_metric():
    from m3dhmr.geometry.procrustes import align_w_scale_batch
    from m3dhmr.losses import aligned_vertex_loss

    g = torch.Generator().manual_seed(3)
    gt = torch.randn(3, 30, 3, generator=g, dtype=torch.float64)
    rot = torch.linalg.qr(torch.randn(3, 3, 3, generator=g, dtype=torch.float64)).Q
    moved = 2.5 * gt @ rot.transpose(1, 2) + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    assert float(aligned_vertex_loss(moved, gt)) < 1e-9  # a similar copy scores zero
    pred = gt + 0.1 * torch.randn(3, 30, 3, generator=g, dtype=torch.float64)
    ref = (align_w_scale_batch(gt, pred) - gt).abs().mean()  # the metric's alignment, naive form
    torch.testing.assert_close(aligned_vertex_loss(pred, gt), ref)
    # Hand-computed: gt = pred shifted is zero; a single displaced point gives a positive loss.
    p = pred.clone().requires_grad_(True)
    aligned_vertex_loss(p, gt).backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0


def test_no_3d_ground_truth_leaves_only_2d_terms_and_finite_gradients():
    pred = fake_pred(requires_grad=True)
    target = {"vertices": torch.randn(2, 4, 3) * 0.05, "joints2d": torch.rand(2, 21, 2) * 128,
              "has_3d": torch.tensor([False, False])}
    w = LossWeights(mesh_aligned=1.0)
    terms = compute_losses(pred, target, FACES, w)
    for name in ("mesh", "normal", "edge", "mesh_aligned"):
        assert float(getattr(terms, name)) == 0.0, name
    torch.testing.assert_close(terms.total, terms.pose2d)
    terms.total.backward()
    assert torch.isfinite(pred.joints2d.grad).all() and pred.joints2d.grad.abs().sum() > 0
    assert pred.vertices.grad is None or float(pred.vertices.grad.abs().sum()) == 0.0


def test_empty_batch_is_zero_not_nan():
    pred = fake_pred(b=0, requires_grad=True)
    target = {"vertices": torch.zeros(0, 4, 3), "joints2d": torch.zeros(0, 21, 2), "has_3d": torch.zeros(0, dtype=bool)}
    terms = compute_losses(pred, target, FACES, LossWeights(con3d=0.0, con2d=0.0))
    for name, value in terms.as_dict().items():
        assert math.isfinite(float(value)), name


def test_loss_terms_log_their_extra_values():
    from m3dhmr.losses import TERMS, LossTerms

    zero = torch.tensor(0.0)
    t = LossTerms(total=torch.tensor(1.5), **dict.fromkeys(TERMS, zero), extra={"real_pose2d": torch.tensor(0.25)})
    d = t.as_dict()
    assert d["real_pose2d"] == 0.25 and d["total"] == 1.5 and "extra" not in d
    assert "real_pose2d" not in LossTerms(total=zero, **dict.fromkeys(TERMS, zero)).as_dict()
