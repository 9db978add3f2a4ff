"""README.md: its examples run as written, and its figures agree with the tables they quote.

- Every ```python block runs, in README order, each in a fresh namespace of its own (a
  reader copies one block at a time, so no block may lean on an earlier one), in a
  temporary working directory holding the files the examples name: ``photo.jpg`` and
  ``hand.jpg`` (sign-language-digits photos from ``../shared/data``, padded so that the
  detector has room around the hand; a rendered hand where those photos are missing).
- Every ``m3dhmr ...`` line of a ```bash block parses with :func:`m3dhmr.cli.build_parser`
  (no unknown option; placeholders such as CKPT are fine as values), and every
  ``m3dhmr predict`` line whose inputs the fixture has (the "Your own images" examples
  and the articulation ones) runs with the packaged model; the files they write are the
  ones README's output tree lists.
- Figures: the real-photo figures of the first screen equal docs/results_real.md's, the
  baselines in prose equal the tables' rows, and every row of the speed table says on
  which processor it was measured (or that it was not recorded).
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import textwrap
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS_REAL = ROOT / "docs" / "results_real.md"
RESULTS_SYNTH = ROOT / "docs" / "results_synthetic.md"
MODEL_CARD = ROOT / "docs" / "MODEL_CARD.md"
SIGN = ROOT.parent / "shared" / "data" / "sign-language-digits" / "Dataset"

#: A fenced block: its language and text (indented fences, as in numbered lists, too).
FENCE = re.compile(r"^([ ]*)```(\w*)[ ]*\n(.*?)^[ ]*```[ ]*$", re.M | re.S)


def code_blocks(text: str, language: str) -> list[str]:
    return [textwrap.dedent(m.group(3)) for m in FENCE.finditer(text) if m.group(2) == language]


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a line starting with #) up to the next heading of any level."""
    start = re.search(rf"^#+ {re.escape(heading)}[ ]*$", text, re.M)
    assert start, f"README has no heading {heading!r}"
    rest = text[start.end():]
    end = re.search(r"^#+ ", _blank_code(rest), re.M)
    return rest if end is None else rest[:end.start()]


def _blank_code(text: str) -> str:
    """``text`` with fenced blocks' lines emptied (same length), so that '#' comments in
    them are not taken for headings."""
    return FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def flat(text: str) -> str:
    """One line, single spaces: figures split across lines are found by one regex."""
    return " ".join(text.split())


def tables(text: str) -> list[list[list[str]]]:
    """Every markdown table of ``text``: rows (header first, no separator) of cells,
    without ``**`` and backticks."""
    out, rows = [], []
    for line in _blank_code(text).splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip().replace("**", "").replace("`", "") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(cells)
        elif rows:
            out.append(rows)
            rows = []
    return out


def row(text: str, label: str, table_header: str | None = None) -> list[str]:
    """The cells of the single table row whose first cell contains ``label`` (in the table
    whose header row contains ``table_header``, when given)."""
    found = [r for t in tables(text) if table_header is None or any(table_header in c for c in t[0])
             for r in t[1:] if label in r[0]]
    assert len(found) == 1, f"{len(found)} rows labelled {label!r} (header {table_header!r})"
    return found[0]


def figure(text: str, pattern: str) -> str:
    m = re.search(pattern, flat(text))
    assert m, f"README no longer says {pattern!r}"
    return m.group(1)


# ----------------------------------------------------------------------------- fixture files


def _padded(src: Path, dst: Path) -> None:
    """A 100-px sign-language photo with a 50-px border: the detector needs room around a close-up."""
    img = cv2.imread(str(src))
    assert img is not None, src
    cv2.imwrite(str(dst), cv2.copyMakeBorder(img, 50, 50, 50, 50, cv2.BORDER_REPLICATE))


