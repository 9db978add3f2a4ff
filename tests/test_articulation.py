"""The fitter's articulated hand (:mod:`m3dhmr.hand.articulation`) and the SO(3) helpers it uses
(:func:`~m3dhmr.hand.kinematics.skew`, :func:`~m3dhmr.hand.kinematics.so3_left_jacobian`,
:func:`~m3dhmr.hand.kinematics.matrix_to_axis_angle`, :func:`~m3dhmr.hand.kinematics.matrix_to_quaternion`).

References: the models' own forward passes (``model(pose, shape)``), autograd Jacobians,
per-vertex loops, SciPy and :func:`m3dhmr.geometry.rotations.rotation_to_axis_angle`.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch

from m3dhmr.geometry.rotations import random_rotation, rotation_to_axis_angle
from m3dhmr.hand import load_mano, load_open_hand, sample_poses, sample_shapes
from m3dhmr.hand.articulation import (articulated_hand, pose_hand, pose_jacobian, shaped_rest, tangents,
                                      vertex_jacobian, vertex_normal_equations)
from m3dhmr.hand.kinematics import (batch_rodrigues, matrix_to_axis_angle, matrix_to_quaternion,
                                    quaternion_to_xyzw, skew, so3_left_jacobian)
from test_mano import mano_dict, write_pickle

F64 = torch.float64


# ----------------------------------------------------------------------------- fixtures and samples

@pytest.fixture(scope="module")
def open_hand():
    m = load_open_hand(F64)
    return m, articulated_hand(m)


@pytest.fixture(scope="module")
def mano_paths(tmp_path_factory):
    """Two MANO-format pickles: with pose correctives (the default fixture) and without."""
    d = tmp_path_factory.mktemp("mano_art")
    paths = {}
    for name, scale in (("correctives", 1e-3), ("no_correctives", 0.0)):
        data, _ = mano_dict(posedirs_scale=scale)
        paths[name] = d / f"{name}.pkl"
        write_pickle(paths[name], data)
    return paths


def random_open_hand_sample(n: int, seed: int):
    """Open-hand pose (n, 48) with a uniform random global rotation, shape (n, 9), translation (n, 3)."""
    rng = np.random.default_rng(seed)
    pose = sample_poses(n, rng)
    for i in range(n):
        pose[i, :3] = rotation_to_axis_angle(random_rotation(rng))
    shape = sample_shapes(n, rng)
    t = rng.normal(0.0, 0.1, size=(n, 3))
    return torch.tensor(pose), torch.tensor(shape), torch.tensor(t)


def random_mano_sample(hand, n: int, seed: int):
    """Local values a (n, 16, 3) in MANO's joint order (natural finger values), betas (n, 10), translation."""
    rng = np.random.default_rng(seed)
    kin = torch.tensor(sample_poses(n, rng)).reshape(n, 16, 3)         # FreiHAND kinematic order
    for i in range(n):
        kin[i, 0] = torch.tensor(rotation_to_axis_angle(random_rotation(rng)))
    a = torch.zeros_like(kin)
    a[:, hand.freihand_order()] = kin
    return a, torch.tensor(rng.normal(0.0, 1.0, size=(n, 10))), torch.tensor(rng.normal(0.0, 0.1, size=(n, 3)))


# ----------------------------------------------------------------------------- pose_hand vs the models

def test_pose_hand_reproduces_the_open_hand(open_hand):
    m, hand = open_hand
    assert hand.convention == "open_hand" and hand.num_params == 3 + 48 + 9
    pose, shape, t = random_open_hand_sample(6, seed=0)
    out = m(pose, shape)
    posed = pose_hand(hand, pose.reshape(6, 16, 3), shape, t)
    torch.testing.assert_close(posed.vertices, out.vertices + t[:, None], rtol=0, atol=1e-12)
    # The open hand's model order is FreiHAND's kinematic order.
    torch.testing.assert_close(posed.joints, out.joints[:, hand.freihand] + t[:, None], rtol=0, atol=1e-12)
    # The tips are vertices.
    torch.testing.assert_close(posed.vertices[:, hand.tips], out.joints[:, [4, 8, 12, 16, 20]] + t[:, None],
                               rtol=0, atol=1e-12)
    # A vertex subset is the same rows.
    ids = torch.tensor([0, 17, 401, 899])
    sub = pose_hand(hand, pose.reshape(6, 16, 3), shape, t, vertex_ids=ids)
    torch.testing.assert_close(sub.vertices, posed.vertices[:, ids], rtol=0, atol=1e-15)
    torch.testing.assert_close(sub.joints, posed.joints, rtol=0, atol=0)


