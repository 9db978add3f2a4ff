"""The package's error types (m3dhmr.errors): user mistakes are InputError, and every
refusal the package raises is one (checked on a sample of public entry points)."""

from __future__ import annotations

import numpy as np
import pytest

from m3dhmr.config_loader import ConfigError
from m3dhmr.errors import InputError, UserError
from m3dhmr.mesh.validate import MeshError


def test_hierarchy():
    for cls in (UserError, ConfigError, MeshError):
        assert issubclass(cls, InputError)
    assert issubclass(InputError, ValueError)  # callers catching ValueError keep working


def test_refusals_are_input_errors():
    from m3dhmr.inference import crops
    from m3dhmr.inference.images import to_rgb_uint8

    with pytest.raises(InputError, match="float image"):
        to_rgb_uint8(np.full((4, 4, 3), 200.0))
    with pytest.raises(InputError):
        crops.parse_box("1,2,3")


def test_no_bare_value_errors_in_the_package():
    # The CLI prints InputError as one line and lets a plain ValueError (a bug) show its
    # traceback, so a deliberate refusal raised as ValueError would look like a crash.
    from pathlib import Path

    import m3dhmr

    root = Path(m3dhmr.__file__).parent
    offenders = [f"{p.relative_to(root)}:{i + 1}" for p in sorted(root.rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines()) if "raise ValueError(" in line]
    assert not offenders, offenders
