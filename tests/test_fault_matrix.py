"""benchmarks/fault_matrix.py (issue 21): its case machinery on a few cheap cases, and its
classifier on deliberately defective fake cases."""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fault_matrix.py"
SUMMARY = re.compile(r"cases=(\d+) clear=(\d+) handled=(\d+) defects=(\d+)")
CASE_LINE = re.compile(r"\[(clear|handled|defect)\] ([\w-]+): .+")
#: Option and config refusals that need no training run, model or video (about 10 s, most
#: of it rendering the 12-image synthetic set that train needs as --data).
CHEAP = ("predict-device-banana", "predict-threads-negative", "predict-view-size-100000", "predict-out-is-a-file",
         "synth-size-100000", "train-lr-inf")


@pytest.fixture(scope="module")
def fm():
    spec = importlib.util.spec_from_file_location("fault_matrix", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def run_script(fm, capsys, argv, cases=None):
    rc = fm.main([str(a) for a in argv], cases=cases)
    lines = capsys.readouterr().out.strip().splitlines()
    m = SUMMARY.fullmatch(lines[-1])
    assert m, lines
    counts = dict(zip(("cases", "clear", "handled", "defects"), map(int, m.groups())))
    verdicts = {}
    for line in lines[:-1]:
        c = CASE_LINE.fullmatch(line)
        assert c, line
        verdicts[c.group(2)] = c.group(1)
    return rc, counts, verdicts, lines


def test_cheap_cases_are_clear(fm, tmp_path, capsys):
    rc, counts, verdicts, lines = run_script(fm, capsys, ["--work", tmp_path / "w", "--only", ",".join(CHEAP)])
    assert sorted(verdicts) == sorted(CHEAP), lines
    assert counts == {"cases": len(CHEAP), "clear": len(CHEAP), "handled": 0, "defects": 0}, "\n".join(lines)
    assert rc == 0
    assert not (tmp_path / "w" / "cases").exists() or not any((tmp_path / "w" / "cases").iterdir())
    # The script's log handler is gone again: later tests' stderr is not changed.
    assert not any(isinstance(h, fm.CurrentStderrHandler) for h in logging.getLogger().handlers)


def test_the_cases_are_listed_and_cover_every_item(fm, capsys):
    assert fm.main(["--list"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    assert len(listed) == len(fm.CASES) >= 40
    assert sorted({c.item for c in fm.CASES}) == list(range(1, 16))
    assert len({c.name for c in fm.CASES}) == len(fm.CASES)


def test_the_classifier_finds_defects(fm, tmp_path, capsys, monkeypatch):
    """Fake cases: only the well-behaved refusal is clear; a traceback (even one followed by a
    proper error line), an exception escaping main, an accepted bad option, a changed file
    and a case that crashes are all defects, and the exit status is 1."""

    def traceback_then_error_line(ctx):
        # A command that prints a traceback and then a proper-looking last line.
        code = ("import sys, traceback\n"
                "try:\n    raise ValueError('boom')\nexcept ValueError:\n    traceback.print_exc()\n"
                "print('m3dhmr predict: error: --device: boom', file=sys.stderr)\nsys.exit(2)\n")
        o = fm.run_sub([sys.executable, "-c", code])
        fm.expect_refusal(o, "predict", "--device")
        return fm.Verdict(fm.CLEAR, "refused")

    def escapes_main(ctx):
        from m3dhmr.commands import synth

        def boom(args):
            raise RuntimeError("boom")

        monkeypatch.setattr(synth, "run", boom)
        o = fm.run_cli(["synth", "--out", tmp_path / "s", "--train", 1, "--eval", 1])
        assert o.rc is None and "Traceback" in o.err
        fm.expect_refusal(o, "synth", "boom")
        return fm.Verdict(fm.CLEAR, "refused")

    def accepts(ctx):  # expects a refusal of a valid call
        o = fm.run_cli(["predict", "--help"])
        fm.expect_refusal(o, "predict", "--help")
        return fm.Verdict(fm.CLEAR, "refused")

    def changes_a_file(ctx):
        folder = tmp_path / "run"
        folder.mkdir()
        (folder / "config.yaml").write_text("a: 1\n")
        before = fm.snapshot(folder)
        o = fm.run_cli(["predict", ctx.plain_image, "--out", tmp_path / "o", "--threads", "-3"])
        (folder / "config.yaml").write_text("a: 2\n")
        fm.expect_refusal(o, "predict", "--threads")
        fm.expect_untouched(before, folder, o)
        return fm.Verdict(fm.CLEAR, "refused")

    def crashes(ctx):
        raise KeyError("no such thing")

    def well_behaved(ctx):
        o = fm.run_cli(["predict", ctx.plain_image, "--out", tmp_path / "o2", "--threads", "-3"])
        return fm.Verdict(fm.CLEAR, fm.expect_refusal(o, "predict", "--threads"))

    fakes = [fm.Case(fn.__name__.replace("_", "-"), 0, fn, "fake")
             for fn in (traceback_then_error_line, escapes_main, accepts, changes_a_file, crashes, well_behaved)]
    rc, counts, verdicts, lines = run_script(fm, capsys, ["--work", tmp_path / "w"], cases=fakes)
    assert verdicts == {"traceback-then-error-line": "defect", "escapes-main": "defect", "accepts": "defect",
                        "changes-a-file": "defect", "crashes": "defect", "well-behaved": "clear"}, lines
    assert counts == {"cases": 6, "clear": 1, "handled": 0, "defects": 5} and rc == 1
    text = "\n".join(lines)
    assert "a traceback was printed" in text and "an exception escaped" in text and "accepted" in text
    assert "was modified (changed: config.yaml)" in text and "failed to run: KeyError" in text