def test_pose_hand_at_rest_is_the_template(open_hand):
    m, hand = open_hand
    zeros = torch.zeros(2, 16, 3, dtype=F64)
    posed = pose_hand(hand, zeros, torch.zeros(2, 9, dtype=F64), torch.zeros(2, 3, dtype=F64))
    torch.testing.assert_close(posed.vertices, m.vertices_rest.expand(2, -1, -1), rtol=0, atol=1e-15)
    assert torch.equal(posed.rot, torch.eye(3, dtype=F64).expand(2, 16, 3, 3))


@pytest.mark.parametrize("flat_hand_mean", [True, False])
def test_pose_hand_reproduces_mano(mano_paths, flat_hand_mean):
    mano = load_mano(mano_paths["correctives"], flat_hand_mean=flat_hand_mean, dtype=F64)
    hand = articulated_hand(mano)
    assert hand.convention == "mano" and hand.posedirs is not None
    a, betas, t = random_mano_sample(hand, 5, seed=1)
    out = mano(hand.native_pose(a), betas)
    posed = pose_hand(hand, a, betas, t)
    torch.testing.assert_close(posed.vertices, out.vertices + t[:, None], rtol=0, atol=1e-12)
    torch.testing.assert_close(posed.joints, out.joints[:, hand.freihand] + t[:, None], rtol=0, atol=1e-12)
    torch.testing.assert_close(hand.local_from_native(hand.native_pose(a)), a, rtol=0, atol=1e-12)
    if not flat_hand_mean:
        # native_pose subtracts hands_mean, which the model adds back: zero local values are not a zero pose.
        assert hand.native_pose(torch.zeros(1, 16, 3, dtype=F64)).abs().max() > 0.01


def shaped_rest_naive(m, shape: torch.Tensor):
    """One hand at a time through the open hand's own (non-linear-looking) shape code."""
    vs, js = [], []
    for b in range(shape.shape[0]):
        v, j = m.shaped_rest(shape[b:b + 1], 1)
        vs.append(v[0])
        js.append(j[0])
    return torch.stack(vs), torch.stack(js)


