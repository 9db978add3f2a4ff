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