def _rendered_hand(dst: Path) -> None:
    """The open hand rendered over a blurred noise background, at a size and seed where the
    packaged detector finds it (used when the sign-language photos are not there)."""
    from m3dhmr.detect import HandDetector
    from m3dhmr.hand import load_template
    from m3dhmr.inference import crops
    from m3dhmr.render import render_mesh

    H, W = 240, 320
    t = load_template("open_hand")
    verts = t.vertices - t.vertices.mean(0) + [0.02, 0.0, 0.45]
    detector = HandDetector()
    for seed in range(10):
        rng = np.random.default_rng(seed)
        bg = cv2.GaussianBlur(rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8), (9, 9), 0)
        img = render_mesh(verts, t.faces, crops.default_intrinsics(H, W), (H, W), colors=np.array([0.9, 0.7, 0.6]),
                          background=bg).rgb_uint8()
        if detector.detect(img):
            cv2.imwrite(str(dst), img[:, :, ::-1])
            return
    raise AssertionError("no rendered hand the detector finds")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The files README's examples name: photo.jpg, hand.jpg, crops/, clip.mp4 and
    run/checkpoints/last.safetensors (the packaged model saved as a training checkpoint)."""
    from m3dhmr.inference.video import write_video
    from m3dhmr.pretrained import load_pretrained
    from m3dhmr.train.checkpoint import Progress, save_weights

    d = tmp_path_factory.mktemp("readme")
    (d / "crops").mkdir()
    if SIGN.is_dir():
        _padded(SIGN / "5" / "IMG_1123.JPG", d / "photo.jpg")
        _padded(SIGN / "1" / "IMG_1119.JPG", d / "hand.jpg")
        (d / "crops" / "five.jpg").write_bytes((SIGN / "5" / "IMG_1123.JPG").read_bytes())  # a hand crop already
    else:
        _rendered_hand(d / "photo.jpg")
        (d / "hand.jpg").write_bytes((d / "photo.jpg").read_bytes())
        (d / "crops" / "five.jpg").write_bytes((d / "photo.jpg").read_bytes())
    photo = cv2.imread(str(d / "photo.jpg"))[:, :, ::-1]
    write_video(d / "clip.mp4", [np.roll(photo, k, axis=1) for k in range(6)], fps=10)
    model, exp = load_pretrained()
    (d / "run" / "checkpoints").mkdir(parents=True)
    save_weights(d / "run" / "checkpoints" / "last.safetensors", model, exp, Progress(finished=True))
    return d


# ----------------------------------------------------------------------------- (a) Python examples


def test_python_examples_run(workdir, monkeypatch, capsys):
    """Every ```python block, in order, each in a fresh namespace; a ColorOrderWarning (an
    example passing OpenCV's BGR as RGB) is an error."""
    from m3dhmr.inference.predictor import ColorOrderWarning

    blocks = code_blocks(README.read_text(), "python")
    assert len(blocks) >= 4, "README lost its Python examples"
    monkeypatch.chdir(workdir)
    for i, code in enumerate(blocks):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ColorOrderWarning)
            try:
                exec(compile(code, f"README.md python block {i + 1}", "exec"), {"__name__": "__readme__"})
            except Exception as e:
                pytest.fail(f"README's python block {i + 1} fails: {type(e).__name__}: {e}\n{code}")
    out = capsys.readouterr().out
    assert "PredictionResult(right" in out and '"hand_box"' in out
    assert (workdir / "hands.jpg").is_file()


# ----------------------------------------------------------------------------- (b) command lines


def command_lines(text: str) -> list[list[str]]:
    """``m3dhmr ...`` lines of the ```bash blocks as argument lists (comments dropped,
    backslash continuations joined), ``m3dhmr`` itself left out."""
    out = []
    for block in code_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["m3dhmr"]:
                out.append(words[1:])
    return out


def parse(argv: list[str]):
    from m3dhmr.cli import COMMANDS, build_parser

    command = next((a for a in argv if not a.startswith("-")), None)
    assert command in COMMANDS or argv in (["--help"], ["-h"]), f"README: unknown command in m3dhmr {shlex.join(argv)}"
    parser = build_parser(command)
    for sub in parser._subparsers._group_actions[0].choices.values():
        sub.allow_abbrev = False  # README spells options out: "--whole-imag" is a typo there
    try:
        return parser.parse_args(argv)
    except SystemExit as e:
        if e.code == 0 and {"-h", "--help"} & set(argv):
            return None  # help printed
        pytest.fail(f"README: `m3dhmr {shlex.join(argv)}` does not parse (see stderr above)")


def test_every_command_line_parses():
    lines = command_lines(README.read_text())
    assert len(lines) >= 10
    commands = {args.command for args in map(parse, lines) if args is not None}
    assert {"predict", "train", "eval", "fit"} <= commands


def test_predict_examples_run_and_write_the_listed_files(workdir, monkeypatch, capsys):
    """The predict lines run with the packaged model into README's folder names; the
    output tree and result.json's keys are README's."""
    from m3dhmr import cli

    text = README.read_text()
    mine = command_lines(section(text, "Your own images"))
    assert mine and all(argv[0] == "predict" for argv in mine)
    lines = [argv for argv in command_lines(text) if argv[0] == "predict"]
    monkeypatch.chdir(workdir)
    ran = []
    for argv in lines:
        args = parse(argv)
        if not all(Path(p).exists() for p in [*args.inputs, *args.inputs_after_bbox]):
            continue
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == 0, f"README: `m3dhmr {shlex.join(argv)}` exited {code}: {err}"
        ran.append(argv)
        if argv == mine[0]:  # the first example: every hand found, result.json's keys as README lists them
            hands = json.loads((workdir / args.out / "photo" / "result.json").read_text())["hands"]
            assert hands, "the packaged detector found no hand in the fixture photo"
            listed = re.search(r"Each hand in `result.json` is (.*?)Pictures of photos", text, re.S).group(1)
            keys = set(re.findall(r"`(\w+)`", listed))
            assert set(hands[0]) == keys, f"result.json's hand keys {sorted(hands[0])} vs README's {sorted(keys)}"
    assert all(argv in ran for argv in mine), "a README 'Your own images' example did not run"
    assert any("--articulation" in argv for argv in ran)

    # README's tree: every path it lists is there (hand_<id> of a track matches any id).
    tree = next(b for b in code_blocks(text, "text") if b.startswith("OUT/"))
    out = workdir / "preds"
    stack: list[tuple[int, str]] = []
    listed = []
    for line in tree.splitlines()[1:]:
        m = re.match(r"^([│├└─\s]*)(\S+)", line)
        depth, name = len(m.group(1)), m.group(2)
        stack = [(d, n) for d, n in stack if d < depth]
        path = "/".join([n.rstrip("/") for _, n in stack] + [name.rstrip("/")])
        listed.append(path)
        if name.endswith("/"):
            stack.append((depth, name))
    assert len(listed) >= 15
    for path in listed:
        assert glob.glob(str(out / path.replace("<id>", "*"))), f"README lists OUT/{path}; predict did not write it"
    result = json.loads((out / "photo" / "result.json").read_text())
    assert result["axes"]["mesh.obj/mesh.ply"].startswith("OpenCV camera axes")


# ----------------------------------------------------------------------------- (c) figures


def _number(cell: str) -> str:
    """The leading number of a cell ("8.88 (8.77-8.99)" -> "8.88")."""
    return re.match(r"[\d.,]+", cell).group(0)


def test_first_screen_real_photo_figures_are_results_reals():
    readme, real = README.read_text(), RESULTS_REAL.read_text()
    first = readme[:readme.index("## Quick start")]
    screen = "\n".join(readme.splitlines()[:30])  # what the model learnt from, its figures and limits
    for said in ("synthetic images only", "pseudo-labels", "PCK at half a palm", "finger states", "Limits.",
                 "Each hand comes with a `quality` score"):
        assert said in screen, f"README's first 30 lines no longer say {said!r}"
    assert first.index("Limits") < first.index("Photos and videos")  # the limits come before the promises
    shipped = row(real, "shipped model")
    before = row(real, "packaged model before", "Finger states")
    reference = row(real, "landmark model (reference)")
    assert figure(first, r"PCK at half a palm \*\*([\d.]+)\*\*") == shipped[1]
    assert figure(first, r"median error ([\d.]+) palm") == shipped[2]
    assert figure(first, r"\*\*finger states\*\*: \*\*([\d.]+)\*\*") == shipped[3]
    assert figure(first, r"the synthetic-only model before it: ([\d.]+)\)") == before[1]
    assert figure(first, r"the model before: ([\d.]+)\)") == before[3]
    assert figure(first, r"the landmark model's own 3D landmarks: ([\d.]+);") == reference[3]
    assert figure(first, r"On (\d+) held-out photos") == figure(real, r"\*\*(\d+) held-out photos\*\*")
    assert figure(first, r"together with ([\d,]+) real photos") == figure(real, r"([\d,]+) training photos")
    assert figure(first, r"(\d+)-px close-ups") == figure(real, r"\((\d+)-px photos")


def test_real_photos_section_is_results_reals_table():
    readme, real = README.read_text(), RESULTS_REAL.read_text()
    assert row(readme, "packaged model (now)")[1:4] == row(real, "shipped model")[1:4]
    assert row(readme, "packaged model before")[1:4] == row(real, "packaged model before", "Finger states")[1:4]
    text = flat(section(readme, "Real photos"))
    card = MODEL_CARD.read_text()
    v4 = r"the fine-tuned model scores ([\d.]+) mm PA-MPJPE, the model before it ([\d.]+) mm and a constant rest hand ([\d.]+) mm"
    now, old, rest = re.search(v4, text).groups()
    assert now == row(card, "m3dhmr_r18_synthetic (now)", "PA-MPJPE")[1] == row(real, "shipped model")[4]
    assert old == row(card, "the version-3 model (before)", "PA-MPJPE")[1] == row(real, "packaged model before", "Finger states")[4]
    assert rest == [r for t in tables(card) for r in t if r[0] == "rest hand (constant)"][0][1]


def test_synthetic_table_and_baselines_prose_agree():
    readme, synth = README.read_text(), RESULTS_SYNTH.read_text()
    header = "PA-MPJPE (mm)"
    mine = next(t for t in tables(section(readme, "The packaged model and how well it learns (synthetic data, CPU)")))
    theirs = next(t for t in tables(section(synth, "0. Until generator version 3 the synthetic hands were nearly all at rest")))
    assert header in mine[0] and [r[1:] for r in mine[1:]] == [r[1:] for r in theirs[1:]]
    rest, mean = row(readme, "rest hand (constant)", header), row(readme, "mean camera-frame pose (constant)", header)
    bullet = flat(readme[readme.index("- **Baselines.**"):])
    assert figure(bullet, r"scores ([\d.]+) mm PA-MPJPE on the version-3 benchmark") == mean[1]
    assert figure(bullet, r"keeps a hand's shape and scores ([\d.]+) mm") == rest[1]
    v2 = section(synth, "1. The baseline was wrong: a constant open hand scores 10.5 mm")
    assert figure(bullet, r"the rest hand scored ([\d.]+) mm") == row(v2, "The open hand at rest")[1]
    assert figure(bullet, r"\(mean pose ([\d.]+) mm\)") == row(v2, "Mean camera-frame pose")[1]
    assert figure(bullet, r"beat the mean pose\" \(([\d.]+-[\d.]+) mm") == figure(synth, r"earlier table's models \(([\d.]+-[\d.]+) mm")


def test_ablation_and_learning_curve_prose_agree_with_results_synthetic():
    readme, synth = README.read_text(), RESULTS_SYNTH.read_text()
    text = flat(section(readme, "The packaged model and how well it learns (synthetic data, CPU)"))
    said = re.search(r"DSC \+ ROI scored ([\d.]+) mm PA-MPJPE, DSC alone ([\d.]+), SpiralConv \+ ROI ([\d.]+) "
                     r"and the SpiralConv baseline ([\d.]+)", text).groups()
    labels = ("M3DHMR (DSC + ROI)", "w/o ROI (DSC only)", "w/o DSC (SpiralConv + ROI)", "SpiralConv baseline")
    assert said == tuple(_number(row(synth, label, "Seeds")[1]) for label in labels)
    pa, steps = re.search(r"\(([\d.]+) mm PA-MPJPE on its evaluation split after ([\d,]+) steps", text).groups()
    curve = next(t for t in tables(synth) if t[0][-1] == steps.replace(",", ""))
    assert f"{float(row_of(curve, 'PA-MPJPE (mm)')[-1]):.1f}" == pa


def row_of(table: list[list[str]], label: str) -> list[str]:
    return next(r for r in table if r[0] == label)


def test_every_speed_figure_names_its_processor():
    readme = README.read_text()
    speed = next(t for t in tables(section(readme, "Speed")) if t[0][0] == "goal (issue)")
    assert speed[0][-1] == "processor" and len(speed) >= 9
    named = re.compile(r"AMD EPYC|Intel Xeon|NVIDIA H100|not recorded")
    for r in speed[1:]:
        assert named.search(r[-1]), f"speed row {r[0]!r} does not say on which processor it was measured"
        if ";" in r[-1]:  # several machines: each part names its processor
            assert all(named.search(part) for part in r[-1].split(";")), r[-1]
    # Speed figures in prose name theirs too (paragraphs and list items outside code and tables).
    unit = re.compile(r"\d\s*(?:FPS|images/s|ms per|ms\b)")
    for para in re.split(r"\n\s*\n|\n(?=- )", _blank_code(readme)):
        if unit.search(para) and not para.lstrip().startswith("|"):
            assert named.search(para) or "2-core AMD EPYC" in para, f"a speed figure without its processor: {flat(para)[:200]}"
