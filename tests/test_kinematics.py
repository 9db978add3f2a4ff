import math

import numpy as np
import pytest
import torch

from m3dhmr.hand.kinematics import (batch_rodrigues, forward_kinematics, influence_skinning, joint_offsets,
                                   linear_blend_skinning, tree_levels, world_transforms)


def rodrigues_naive(aa: np.ndarray) -> np.ndarray:
    theta = np.linalg.norm(aa)
    if theta == 0:
        return np.eye(3)
    k = aa / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx


def test_rodrigues_hand_computed():
    r = batch_rodrigues(torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=torch.float64))[0]
    torch.testing.assert_close(r, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64))
    assert torch.equal(batch_rodrigues(torch.zeros(4, 3)), torch.eye(3).expand(4, 3, 3))


def test_rodrigues_vs_naive_and_orthonormal():
    rng = np.random.default_rng(0)
    aa = rng.normal(size=(50, 3)) * rng.choice([1e-5, 1e-3, 1.0, 3.0], size=(50, 1))
    r = batch_rodrigues(torch.tensor(aa)).numpy()
    for i in range(len(aa)):
        np.testing.assert_allclose(r[i], rodrigues_naive(aa[i]), atol=1e-12)
        np.testing.assert_allclose(r[i] @ r[i].T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r[i]) > 0


def test_rodrigues_gradcheck_and_finite_at_zero():
    aa = torch.randn(3, 3, dtype=torch.float64) * 0.7
    assert torch.autograd.gradcheck(batch_rodrigues, (aa.requires_grad_(),))
    aa0 = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(batch_rodrigues, (aa0,))
    batch_rodrigues(aa0).sum().backward()
    assert torch.isfinite(aa0.grad).all()


def test_rodrigues_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        batch_rodrigues(torch.zeros(2, 4))


PARENTS = (-1, 0, 1, 0)


def fk_naive(rot: np.ndarray, rest: np.ndarray, parents) -> tuple[np.ndarray, np.ndarray]:
    """World transform of each joint by explicit 4x4 products, one joint at a time."""
    num = len(parents)
    world = []
    for j in range(num):
        local = np.eye(4)
        local[:3, :3] = rot[j]
        local[:3, 3] = rest[j] - (rest[parents[j]] if parents[j] >= 0 else 0)
        world.append(local if parents[j] < 0 else world[parents[j]] @ local)
    posed = np.array([w[:3, 3] for w in world])
    skin = []
    for j in range(num):
        inv_rest = np.eye(4)
        inv_rest[:3, 3] = -rest[j]
        skin.append(world[j] @ inv_rest)
    return posed, np.array(skin)


def test_fk_hand_computed():
    # Chain along x; rotate the root by 90 deg about z: joint 1 at (1,0,0) goes to (0,1,0).
    rest = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0]]], dtype=torch.float64)
    aa = torch.zeros(1, 4, 3, dtype=torch.float64)
    aa[0, 0, 2] = math.pi / 2
    posed, _ = forward_kinematics(batch_rodrigues(aa), rest, PARENTS)
    torch.testing.assert_close(posed[0], torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 2, 0], [-1, 0, 0]],
                                                      dtype=torch.float64))


def test_fk_vs_naive():
    rng = np.random.default_rng(1)
    rest = rng.normal(size=(2, 4, 3))
    rot = batch_rodrigues(torch.tensor(rng.normal(size=(2, 4, 3)))).numpy()
    posed, transforms = forward_kinematics(torch.tensor(rot), torch.tensor(rest), PARENTS)
    for b in range(2):
        p_ref, t_ref = fk_naive(rot[b], rest[b], PARENTS)
        np.testing.assert_allclose(posed[b].numpy(), p_ref, atol=1e-12)
        np.testing.assert_allclose(transforms[b].numpy(), t_ref, atol=1e-12)


def test_fk_rest_is_exact_and_bad_parents():
    rest = torch.randn(2, 4, 3, dtype=torch.float64)
    posed, t = forward_kinematics(torch.eye(3, dtype=torch.float64).expand(2, 4, 3, 3), rest, PARENTS)
    assert torch.equal(posed, rest)
    assert torch.equal(t, torch.eye(4, dtype=torch.float64).expand(2, 4, 4, 4))
    with pytest.raises(ValueError, match="parents"):
        forward_kinematics(torch.eye(3).expand(1, 4, 3, 3), torch.zeros(1, 4, 3), (-1, 0, 3, 0))
    with pytest.raises(ValueError, match="disagree"):
        forward_kinematics(torch.eye(3).expand(1, 4, 3, 3), torch.zeros(1, 3, 3), PARENTS)


