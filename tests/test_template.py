import numpy as np
import pytest

from m3dhmr.cli import main as cli_main
from m3dhmr.hand import HandTemplate, load_template


def tiny(**over):
    # A tetrahedron with a hand-computed regressor: every joint at the centroid.
    kw = dict(vertices=np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]),
              faces=np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]),
              joint_regressor=np.full((21, 4), 0.25), regions=np.array([0, 1, 2, 5]),
              skinning_weights=None, name="tet")
    kw.update(over)
    return HandTemplate(**kw)


def test_tiny_template_hand_computed():
    t = tiny()
    np.testing.assert_allclose(t.rest_joints(), np.full((21, 3), 0.25))
    assert t.faces.dtype == np.int64 and t.num_vertices == 4


def test_loaded_templates_are_independent_copies():
    a = load_template("open_hand")
    a.vertices[0] += 1.0
    assert not np.array_equal(load_template("open_hand").vertices[0], a.vertices[0])


@pytest.mark.parametrize("over, match", [
    (dict(vertices=np.zeros((4, 2))), r"vertices must have shape \(V, 3\)"),
    (dict(vertices=np.full((4, 3), np.nan)), "NaN"),
    (dict(faces=np.array([[0, 1, 9]])), "outside"),
    (dict(joint_regressor=np.zeros((16, 4))), r"joint_regressor .*\(21, 4\)"),
    (dict(regions=np.array([0, 1, 2, 6])), "regions"),
    (dict(skinning_weights=np.ones((3, 16))), "skinning_weights"),
])
def test_bad_templates_name_the_problem(over, match):
    with pytest.raises(ValueError, match=match):
        tiny(**over)


def test_template_command_round_trip(tmp_path, capsys):
    out = tmp_path / "open"
    assert cli_main(["template", "--out", str(out)]) == 0
    assert "template.ply" in capsys.readouterr().out
    for name in ("template.ply", "j_reg.npy", "regions.npy"):
        assert (out / name).is_file()
    ref = load_template("open_hand")
    got = load_template(str(out))
    np.testing.assert_allclose(got.vertices, ref.vertices, atol=1e-6)
    np.testing.assert_array_equal(got.faces, ref.faces)
    np.testing.assert_array_equal(np.load(out / "j_reg.npy"), ref.joint_regressor)
    np.testing.assert_array_equal(np.load(out / "regions.npy"), ref.regions)
    assert got.skinning_weights.shape == (ref.num_vertices, 16)


def test_load_template_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="open_hand"):
        load_template(str(tmp_path / "nowhere"))
    (tmp_path / "j_reg.npy").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="template.ply"):
        load_template(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        load_template("mano:" + str(tmp_path / "MANO_RIGHT.pkl"))
    assert cli_main(["template", "--out", str(tmp_path / "x"), "--mano", str(tmp_path / "none.pkl")]) == 2


def test_template_from_a_posed_mesh_and_a_regressor(tmp_path, capsys):
    """A posed, rotated and moved copy of the open hand plus its regressor: the command
    writes a template folder whose wrist is at the origin and whose six regions are
    connected; it trains a model as --template DIR."""
    from m3dhmr.geometry.rotations import rot_x, rot_z
    from m3dhmr.hand import load_template
    from m3dhmr.mesh.io import write_mesh
    from m3dhmr.mesh.regions import region_pieces

    oh = load_template("open_hand")
    R = rot_z(0.7) @ rot_x(-1.1)
    v = oh.vertices @ R.T + [0.05, -0.02, 0.6]  # anywhere in camera space
    write_mesh(tmp_path / "posed.ply", v, oh.faces)
    np.save(tmp_path / "j_reg.npy", oh.joint_regressor)
    out = tmp_path / "custom"
    assert cli_main(["template", "--mesh", str(tmp_path / "posed.ply"), "--joint-regressor", str(tmp_path / "j_reg.npy"),
                 "--out", str(out)]) == 0
    t = load_template(out)
    assert t.num_vertices == oh.num_vertices and t.skinning_weights is None
    np.testing.assert_allclose(t.joint_regressor @ t.vertices, (oh.rest_joints() - oh.rest_joints()[0]) @ R.T,
                               atol=1e-6)
    assert (region_pieces(t.faces, t.regions) == 1).all()
    # The nearest-bone regions agree with the open hand's skinning-based ones on most vertices.
    assert (t.regions == oh.regions).mean() > 0.8
    from m3dhmr.models import ModelConfig, build_model

    model = build_model(ModelConfig(template=str(out), backbone_width=16, input_size=64, stack_channels=16, stack2_channels=(16, 16, 32),
                                    latent_channels=32, decoder_channels=(8, 8, 16, 16), dsc_kernels=2))
    assert model.num_vertices == oh.num_vertices


def test_template_from_mesh_errors(tmp_path, capsys):
    from m3dhmr.hand import load_template
    from m3dhmr.mesh.io import write_mesh

    oh = load_template("open_hand")
    write_mesh(tmp_path / "m.ply", oh.vertices, oh.faces)
    np.save(tmp_path / "bad.npy", oh.joint_regressor[:, :10])
    args = ["template", "--mesh", str(tmp_path / "m.ply"), "--out", str(tmp_path / "o")]
    assert cli_main(args + ["--joint-regressor", str(tmp_path / "bad.npy")]) == 2
    err = capsys.readouterr().err
    assert "bad.npy" in err and "(21, 900)" in err
    assert cli_main(args) == 2 and "go together" in capsys.readouterr().err
    assert cli_main(args + ["--joint-regressor", str(tmp_path / "missing.npy")]) == 2
    assert "missing.npy" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
