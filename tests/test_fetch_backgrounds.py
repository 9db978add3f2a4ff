"""scripts/fetch_backgrounds.py's offline parts: licences from Debian copyright files, GIMP
patterns, photo filtering and resizing (the download itself needs the registries)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "fetch_backgrounds", Path(__file__).resolve().parents[1] / "scripts" / "fetch_backgrounds.py")
fb = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("fetch_backgrounds", fb)  # dataclasses look their module up there
_SPEC.loader.exec_module(fb)

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: example

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: nature/*.jpg
Copyright: 2018 A Photographer
           2019 Another
License: CC-BY-SA-4.0

Files: nature/Wood.jpg
Copyright: 2008 Wood Person
License: CC0-1.0

Files: debian/*
Copyright: 2021 Packager
License: MIT

License: GPL-2+
 This program is free software ...
"""


def test_dep5_last_matching_stanza_wins():
    stanzas = fb.parse_dep5(DEP5)
    assert [s[1] for s in stanzas] == ["GPL-2+", "CC-BY-SA-4.0", "CC0-1.0", "MIT"]
    assert fb.licence_of("nature/Wood.jpg", stanzas) == ("CC0-1.0", "2008 Wood Person")
    assert fb.licence_of("nature/Dune.jpg", stanzas) == ("CC-BY-SA-4.0", "2018 A Photographer 2019 Another")
    assert fb.licence_of("desktop/Stripes.png", stanzas)[0] == "GPL-2+"
    assert fb.licence_of("debian/foo.jpg", stanzas)[0] == "GPL-2+"  # debian/* never names installed files
    assert fb.licence_of("x.jpg", [])[0] == "unknown"


def test_installed_paths_map_to_source_paths():
    src = fb.Source("m", "deb", "p", ("*",), source_paths=(("usr/share/backgrounds/mate/", ""),))
    assert fb.source_path("usr/share/backgrounds/mate/nature/Wood.jpg", src) == "nature/Wood.jpg"
    assert fb.source_path("usr/share/other/a.jpg", src) == "usr/share/other/a.jpg"


def test_free_text_copyright():
    text = ("Copyright:\n\n    © 2003-2010 Jesper K. Pedersen <blackie@kde.org>\n\nLicense:\n"
            "    it under the terms of the GNU General Public License as published by\n"
            "    the Free Software Foundation; either version 2 of the License, or\n"
            "    (at your option) any later version.\n")
    assert fb.free_text_licence(text) == ("GPL-2+ (package-wide)", "© 2003-2010 Jesper K. Pedersen <blackie@kde.org>")
    assert fb.free_text_licence("all rights reserved")[0] == "unknown (package-wide)"


def _gimp_pattern(px: np.ndarray, name: bytes = b"wood\x00") -> bytes:
    h, w, bpp = px.shape
    header = b"".join(int(v).to_bytes(4, "big") for v in (24 + len(name), 1, w, h, bpp)) + b"GPAT" + name
    return header + px.astype(np.uint8).tobytes()


def test_gimp_pattern_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fb.read_gimp_pattern(_gimp_pattern(rgb)), rgb)
    grey = rgb[:, :, :1]
    np.testing.assert_array_equal(fb.read_gimp_pattern(_gimp_pattern(grey)), np.repeat(grey, 3, axis=2))
    with pytest.raises(ValueError, match="GIMP pattern"):
        fb.read_gimp_pattern(b"\x00" * 40)


def test_to_photo_filters_and_resizes():
    assert fb.to_photo(None) is None
    assert fb.to_photo(np.zeros((100, 300, 3), np.uint8)) is None  # too small for 224-px crops
    cutout = np.full((300, 300, 4), 255, np.uint8)
    cutout[:100, :, 3] = 0
    assert fb.to_photo(cutout) is None  # transparent: a cut-out, not a scene
    big = fb.to_photo(np.zeros((1500, 3000), np.uint8))
    assert big.shape == (512, 1024, 3)  # long side 1024, grey -> 3 channels
    tile = np.arange(64 * 48 * 3, dtype=np.uint8).reshape(64, 48, 3)
    tiled = fb.to_photo(tile, tile=512)
    assert tiled.shape == (512, 512, 3)
    np.testing.assert_array_equal(tiled[64:128, 48:96], tile)


def test_selection_keeps_the_largest_wallpaper_and_drops_excluded():
    src = fb.Source("plasma", "deb", "p", ("w/*/contents/images/*",), exclude=("w/Bad/*",), one_per_dir=True)
    paths = ["w/A/contents/images/1920x1080.png", "w/A/contents/images/5120x2880.png", "w/A/contents/screenshot.png",
             "w/Bad/contents/images/1920x1080.jpg", "w/B/contents/images/800x600.jpg", "w/B/metadata.json"]
    assert fb.selected_paths(paths, src) == ["w/A/contents/images/5120x2880.png", "w/B/contents/images/800x600.jpg"]
    assert fb.output_name(src, "w/A/contents/images/5120x2880.png") == "plasma__A.jpg"