def test_tree_levels_hand_computed_cached_and_degenerate():
    levels = tree_levels(PARENTS)
    assert [(i.tolist(), p.tolist()) for i, p in levels] == [([1, 3], [0, 0]), ([2], [1])]
    assert tree_levels(PARENTS) is levels                       # grouped once per tree and device
    assert tree_levels((-1,)) == ()                             # a lone root has no levels
    with pytest.raises(ValueError, match="joint 2 has 3"):
        tree_levels((-1, 0, 3, 0))
    with pytest.raises(ValueError, match="joint 0 has 0"):
        tree_levels((0, 0))


def test_world_transforms_vs_naive_loop():
    rng = np.random.default_rng(4)
    parents = (-1, 0, 1, 2, 0, 4, 0, 6, 7, 8)                   # chains of different lengths
    rest = rng.normal(size=(3, len(parents), 3))
    rot = batch_rodrigues(torch.tensor(rng.normal(size=(3, len(parents), 3)))).numpy()
    world, shift = world_transforms(torch.tensor(rot), torch.tensor(rest), tree_levels(parents))
    pos = torch.tensor(rest) + shift
    for b in range(3):
        p_ref, skin = fk_naive(rot[b], rest[b], parents)
        np.testing.assert_allclose(world[b].numpy(), skin[:, :3, :3], atol=1e-12)
        np.testing.assert_allclose(pos[b].numpy(), p_ref, atol=1e-12)
    # A lone root turns about its rest position, which stays put.
    r = torch.tensor(rot[:, :1])
    w1, d1 = world_transforms(r, torch.tensor(rest[:, :1]), tree_levels((-1,)))
    assert torch.equal(w1, r) and torch.equal(d1, torch.zeros(3, 1, 3, dtype=torch.float64))


def test_joint_offsets_hand_computed():
    # Joint at (1, 0, 0) turned 90 deg about z and moved to (0, 1, 0) (displacement (-1, 1, 0)):
    # t = P - R J = (0, 0, 0), a turn about the origin; moved to (0, 3, 0) instead: t = (0, 2, 0).
    R = torch.tensor([[[[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]]], dtype=torch.float64)
    J = torch.tensor([[[1.0, 0, 0]]], dtype=torch.float64)
    torch.testing.assert_close(joint_offsets(R, torch.tensor([[[-1.0, 1, 0]]], dtype=torch.float64), J),
                               torch.zeros(1, 1, 3, dtype=torch.float64))
    torch.testing.assert_close(joint_offsets(R, torch.tensor([[[-1.0, 3, 0]]], dtype=torch.float64), J),
                               torch.tensor([[[0.0, 2, 0]]], dtype=torch.float64))
    # The rest pose gives exactly 0.
    eye = torch.eye(3, dtype=torch.float64).expand(1, 1, 3, 3)
    assert torch.equal(joint_offsets(eye, torch.zeros_like(J), J), torch.zeros(1, 1, 3, dtype=torch.float64))


def lbs_naive(v: np.ndarray, w: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v)
    for b in range(v.shape[0]):
        for i in range(v.shape[1]):
            m = sum(w[i, j] * t[b, j] for j in range(w.shape[1]))
            out[b, i] = (m @ np.append(v[b, i], 1.0))[:3]
    return out


def test_lbs_vs_naive_loop():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(2, 7, 3))
    w = rng.uniform(size=(7, 4))
    w /= w.sum(1, keepdims=True)
    rot = batch_rodrigues(torch.tensor(rng.normal(size=(2, 4, 3))))
    _, t = forward_kinematics(rot, torch.tensor(rng.normal(size=(2, 4, 3))), PARENTS)
    out = linear_blend_skinning(torch.tensor(v), torch.tensor(w), t)
    np.testing.assert_allclose(out.numpy(), lbs_naive(v, w, t.numpy()), atol=1e-12)


def test_lbs_hand_computed_and_errors():
    # Half weight on a joint translated by (2, 0, 0): the vertex moves by (1, 0, 0).
    t = torch.eye(4, dtype=torch.float64).repeat(1, 2, 1, 1)
    t[0, 1, 0, 3] = 2.0
    v = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    out = linear_blend_skinning(v, torch.tensor([[0.5, 0.5]], dtype=torch.float64), t)
    torch.testing.assert_close(out, torch.tensor([[[2.0, 2.0, 3.0]]], dtype=torch.float64))
    with pytest.raises(ValueError, match="weights"):
        linear_blend_skinning(v, torch.ones(1, 3), t)