def test_open_hand_shape_basis_is_exact(open_hand):
    """sigma(s) * (v0 + sum_i s_i B_i) equals the open hand's affine per-bone shape map for any s
    (also far outside the documented ranges, which only exact affinity survives)."""
    m, hand = open_hand
    rng = np.random.default_rng(3)
    shape = torch.tensor(np.concatenate([sample_shapes(4, rng), 3.0 * sample_shapes(4, rng)]))
    v, j = shaped_rest(hand, shape)
    v_ref, j_ref = shaped_rest_naive(m, shape)
    torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-13)
    torch.testing.assert_close(j, j_ref, rtol=0, atol=1e-13)
    ids = torch.tensor([5, 300, 650])
    vs, js = shaped_rest(hand, shape, ids)
    torch.testing.assert_close(vs, v_ref[:, ids], rtol=0, atol=1e-13)
    torch.testing.assert_close(js, j_ref, rtol=0, atol=1e-13)
    # Hand-computed: only the scale value set scales the rest hand about the origin (the wrist).
    s = torch.zeros(1, 9, dtype=F64)
    s[0, hand.shape_names.index("scale")] = 0.1
    v, j = shaped_rest(hand, s)
    torch.testing.assert_close(v[0], 1.1 * hand.v0, rtol=0, atol=1e-15)
    torch.testing.assert_close(j[0], 1.1 * hand.joints0, rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- Jacobians

def autograd_jacobian(hand, a, shape, t, vertex_ids=None):
    """(N, 3, P) and (16, 3, P) of one hand by forward-mode autograd of pose_hand."""
    S = shape.shape[1]

    def f(x):
        posed = pose_hand(hand, x[3:51].reshape(1, 16, 3), x[51:][None], x[:3][None], vertex_ids)
        return posed.vertices[0], posed.joints[0]

    x = torch.cat([t[0], a[0].reshape(-1), shape[0]])
    assert x.shape == (51 + S,)
    jv, jj = torch.autograd.functional.jacobian(f, x, vectorize=True, strategy="forward-mode")
    return jv, jj


def check_jacobian(hand, a, shape, t, vertex_ids=None, atol=1e-10):
    posed = pose_hand(hand, a, shape, t, vertex_ids)
    jv, jj = pose_jacobian(hand, a, shape, posed, vertex_ids)
    P = hand.num_params
    assert jv.shape == (a.shape[0], posed.vertices.shape[1], 3, P) and jj.shape == (a.shape[0], 16, 3, P)
    for b in range(a.shape[0]):              # one hand at a time: the batch must not mix hands
        rv, rj = autograd_jacobian(hand, a[b:b + 1], shape[b:b + 1], t[b:b + 1], vertex_ids)
        torch.testing.assert_close(jv[b], rv, rtol=0, atol=atol)
        torch.testing.assert_close(jj[b], rj, rtol=0, atol=atol)
    return jv, jj


def test_pose_jacobian_matches_autograd_open_hand(open_hand):
    _, hand = open_hand
    pose, shape, t = random_open_hand_sample(2, seed=4)
    shape[1] *= 2.0                                         # the scale column is not linear in s: far from 0
    check_jacobian(hand, pose.reshape(2, 16, 3), shape, t)
    check_jacobian(hand, pose.reshape(2, 16, 3), shape, t, vertex_ids=torch.tensor([3, 250, 777, 12]))


def test_pose_jacobian_at_rest_is_finite_and_matches_autograd(open_hand):
    _, hand = open_hand
    z = torch.zeros(1, 16, 3, dtype=F64)
    jv, jj = check_jacobian(hand, z, torch.zeros(1, 9, dtype=F64), torch.zeros(1, 3, dtype=F64))
    assert torch.isfinite(jv).all() and torch.isfinite(jj).all()
    # The translation columns are the identity for every point.
    torch.testing.assert_close(jv[0, :, :, :3], torch.eye(3, dtype=F64).expand(900, 3, 3), rtol=0, atol=0)


def test_pose_jacobian_matches_autograd_mano_without_correctives(mano_paths):
    """MANO with posedirs = 0, where the analytic Jacobian is the exact one.

    With pose correctives, :func:`pose_jacobian` deliberately leaves out d(posedirs term)/da
    (a Gauss-Newton approximation: the fit's zero-residual fixed points are unchanged, and the
    term is millimetres), so it can only equal autograd on a fixture without them."""
    for flat in (True, False):
        mano = load_mano(mano_paths["no_correctives"], flat_hand_mean=flat, dtype=F64)
        hand = articulated_hand(mano)
        assert float(hand.posedirs.abs().max()) == 0.0
        a, betas, t = random_mano_sample(hand, 2, seed=5)
        check_jacobian(hand, a, betas, t)
        check_jacobian(hand, a, betas, t, vertex_ids=torch.tensor([1, 320, 744, 600]))


def test_pose_jacobian_with_mano_correctives_holds_them_fixed(mano_paths):
    """With correctives, the analytic Jacobian is that of a hand whose correctives are frozen at the
    current pose (baked into its rest mesh); and it is not the full Jacobian (else the test above
    would not need its fixture)."""
    mano = load_mano(mano_paths["correctives"], dtype=F64)
    hand = articulated_hand(mano)
    a, betas, t = random_mano_sample(hand, 1, seed=6)
    posed = pose_hand(hand, a, betas, t)
    jv, jj = pose_jacobian(hand, a, betas, posed)
    full_v, full_j = autograd_jacobian(hand, a, betas, t)
    assert (jv[0] - full_v).abs().max() > 1e-5                   # the left-out term is real
    torch.testing.assert_close(jj[0], full_j, rtol=0, atol=1e-10)   # joints do not see the correctives
    # Bake this pose's correctives into v0 and drop posedirs: the exact Jacobian of that hand.
    no_shape = pose_hand(hand, a, torch.zeros_like(betas), t).rest_vertices[0]
    frozen = dataclasses.replace(hand, v0=no_shape, posedirs=None)
    ref_v, ref_j = autograd_jacobian(frozen, a, betas, t)
    torch.testing.assert_close(jv[0], ref_v, rtol=0, atol=1e-10)
    torch.testing.assert_close(jj[0], ref_j, rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- normal equations

def normal_equations_naive(J: torch.Tensor, r: torch.Tensor):
    """sum over vertices of J_v^T J_v and J_v^T r_v, one vertex at a time."""
    B, N, _, P = J.shape
    H = torch.zeros(B, P, P, dtype=J.dtype)
    g = torch.zeros(B, P, dtype=J.dtype)
    for b in range(B):
        for v in range(N):
            H[b] += J[b, v].T @ J[b, v]
            g[b] += J[b, v].T @ r[b, v]
    return H, g


@pytest.mark.parametrize("which", ["open_hand", "mano"])
def test_vertex_normal_equations_vs_naive(open_hand, mano_paths, which):
    if which == "open_hand":
        _, hand = open_hand
        pose, shape, t = random_open_hand_sample(2, seed=7)
        a = pose.reshape(2, 16, 3)
    else:
        hand = articulated_hand(load_mano(mano_paths["correctives"], flat_hand_mean=False, dtype=F64))
        a, shape, t = random_mano_sample(hand, 2, seed=7)
    ids = torch.as_tensor(np.random.default_rng(8).choice(hand.num_vertices, 40, replace=False))
    posed = pose_hand(hand, a, shape, t, ids)
    tg = tangents(hand, a, shape, posed, ids)
    r = torch.randn(2, len(ids), 3, dtype=F64, generator=torch.Generator().manual_seed(0)) * 0.01
    H, g = vertex_normal_equations(tg, r)
    H_ref, g_ref = normal_equations_naive(vertex_jacobian(tg), r)
    torch.testing.assert_close(H, H_ref, rtol=0, atol=1e-13)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-13)
    torch.testing.assert_close(H, H.transpose(1, 2), rtol=0, atol=1e-15)


def test_vertex_normal_equations_hand_computed(open_hand):
    """One vertex, only the root turned (90 degrees about z), wrist at the origin.

    The root's z column of J is how a further turn about z moves the point: e_z x u with
    u = x - P_root; translation columns are the identity. So
    J^T J [tz, root_z] = (e_z x u)_z = 0,  [tx, root_z] = -u_y,  [ty, root_z] = u_x,
    [root_z, root_z] = u_x^2 + u_y^2,  [tx, tx] = 1 (one vertex), and J^T r [root_z] = -u_y r_x + u_x r_y.
    """
    _, hand = open_hand
    vid = 400
    a = torch.zeros(1, 16, 3, dtype=F64)
    a[0, 0] = torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64)
    shape, t = torch.zeros(1, 9, dtype=F64), torch.zeros(1, 3, dtype=F64)
    ids = torch.tensor([vid])
    posed = pose_hand(hand, a, shape, t, ids)
    tg = tangents(hand, a, shape, posed, ids)
    r = torch.tensor([[[0.3, -0.2, 0.5]]], dtype=F64)
    H, g = vertex_normal_equations(tg, r)
    x, y, z = hand.v0[vid].tolist()
    ux, uy = -y, x                                    # Rz(90) (x, y, z) = (-y, x, z); the wrist is at ~0
    rz = 3 + 2                                        # column of the root's z value
    assert H[0, 0, 0].item() == pytest.approx(1.0, abs=1e-15)
    assert H[0, 0, 1].item() == pytest.approx(0.0, abs=1e-15)
    assert H[0, 0, rz].item() == pytest.approx(-uy, abs=1e-9)
    assert H[0, 1, rz].item() == pytest.approx(ux, abs=1e-9)
    assert H[0, 2, rz].item() == pytest.approx(0.0, abs=1e-12)
    assert H[0, rz, rz].item() == pytest.approx(ux * ux + uy * uy, abs=1e-9)
    assert g[0, rz].item() == pytest.approx(-uy * 0.3 + ux * -0.2, abs=1e-9)
    torch.testing.assert_close(g[0, :3], r[0, 0], rtol=0, atol=1e-15)


