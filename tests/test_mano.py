"""MANO loader, tested with a MANO-format pickle written from the open hand (MANO itself cannot ship)."""

import copyreg
import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from m3dhmr import conventions as cv
from m3dhmr.cli import main as cli_main
from m3dhmr.hand import load_mano, load_template, load_open_hand
from m3dhmr.conventions import KINEMATIC_JOINTS
from m3dhmr.hand.kinematics import batch_rodrigues
from m3dhmr.hand.mano import MANO_TO_FREIHAND, read_mano_pickle
from m3dhmr.hand.open_hand import load_open_hand_asset

MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)


class Ch:
    """Pickles like a chumpy array from Python 2: copy_reg._reconstructor + a state dict with 'x'."""

    def __init__(self, x):
        self.x = x

    def __reduce__(self):
        return copyreg._reconstructor, (Ch, object, None), {"x": self.x, "label": None}


Ch.__module__ = "chumpy.ch"


def _mano_column(k: int) -> int:
    """MANO skinning joint of the open hand's kinematic joint k."""
    return MANO_TO_FREIHAND[KINEMATIC_JOINTS[k]]


def mano_dict(seed: int = 0, posedirs_scale: float = 1e-3):
    """A MANO-layout dict from the open hand, vertices permuted so its tips sit at MANO's tip ids."""
    a = load_open_hand_asset().arrays
    n = len(a["vertices"])
    order = np.full(n, -1)
    order[list(cv.MANO_TIP_VERTICES)] = a["tip_vertices"]
    rest = [i for i in range(n) if i not in set(a["tip_vertices"].tolist())]
    order[order < 0] = rest
    inverse = np.argsort(order)
    col = [next(k for k in range(16) if _mano_column(k) == m) for m in range(16)]
    reg16 = a["joint_regressor"][[j for j in KINEMATIC_JOINTS]][:, order]
    rng = np.random.default_rng(seed)
    return {
        "v_template": a["vertices"][order],
        "f": inverse[a["faces"]].astype(np.uint32),
        "weights": a["skinning_weights"][order][:, col],
        "kintree_table": np.array([[4294967295] + list(MANO_PARENTS[1:]), list(range(16))], dtype=np.int64),
        "J_regressor": sp.csc_matrix(reg16[col]),
        "shapedirs": Ch(rng.normal(0, 0.003, size=(n, 3, 10))),
        "posedirs": rng.normal(0, posedirs_scale, size=(n, 3, 135)),
        "hands_components": np.eye(45),
        "hands_coeffs": np.zeros((3, 45)),
        "hands_mean": rng.normal(0, 0.2, size=45),
        "J": (reg16[col] @ a["vertices"][order]),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }, order


def write_pickle(path, obj) -> None:
    """Pickle with protocol 2 (as MANO's files) while a fake ``chumpy.ch`` module exists."""
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    chumpy, ch = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    ch.Ch = Ch
    chumpy.ch = ch
    sys.modules.update({"chumpy": chumpy, "chumpy.ch": ch})
    try:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


@pytest.fixture(scope="module")
def fixture_path(tmp_path_factory):
    d, order = mano_dict()
    path = tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl"
    write_pickle(path, d)
    return path, d, order


def test_read_round_trip(fixture_path):
    path, d, _ = fixture_path
    assert b"chumpy.ch" in path.read_bytes() and b"_reconstructor" in path.read_bytes()
    assert "chumpy" not in sys.modules
    got = read_mano_pickle(path)
    assert "chumpy" not in sys.modules                      # never imported, only shimmed
    np.testing.assert_array_equal(got["shapedirs"], d["shapedirs"].x)
    assert sp.issparse(got["J_regressor"]) and got["J_regressor"].format == "csc"
    np.testing.assert_array_equal(got["J_regressor"].toarray(), d["J_regressor"].toarray())
    for k in ("v_template", "f", "weights", "kintree_table", "posedirs", "hands_mean"):
        np.testing.assert_array_equal(got[k], d[k])
        assert got[k].dtype == d[k].dtype
    assert got["bs_style"] == "lbs"


def mano_naive(d, pose: np.ndarray, betas: np.ndarray):
    """MANO forward, one joint and one vertex at a time (float64)."""
    sd = d["shapedirs"].x if isinstance(d["shapedirs"], Ch) else d["shapedirs"]
    v = d["v_template"] + sd @ betas
    jreg = d["J_regressor"].toarray()
    joints = jreg @ v
    rots = [batch_rodrigues(torch.tensor(pose[3 * j:3 * j + 3]))[None].numpy()[0] for j in range(16)]
    feat = np.concatenate([(r - np.eye(3)).ravel() for r in rots[1:]])
    v = v + d["posedirs"] @ feat
    world = []
    for j in range(16):
        m = np.eye(4)
        m[:3, :3] = rots[j]
        p = MANO_PARENTS[j]
        m[:3, 3] = joints[j] - (joints[p] if p >= 0 else 0)
        world.append(m if p < 0 else world[p] @ m)
    out = np.zeros_like(v)
    for i in range(len(v)):
        t = np.zeros((4, 4))
        for j in range(16):
            rel = world[j].copy()
            rel[:3, 3] -= world[j][:3, :3] @ joints[j]
            t += d["weights"][i, j] * rel
        out[i] = t[:3, :3] @ v[i] + t[:3, 3]
    posed_j = np.array([w[:3, 3] for w in world])
    j21 = np.zeros((21, 3))
    for j, m in enumerate(MANO_TO_FREIHAND):
        if m >= 0:
            j21[j] = posed_j[m]
    j21[list(cv.TIP_JOINTS)] = out[list(cv.MANO_TIP_VERTICES)]
    return out, j21


