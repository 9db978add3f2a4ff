"""A hand template by name.

``load_template(spec)`` accepts
    ``"open_hand"``                  the package's own right hand (see :mod:`m3dhmr.hand.open_hand`);
    ``"mano:/path/MANO_RIGHT.pkl"``  MANO's template, read without chumpy (see :mod:`m3dhmr.hand.mano`);
    a folder                          with ``template.ply``, ``j_reg.npy`` (21, V), ``regions.npy`` (V,)
                                      and optionally ``skinning_weights.npy`` (V, 16), as written by
                                      ``m3dhmr template --out DIR``.

It sits above :mod:`m3dhmr.hand.template`, :mod:`m3dhmr.hand.open_hand` and
:mod:`m3dhmr.hand.mano` (which all use :class:`~m3dhmr.hand.template.HandTemplate`), so
that none of them imports another in a circle.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .mano import mano_template, read_mano_pickle
from .open_hand import load_open_hand_asset
from .template import HandTemplate, read_template_dir


def load_template(spec: str | Path) -> HandTemplate:
    """Load a template: ``"open_hand"``, ``"mano:/path/MANO_RIGHT.pkl"`` or a folder (see module doc)."""
    s = str(spec)
    if s == "open_hand":
        return dataclasses.replace(load_open_hand_asset().template)   # a fresh copy per call
    if s.startswith("mano:"):
        return mano_template(read_mano_pickle(s[len("mano:"):]))
    folder = Path(s)
    if not folder.is_dir():
        raise FileNotFoundError(f"template {s!r}: not 'open_hand', 'mano:/path/MANO_RIGHT.pkl' or an existing folder")
    return read_template_dir(folder)