def test_vertex_normal_equations_no_vertices(open_hand):
    _, hand = open_hand
    ids = torch.zeros(0, dtype=torch.long)
    a, s, t = torch.zeros(1, 16, 3, dtype=F64), torch.zeros(1, 9, dtype=F64), torch.zeros(1, 3, dtype=F64)
    posed = pose_hand(hand, a, s, t, ids)
    H, g = vertex_normal_equations(tangents(hand, a, s, posed, ids), posed.vertices)
    assert H.shape == (1, 60, 60) and g.shape == (1, 60)
    assert torch.equal(H, torch.zeros_like(H)) and torch.equal(g, torch.zeros_like(g))


# ----------------------------------------------------------------------------- gradcheck

def test_gradcheck_batch_rodrigues_and_left_jacobian():
    gen = torch.Generator().manual_seed(1)
    aa = (torch.randn(4, 3, dtype=F64, generator=gen) * 0.9).requires_grad_()
    assert torch.autograd.gradcheck(batch_rodrigues, (aa,))
    assert torch.autograd.gradcheck(so3_left_jacobian, (aa,))
    tiny = torch.tensor([[0.0, 0.0, 0.0], [1e-4, -2e-4, 5e-5]], dtype=F64, requires_grad=True)  # Taylor branch
    assert torch.autograd.gradcheck(batch_rodrigues, (tiny,))
    assert torch.autograd.gradcheck(so3_left_jacobian, (tiny,))