def test_forward_vs_naive(fixture_path):
    path, d, _ = fixture_path
    mano = load_mano(path, dtype=torch.float64)
    assert mano.num_shape == 10 and mano.pose_convention == "mano"
    rng = np.random.default_rng(1)
    pose, betas = rng.normal(0, 0.4, size=(2, 48)), rng.normal(0, 1, size=(2, 10))
    out = mano(torch.tensor(pose), torch.tensor(betas))
    for b in range(2):
        v_ref, j_ref = mano_naive(d, pose[b], betas[b])
        np.testing.assert_allclose(out.vertices[b].numpy(), v_ref, atol=1e-12)
        np.testing.assert_allclose(out.joints[b].numpy(), j_ref, atol=1e-12)


def test_rest_is_template_and_hands_mean(fixture_path):
    path, d, _ = fixture_path
    mano = load_mano(path, dtype=torch.float64)
    out = mano(torch.zeros(1, 48, dtype=torch.float64))
    assert torch.equal(out.vertices[0], torch.tensor(d["v_template"]))
    t = load_template(f"mano:{path}")
    assert t.name == "mano" and torch.equal(mano.faces, torch.tensor(t.faces))
    np.testing.assert_allclose(out.joints[0].numpy(), t.rest_joints(), atol=1e-15)
    # flat_hand_mean=False adds hands_mean to the 45 finger values (manopth / FreiHAND convention).
    pose = torch.randn(2, 48, dtype=torch.float64) * 0.3
    shifted = pose.clone()
    shifted[:, 3:] += torch.tensor(d["hands_mean"])
    torch.testing.assert_close(load_mano(path, flat_hand_mean=False, dtype=torch.float64)(pose).vertices,
                               mano(shifted).vertices)


def test_same_hand_as_open_hand(tmp_path):
    """Without blend shapes, the fixture posed by MANO's layout equals the open hand."""
    d, order = mano_dict(posedirs_scale=0.0)
    path = tmp_path / "m.pkl"
    write_pickle(path, d)
    mano, oh = load_mano(path, dtype=torch.float64), load_open_hand(torch.float64)
    local = torch.tensor(np.random.default_rng(2).normal(0, 0.5, size=(3, 16, 3)))
    world = torch.einsum("jxy,bjy->bjx", oh.frames, local)       # the open hand's frames -> world axes
    mano_pose = torch.zeros_like(world)
    for k in range(16):
        mano_pose[:, _mano_column(k)] = world[:, k]
    a, b = oh(local.reshape(3, 48)), mano(mano_pose.reshape(3, 48))
    torch.testing.assert_close(b.vertices, a.vertices[:, order], rtol=0, atol=1e-12)
    torch.testing.assert_close(b.joints, a.joints, rtol=0, atol=1e-12)


class _Evil:
    def __reduce__(self):
        return os.system, ("touch pwned_by_pickle",)


def test_malicious_pickles_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"v_template": _Evil()}, protocol=2))
    with pytest.raises(ValueError, match="a pickle is code; refusing to load (posix|os|nt).system"):
        read_mano_pickle(evil)
    assert not (tmp_path / "pwned_by_pickle").exists()
    # The allowed copy_reg._reconstructor must not become a way to build other classes.
    sneaky = tmp_path / "sneaky.pkl"
    sneaky.write_bytes(b"\x80\x02ccopy_reg\n_reconstructor\nq\x00cbuiltins\nobject\nq\x01h\x01N\x87q\x02Rq\x03.")
    with pytest.raises(ValueError, match="a pickle is code"):
        read_mano_pickle(sneaky)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_mano_pickle(tmp_path / "missing.pkl")
    p = tmp_path / "partial.pkl"
    write_pickle(p, {"v_template": np.zeros((800, 3))})
    with pytest.raises(ValueError, match="missing key.*weights"):
        read_mano_pickle(p)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="junk.pkl"):
        read_mano_pickle(junk)


def test_template_command_with_mano(fixture_path, tmp_path, capsys):
    path, d, _ = fixture_path
    assert cli_main(["template", "--out", str(tmp_path / "t"), "--mano", str(path)]) == 0
    t = load_template(str(tmp_path / "t"))
    np.testing.assert_allclose(t.vertices, d["v_template"], atol=1e-6)   # .ply stores float32
    assert t.joint_regressor.shape == (21, len(d["v_template"]))
    np.testing.assert_array_equal(t.joint_regressor[4].nonzero()[0], [cv.MANO_TIP_VERTICES[0]])


def test_template_mano_from_the_environment(fixture_path, monkeypatch):
    from m3dhmr.hand import load_template
    from m3dhmr.hand.load import MANO_ENV

    path, _, _ = fixture_path
    monkeypatch.delenv(MANO_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=MANO_ENV):
        load_template("mano")
    monkeypatch.setenv(MANO_ENV, str(path))
    a, b = load_template("mano"), load_template(f"mano:{path}")
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)
