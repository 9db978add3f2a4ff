"""The command line's error handling and help (m3dhmr.cli)."""

from __future__ import annotations

import argparse
import sys
import types

import pytest

from m3dhmr import cli
from m3dhmr.errors import InputError, UserError


def _fake_command(monkeypatch, error: BaseException) -> None:
    """Make ``m3dhmr topology`` a command whose run raises ``error``."""
    module = types.ModuleType("m3dhmr.commands.topology")
    module.add_arguments = lambda parser: None

    def run(args):
        raise error

    module.run = run
    monkeypatch.setitem(sys.modules, "m3dhmr.commands.topology", module)


@pytest.mark.parametrize("error", [InputError("bad input x"), UserError("bad option x"),
                                   FileNotFoundError("missing x")])
def test_user_mistakes_are_one_line(monkeypatch, capsys, error):
    _fake_command(monkeypatch, error)
    assert cli.main(["topology"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"m3dhmr topology: error: {error}" and "Traceback" not in err


@pytest.mark.parametrize("error", [ValueError("operands could not be broadcast"), TypeError("x"), KeyError("k")])
def test_bugs_keep_their_traceback(monkeypatch, error):
    # A ValueError from deep in NumPy is a bug, not a user mistake: it must not be hidden
    # behind one line (the CLI caught every ValueError before).
    _fake_command(monkeypatch, error)
    with pytest.raises(type(error)):
        cli.main(["topology"])


def test_user_error_importable_from_cli():
    assert cli.UserError is UserError and issubclass(UserError, InputError) and issubclass(InputError, ValueError)


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser(name)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_option_has_help(name):
    missing = [a.option_strings or a.dest for a in _subparser(name)._actions if not a.help]
    assert not missing, f"m3dhmr {name}: options without help: {missing}"


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_help_points_to_nothing_an_installed_package_lacks(name):
    # "docs/..." exists in the source repository only; the help must say so if it names one.
    text = _subparser(name).format_help()
    for i in range(len(text)):
        if text.startswith("docs/", i):
            assert "source repository" in " ".join(text[i:i + 200].split()), text[i - 100:i + 200]