def test_gradcheck_matrix_to_axis_angle_away_from_pi():
    gen = torch.Generator().manual_seed(2)
    axis = torch.nn.functional.normalize(torch.randn(6, 3, dtype=F64, generator=gen), dim=-1)
    # Angles where each of Shepperd's branches wins clearly (the trace for small angles, a diagonal
    # entry for large ones), away from pi where the axis-angle vector jumps.
    angles = torch.tensor([0.2, 0.9, 1.6, 2.2, 2.6, 2.8], dtype=F64)
    rot = batch_rodrigues(axis * angles[:, None]).detach().requires_grad_()
    assert torch.autograd.gradcheck(matrix_to_axis_angle, (rot,))
    assert torch.autograd.gradcheck(matrix_to_quaternion, (rot,))


def test_gradcheck_pose_hand(open_hand, mano_paths):
    ids = torch.tensor([10, 333, 640])
    for hand, seed in ((open_hand[1], 0), (articulated_hand(load_mano(mano_paths["correctives"], dtype=F64)), 1)):
        gen = torch.Generator().manual_seed(seed)
        a = (torch.randn(1, 16, 3, dtype=F64, generator=gen) * 0.3)
        shape = torch.randn(1, hand.num_shape, dtype=F64, generator=gen) * 0.05
        t = torch.randn(1, 3, dtype=F64, generator=gen) * 0.1
        joints_ = [0, 4, 9]                                     # the root, a first and a second phalanx joint

        def f(sub, s, tr):
            full = a.index_copy(1, torch.tensor(joints_), sub)
            posed = pose_hand(hand, full, s, tr, ids)
            return posed.vertices, posed.joints

        sub = a[:, joints_].clone().requires_grad_()
        assert torch.autograd.gradcheck(f, (sub, shape.clone().requires_grad_(), t.clone().requires_grad_()))


# ----------------------------------------------------------------------------- skew and so3_left_jacobian

def test_skew_hand_computed_and_vs_cross():
    torch.testing.assert_close(skew(torch.tensor([1.0, 2.0, 3.0], dtype=F64)),
                               torch.tensor([[0.0, -3, 2], [3, 0, -1], [-2, 1, 0]], dtype=F64), rtol=0, atol=0)
    gen = torch.Generator().manual_seed(3)
    v, w = torch.randn(2, 5, 3, 3, dtype=F64, generator=gen)
    k = skew(v)
    assert k.shape == (5, 3, 3, 3)
    for i in range(5):
        for j in range(3):
            torch.testing.assert_close(k[i, j] @ w[i, j], torch.linalg.cross(v[i, j], w[i, j]), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="shape"):
        skew(torch.zeros(4, 2))


