"""The sign-language-digits photos: a fixed split by person and each digit's handshape.

The set (``../shared/data/sign-language-digits``, Apache-2.0, Mavi 2020): 2,062 real
photos, 100 x 100 px, ``Dataset/<digit>/IMG_<number>.JPG``, the right hands (mostly) of 218
people showing the Turkish sign-language digits 0-9, palm towards the camera. Never part of
the package; training and evaluation code reads it from disk.

Who is who (evidence, from the file numbers and from looking at the photos):

- The numbers run from 1118 to 5999 with few gaps, and sorted by number the digit
  folder cycles 0, 1, ..., 9: IMG_1118 is a 0, IMG_1119 a 1, ..., IMG_1127 a 9, IMG_1128 a 0
  again. Viewed side by side, each such run of ten shows one hand (skin, nails, sleeve,
  background and light stay the same within the run and change at its 0).
- Sorting by number and starting a new person where the digit goes down (or the
  number jumps by more than 12) gives 217 runs: 190 of exactly 0-9, the rest short or
  with a retaken digit (1158-1168 has two 8s; 4243-4253 two 3s).
- A few runs are one person's session taken out of order and cut in two by that rule
  (IMG_4039 is a 5 and IMG_4040-4048 that person's 0-4 and 6-9; 4806 is a 1 before 4807's
  0, 2-8); two neighbouring runs are merged when neither has all ten digits, they are at
  most 12 numbers apart, share at most one digit and hold at most 11 photos together:
  207 persons (199 of ten photos; the README says 218 people, so a few merged runs may be
  two people, which only keeps them on one side of the split).
- Neighbouring runs can still be the same person on another take (4644-4652 and 4668-4673
  look like one hand), so persons are held out in blocks of :data:`BLOCK` neighbouring
  runs, not one by one: a person split in two runs then lands on one side of the split
  except at a block's edge.

Split (fixed; no randomness): runs sorted by their first number, block ``b = run // 5``;
held out when ``b % 4 == 3``, i.e. about 25 % of the persons (and photos), spread over the
whole number range (the earliest and latest sessions differ in camera and light).

Handshapes (:data:`EXPECTED_FINGER_STATES`), written from looking at 12+ photos of each
digit (every 17th file of each folder, and the ten digits of several persons):

====== ============ ==================================================================
digit  thumb        index / middle / ring / little
====== ============ ==================================================================
0      any          all curled: the fingers bend round onto the thumb tip, an "O"
1      across       index extended; the others curled, the thumb over them
2      across       index, middle extended ("V"); ring, little curled under the thumb
3      out          thumb, index, middle extended; ring, little curled
4      across       four fingers extended, the thumb folded over the palm
5      out          all five extended and spread
6      across       index, middle, ring extended; the thumb holds the little finger down
7      across       index, middle, little extended; the thumb holds the ring finger down
8      across       index, ring, little extended; the thumb holds the middle finger down
9      any          middle, ring, little extended; index curled onto the thumb tip ("OK")
====== ============ ==================================================================

Ambiguous: in 0 and 9 the thumb meets a fingertip in front of the index finger, neither
clearly across the palm nor out to the side (marked "any"); in 0 the fingers are bent
less than in a fist (an open "O"), so "curled" there means "clearly bent", not "in a fist";
in 9 the index finger is bent the same way. The held-down fingers of 6-8 are bent as in a
fist. Some persons hold 3's thumb half out; it is still away from the palm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from m3dhmr.conventions import FINGER_NAMES
from m3dhmr.errors import InputError

#: Neighbouring runs (persons) held out together (see the module doc).
BLOCK = 5
#: One block in this many is held out.
HELDOUT_EVERY = 4
#: Largest number gap inside one person's photos.
MAX_GAP = 12
SPLITS = ("train", "heldout")

FingerState = Literal["extended", "curled", "any"]
ThumbState = Literal["out", "across", "any"]

_NAME = re.compile(r"IMG_(\d+)\.JPG", re.IGNORECASE)


@dataclass(frozen=True)
class FingerStates:
    """The state of each finger of one handshape: thumb "out" (away from the palm) /
    "across" (over the palm or the fingers) / "any"; the others "extended" / "curled" / "any"."""

    thumb: ThumbState
    index: FingerState
    middle: FingerState
    ring: FingerState
    little: FingerState

    def __post_init__(self) -> None:
        if self.thumb not in ("out", "across", "any"):
            raise InputError(f"FingerStates.thumb must be 'out', 'across' or 'any', got {self.thumb!r}")
        for f in FINGER_NAMES[1:]:
            if getattr(self, f) not in ("extended", "curled", "any"):
                raise InputError(f"FingerStates.{f} must be 'extended', 'curled' or 'any', got {getattr(self, f)!r}")

    def __getitem__(self, finger: str) -> str:
        if finger not in FINGER_NAMES:
            raise KeyError(f"unknown finger {finger!r}; fingers: {FINGER_NAMES}")
        return getattr(self, finger)

    def as_tuple(self) -> tuple[str, ...]:
        """(5,) states in :data:`m3dhmr.conventions.FINGER_NAMES` order."""
        return tuple(getattr(self, f.name) for f in fields(self))


def _states(thumb: str, fingers: str) -> FingerStates:
    """fingers: four letters, index to little, E extended / C curled / A any."""
    word = {"E": "extended", "C": "curled", "A": "any"}
    return FingerStates(thumb, *(word[c] for c in fingers))  # type: ignore[arg-type]


#: Each digit's expected finger states (see the table in the module doc).
EXPECTED_FINGER_STATES: dict[int, FingerStates] = {
    0: _states("any", "CCCC"),
    1: _states("across", "ECCC"),
    2: _states("across", "EECC"),
    3: _states("out", "EECC"),
    4: _states("across", "EEEE"),
    5: _states("out", "EEEE"),
    6: _states("across", "EEEC"),
    7: _states("across", "EECE"),
    8: _states("across", "ECEE"),
    9: _states("any", "CEEE"),
}


def image_number(path: Path | str) -> int:
    """The number of ``IMG_<number>.JPG``; a ValueError for any other name."""
    m = _NAME.fullmatch(Path(path).name)
    if m is None:
        raise InputError(f"{path}: not a sign-digits photo name (IMG_<number>.JPG)")
    return int(m.group(1))


def digit_of(path: Path | str) -> int:
    """The digit shown in a photo: the name of its folder (``Dataset/<digit>/IMG_*.JPG``)."""
    name = Path(path).parent.name
    if not (len(name) == 1 and name.isdigit()):
        raise InputError(f"{path}: its folder {name!r} is not a digit 0-9 (expected Dataset/<digit>/IMG_*.JPG)")
    return int(name)


def dataset_dir(root: Path | str) -> Path:
    """The folder holding ``0`` .. ``9``: ``root`` itself or ``root/Dataset``."""
    root = Path(root)
    for cand in (root, root / "Dataset"):
        if all((cand / str(d)).is_dir() for d in range(10)):
            return cand
    raise FileNotFoundError(f"{root}: no sign-language-digits folders 0..9 (in it or in its Dataset/)")


def list_photos(root: Path | str) -> list[Path]:
    """Every ``<digit>/IMG_*.JPG`` under ``root`` (or ``root/Dataset``), sorted by number."""
    base = dataset_dir(root)
    paths = [p for d in range(10) for p in (base / str(d)).iterdir() if _NAME.fullmatch(p.name)]
    if not paths:
        raise FileNotFoundError(f"{base}: no IMG_*.JPG photos in the digit folders")
    return sorted(paths, key=lambda p: (image_number(p), digit_of(p)))


def group_persons(paths: list[Path]) -> list[list[Path]]:
    """Photos (sorted by number) -> persons, each a list of photos (see the module doc)."""
    runs: list[list[Path]] = []
    for p in paths:
        if runs:
            last = runs[-1][-1]
            if digit_of(p) >= digit_of(last) and image_number(p) - image_number(last) <= MAX_GAP:
                runs[-1].append(p)
                continue
        runs.append([p])
    merged: list[list[Path]] = []
    for run in runs:
        if merged:
            prev = merged[-1]
            a, b = {digit_of(p) for p in prev}, {digit_of(p) for p in run}
            if (image_number(run[0]) - image_number(prev[-1]) <= MAX_GAP and len(a & b) <= 1
                    and len(a) < 10 and len(b) < 10 and len(prev) + len(run) <= 11):
                prev.extend(run)
                continue
        merged.append(run)
    return merged


def split_by_person(root: Path | str) -> dict[str, list[Path]]:
    """{"train": [...], "heldout": [...]}: the photos under ``root`` (the set's folder or its
    ``Dataset/``), split by person as the module doc describes; each list sorted by number."""
    persons = group_persons(list_photos(root))
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for i, person in enumerate(persons):
        held = (i // BLOCK) % HELDOUT_EVERY == HELDOUT_EVERY - 1
        out["heldout" if held else "train"].extend(person)
    return out