def test_fk_lbs_gradcheck():
    rest = torch.randn(1, 4, 3, dtype=torch.float64)
    v = torch.randn(1, 5, 3, dtype=torch.float64)
    w = torch.softmax(torch.randn(5, 4, dtype=torch.float64), dim=1)

    def f(aa):
        posed, t = forward_kinematics(batch_rodrigues(aa), rest, PARENTS)
        return posed, linear_blend_skinning(v, w, t)

    aa = (torch.randn(1, 4, 3, dtype=torch.float64) * 0.5).requires_grad_()
    assert torch.autograd.gradcheck(f, (aa,))
    assert torch.autograd.gradcheck(f, (torch.zeros(1, 4, 3, dtype=torch.float64, requires_grad=True),))


def influence_skinning_naive(v, world, offsets, inf, iw):
    parts = np.zeros(v.shape[:2] + inf.shape[1:] + (3,))
    for b in range(v.shape[0]):
        for i in range(v.shape[1]):
            for k in range(inf.shape[1]):
                j = inf[i, k]
                parts[b, i, k] = world[b, j] @ v[b, i] + offsets[b, j]
    return np.einsum("vk,bvkx->bvx", iw, parts), parts


def sparse_sample(seed: int, n: int = 7):
    """Random FK motions of the 4-joint tree and skinning weights with 2 influences per vertex."""
    rng = np.random.default_rng(seed)
    v = torch.tensor(rng.normal(size=(2, n, 3)))
    rest = torch.tensor(rng.normal(size=(2, 4, 3)))
    world, shift = world_transforms(batch_rodrigues(torch.tensor(rng.normal(size=(2, 4, 3)))), rest,
                                    tree_levels(PARENTS))
    inf = torch.tensor(np.stack([rng.permutation(4)[:2] for _ in range(n)]))
    iw = torch.tensor(rng.uniform(0.1, 1.0, size=(n, 2)))
    iw /= iw.sum(1, keepdim=True)
    return v, world, joint_offsets(world, shift, rest), inf, iw


def test_influence_skinning_vs_naive_loop_and_dense():
    v, world, offsets, inf, iw = sparse_sample(5)
    out, parts = influence_skinning(v, world, offsets, inf, iw)
    ref, ref_parts = influence_skinning_naive(v.numpy(), world.numpy(), offsets.numpy(), inf.numpy(), iw.numpy())
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(parts.numpy(), ref_parts, atol=1e-12)
    # The same blend as the dense weights.
    dense = torch.zeros(v.shape[1], 4, dtype=torch.float64).scatter_add_(1, inf, iw)
    transforms = torch.eye(4, dtype=torch.float64).repeat(2, 4, 1, 1)
    transforms[:, :, :3, :3], transforms[:, :, :3, 3] = world, offsets
    torch.testing.assert_close(out, linear_blend_skinning(v, dense, transforms), rtol=0, atol=1e-12)


def test_influence_skinning_hand_computed_and_empty():
    # Half weight on a joint translated by (2, 0, 0) (padding influence with weight 0): moves by (1, 0, 0).
    world = torch.eye(3, dtype=torch.float64).expand(1, 2, 3, 3)
    offsets = torch.tensor([[[0.0, 0, 0], [2, 0, 0]]], dtype=torch.float64)
    v = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    out, parts = influence_skinning(v, world, offsets, torch.tensor([[0, 1, 0]]),
                                    torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[[2.0, 2.0, 3.0]]], dtype=torch.float64))
    torch.testing.assert_close(parts[0, 0, 1], torch.tensor([3.0, 2.0, 3.0], dtype=torch.float64))
    out, parts = influence_skinning(v[:, :0], world, offsets, torch.zeros(0, 3, dtype=torch.long),
                                    torch.zeros(0, 3, dtype=torch.float64))
    assert out.shape == (1, 0, 3) and parts.shape == (1, 0, 3, 3)


def test_influence_skinning_gradcheck():
    v, world, offsets, inf, iw = sparse_sample(6, n=4)
    args = (v.requires_grad_(), world.requires_grad_(), offsets.requires_grad_())
    assert torch.autograd.gradcheck(lambda a, b, c: influence_skinning(a, b, c, inf, iw), args)