def vee(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3): the vector of the skew-symmetric part."""
    a = 0.5 * (m - m.transpose(-1, -2))
    return torch.stack([a[..., 2, 1], a[..., 0, 2], a[..., 1, 0]], -1)


def test_so3_left_jacobian_meets_its_definition():
    """exp(aa + h d) exp(aa)^T = exp(h J_l(aa) d) + O(h^2): central differences of the left side."""
    gen = torch.Generator().manual_seed(4)
    aa = torch.randn(8, 3, dtype=F64, generator=gen)
    aa[:4] *= 0.3
    aa[4:] *= 2.0 / aa[4:].norm(dim=-1, keepdim=True)          # angle 2 rad
    aa[0] = 1e-4 * aa[0]                                        # Taylor branch
    jl = so3_left_jacobian(aa)
    h = 1e-5
    r0t = batch_rodrigues(aa).transpose(-1, -2)
    for c in range(3):
        d = torch.zeros(3, dtype=F64)
        d[c] = 1.0
        fd = vee(batch_rodrigues(aa + h * d) @ r0t - batch_rodrigues(aa - h * d) @ r0t) / (2 * h)
        torch.testing.assert_close(fd, jl[:, :, c], rtol=0, atol=1e-9)
    # J_l(aa) aa = aa: a change along the axis only turns further about it.
    torch.testing.assert_close((jl @ aa[..., None])[..., 0], aa, rtol=0, atol=1e-14)


def test_so3_left_jacobian_hand_computed():
    assert torch.equal(so3_left_jacobian(torch.zeros(2, 3, dtype=F64)), torch.eye(3, dtype=F64).expand(2, 3, 3))
    # 90 degrees about z: [[sin t / t, -(1 - cos t) / t, 0], [(1 - cos t) / t, sin t / t, 0], [0, 0, 1]].
    c = 2.0 / math.pi
    expected = torch.tensor([[c, -c, 0.0], [c, c, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    torch.testing.assert_close(so3_left_jacobian(torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64)), expected,
                               rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- matrix_to_axis_angle / quaternion

def rotation_test_set() -> np.ndarray:
    from scipy.spatial.transform import Rotation

    mats = list(Rotation.random(40, random_state=0).as_matrix())
    for angle in (0.0, 1e-9, 1e-6, 1e-4, 0.5, math.pi / 2, 2.5, math.pi - 1e-3, math.pi - 1e-6):
        for axis in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 2, -2], [-3, 1, 0.5]):
            mats.append(Rotation.from_rotvec(np.array(axis) / np.linalg.norm(axis) * angle).as_matrix())
    return np.stack(mats)


def test_matrix_to_axis_angle_vs_scipy_and_numpy_loop():
    from scipy.spatial.transform import Rotation

    mats = rotation_test_set()
    got = matrix_to_axis_angle(torch.tensor(mats)).numpy()
    assert got.shape == (len(mats), 3)
    for i, R in enumerate(mats):
        np.testing.assert_allclose(got[i], rotation_to_axis_angle(R), rtol=0, atol=1e-9)
        np.testing.assert_allclose(got[i], Rotation.from_matrix(R).as_rotvec(), rtol=0, atol=1e-9)
        assert np.linalg.norm(got[i]) <= math.pi + 1e-12
    torch.testing.assert_close(batch_rodrigues(torch.tensor(got)), torch.tensor(mats), rtol=0, atol=1e-12)
    # Batched shapes are kept.
    assert matrix_to_axis_angle(torch.tensor(mats[:6]).reshape(2, 3, 3, 3)).shape == (2, 3, 3)


def test_matrix_to_axis_angle_hand_computed_and_at_pi():
    torch.testing.assert_close(matrix_to_axis_angle(torch.eye(3, dtype=F64)), torch.zeros(3, dtype=F64),
                               rtol=0, atol=0)
    rz = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=F64)           # 90 degrees about z
    torch.testing.assert_close(matrix_to_axis_angle(rz), torch.tensor([0, 0, math.pi / 2], dtype=F64),
                               rtol=0, atol=1e-15)
    # Exactly pi: aa and -aa are the same rotation; either is right.
    for axis in ([1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 2, -2]):
        u = torch.tensor(axis, dtype=F64) / np.linalg.norm(axis)
        R = 2 * torch.outer(u, u) - torch.eye(3, dtype=F64)                       # rotation by pi about u
        got = matrix_to_axis_angle(R)
        assert got.norm().item() == pytest.approx(math.pi, abs=1e-12)
        assert min((got - math.pi * u).abs().max(), (got + math.pi * u).abs().max()) < 1e-12
        torch.testing.assert_close(batch_rodrigues(got), R, rtol=0, atol=1e-12)


def test_matrix_to_quaternion_vs_scipy():
    from scipy.spatial.transform import Rotation

    mats = rotation_test_set()
    q = matrix_to_quaternion(torch.tensor(mats))
    assert q.shape == (len(mats), 4)
    assert (q[:, 0] >= 0).all()
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(len(mats), dtype=F64), rtol=0, atol=1e-14)
    xyzw = quaternion_to_xyzw(q).numpy()
    for i, R in enumerate(mats):
        ref = Rotation.from_matrix(R).as_quat()          # (x, y, z, w)
        ref = -ref if ref[3] < 0 else ref
        np.testing.assert_allclose(xyzw[i], ref, rtol=0, atol=1e-12)
    # Hand case: 90 degrees about z is (cos 45, 0, 0, sin 45) in (w, x, y, z).
    rz = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=F64)
    s = math.sqrt(0.5)
    torch.testing.assert_close(matrix_to_quaternion(rz), torch.tensor([s, 0, 0, s], dtype=F64), rtol=0, atol=1e-15)
    torch.testing.assert_close(quaternion_to_xyzw(torch.tensor([1.0, 2, 3, 4])), torch.tensor([2.0, 3, 4, 1]))
