"""A dry run of the real FreiHAND path, through the command line.

The fixture is written in FreiHAND's exact layout: 4 colour versions of each training
image (image i -> annotation i % N), training masks, 778-vertex meshes, a
``training_mano.json``, and an evaluation split with and without ground truth. The
778-vertex template is built here: the open hand simplified to MANO's vertex count and
a joint regressor fitted to it, turned into a template folder by
``m3dhmr template --mesh ... --joint-regressor ...``. Then ``m3dhmr train`` runs a few
steps of the FreiHAND configuration ``m3dhmr_r18_freihand`` (MobRecon's recipe: mask
boxes, the centre evaluation crop, consistency from epoch 4) with ``--template`` and
``--set``, and ``m3dhmr eval`` scores it.
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from m3dhmr.cli import main

MANO_VERTICES = 778


def _write_json(path, obj):
    path.write_text(json.dumps(obj))


@pytest.fixture(scope="module")
def mano_like(tiny_data, tmp_path_factory):
    """(template folder, FreiHAND-layout folder with evaluation ground truth, one without)."""
    import fast_simplification

    from m3dhmr.hand import load_template
    from m3dhmr.mesh.io import write_mesh

    root = tmp_path_factory.mktemp("freihand_dry_run")
    oh = load_template("open_hand")
    v, f = fast_simplification.simplify(oh.vertices.astype(np.float32), oh.faces.astype(np.int32),
                                        target_count=2 * MANO_VERTICES - 4)
    assert v.shape == (MANO_VERTICES, 3)
    # Each new vertex follows its nearest open-hand vertex; joints: inverse-distance
    # weights on the 4 new vertices nearest each rest joint.
    nearest = np.argmin(((v[:, None, :] - oh.vertices[None]) ** 2).sum(-1), axis=1)
    joints = oh.rest_joints()
    reg = np.zeros((21, MANO_VERTICES))
    for j in range(21):
        d = np.linalg.norm(v - joints[j], axis=1)
        k = np.argsort(d)[:4]
        reg[j, k] = 1 / (d[k] + 1e-4)
        reg[j] /= reg[j].sum()
    write_mesh(root / "template.ply", v, f)
    np.save(root / "j_reg.npy", reg)
    assert main(["template", "--mesh", str(root / "template.ply"), "--joint-regressor", str(root / "j_reg.npy"),
                 "--out", str(root / "mano_like")]) == 0

    def convert(split_json):
        return [np.asarray(s)[nearest].round(6).tolist() for s in split_json]

    fh = root / "freihand"
    for split in ("training", "evaluation"):
        (fh / split / "rgb").mkdir(parents=True)
    n = len(json.loads((tiny_data / "training_K.json").read_text()))
    for i in range(n):
        img = cv2.imread(str(tiny_data / "training" / "rgb" / f"{i:08d}.jpg"))
        versions = (img, img[:, :, ::-1], cv2.convertScaleAbs(img, alpha=0.8, beta=20),
                    cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR))
        for k, version in enumerate(versions):  # FreiHAND: image i + k N is version k of sample i
            cv2.imwrite(str(fh / "training" / "rgb" / f"{i + k * n:08d}.jpg"), version)
    shutil.copytree(tiny_data / "training" / "mask", fh / "training" / "mask")
    for key in ("K", "xyz", "scale"):
        shutil.copy(tiny_data / f"training_{key}.json", fh / f"training_{key}.json")
    _write_json(fh / "training_verts.json", convert(json.loads((tiny_data / "training_verts.json").read_text())))
    _write_json(fh / "training_mano.json", [[[0.0] * 61] for _ in range(n)])
    shutil.copytree(tiny_data / "evaluation" / "rgb", fh / "evaluation" / "rgb", dirs_exist_ok=True)
    for key in ("K", "scale"):
        shutil.copy(tiny_data / f"evaluation_{key}.json", fh / f"evaluation_{key}.json")
    without_gt = root / "freihand_no_gt"
    shutil.copytree(fh, without_gt)
    shutil.copy(tiny_data / "evaluation_xyz.json", fh / "evaluation_xyz.json")
    _write_json(fh / "evaluation_verts.json", convert(json.loads((tiny_data / "evaluation_verts.json").read_text())))
    return root / "mano_like", fh, without_gt


@pytest.mark.slow
def test_paper_config_trains_and_evaluates_on_the_freihand_layout(mano_like, tmp_path, capsys):
    template, fh, no_gt = mano_like
    run = tmp_path / "run"
    tiny = ["--set", "train.batch_size=4", "train.stage1_epochs=1", "train.epochs=1", "data.num_workers=0",
            "train.eval_every=0",
            "model.pretrained_backbone=false"]
    code = main(["train", "--config", "m3dhmr_r18_freihand", "--template", str(template), "--data", str(fh),
                 "--out", str(run), "--max-steps", "3", "--no-progress", *tiny])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    ckpt = run / "checkpoints" / "last.safetensors"
    assert ckpt.is_file()

    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(fh), "--out", str(tmp_path / "e")]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["num_samples"] == 4 and np.isfinite(metrics["pa_mpjpe_mm"])
    pred = json.loads((tmp_path / "e" / "pred.json").read_text())
    assert np.asarray(pred[1]).shape == (4, MANO_VERTICES, 3)

    # The official evaluation split has no ground truth: predictions are written, not scored...
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(no_gt), "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "pred.json").is_file() and not (tmp_path / "p" / "metrics.json").exists()
    capsys.readouterr()
    # ...and scoring a prediction file against it is an error that says why.
    assert main(["eval", "--pred", str(tmp_path / "p" / "pred.json"), "--data", str(no_gt),
                 "--out", str(tmp_path / "s")]) == 2
    assert "no ground truth" in capsys.readouterr().err


def test_wrong_template_for_the_data_names_the_fix(mano_like, tmp_path, capsys):
    _, fh, _ = mano_like
    code = main(["train", "--config", "m3dhmr_r18", "--data", str(fh), "--out", str(tmp_path / "r"),
                 "--max-steps", "1", "--no-progress", "--set", "model.pretrained_backbone=false",
                 "train.batch_size=4", "data.num_workers=0"])
    err = capsys.readouterr().err
    assert code == 2 and "778 vertices per sample" in err and "--template" in err


def test_template_folder_missing_a_file(mano_like, tmp_path, capsys):
    template, fh, _ = mano_like
    broken = tmp_path / "broken"
    shutil.copytree(template, broken)
    (broken / "j_reg.npy").unlink()
    code = main(["train", "--config", "m3dhmr_r18", "--template", str(broken), "--data", str(fh),
                 "--out", str(tmp_path / "r"), "--max-steps", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "j_reg.npy" in err
