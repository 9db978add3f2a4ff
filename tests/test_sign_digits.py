"""The sign-digits split by person and the handshape table."""

from __future__ import annotations

from pathlib import Path

import pytest

from m3dhmr.conventions import FINGER_NAMES
from m3dhmr.data import sign_digits as sd

SIGN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sign-language-digits"
needs_sign = pytest.mark.skipif(not (SIGN / "Dataset").is_dir(),
                                reason=f"the sign-language-digits photos are not at {SIGN}")


def _make(root: Path, items: list[tuple[int, int]]) -> Path:
    """Empty files Dataset/<digit>/IMG_<n>.JPG for (n, digit) items."""
    base = root / "Dataset"
    for d in range(10):
        (base / str(d)).mkdir(parents=True, exist_ok=True)
    for n, d in items:
        (base / str(d) / f"IMG_{n}.JPG").touch()
    return root


def _person(start: int, digits=range(10)) -> list[tuple[int, int]]:
    return [(start + i, d) for i, d in enumerate(digits)]


def test_names_and_digits():
    assert sd.image_number("x/3/IMG_1234.JPG") == 1234
    assert sd.digit_of("Dataset/7/IMG_1.JPG") == 7
    with pytest.raises(ValueError, match="IMG_<number>"):
        sd.image_number("x/3/photo.jpg")
    with pytest.raises(ValueError, match="not a digit"):
        sd.digit_of("Dataset/seven/IMG_1.JPG")


def test_grouping_hand_made(tmp_path):
    items = (_person(100)                                     # clean 0-9
             + [(110, 5)] + _person(111, [0, 1, 2, 3, 4, 6, 7, 8, 9])  # 5 first, then the rest: one person
             + _person(120, [0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9])         # a retaken 3 stays in the run
             + _person(131, [0, 1, 2, 3, 4])                  # a short run ...
             + _person(150, [4, 5, 6, 7, 8, 9]))              # ... and one 19 numbers later: another
    persons = sd.group_persons(sd.list_photos(_make(tmp_path, items)))
    sizes = [len(p) for p in persons]
    assert sizes == [10, 10, 11, 5, 6]
    assert [sd.image_number(p) for p in persons[1]] == list(range(110, 120))


def test_split_blocks_hand_computed(tmp_path):
    # 40 persons of ten -> blocks of 5; blocks 3 and 7 (persons 15-19, 35-39) held out.
    items = [it for k in range(40) for it in _person(1000 + 10 * k)]
    split = sd.split_by_person(_make(tmp_path, items))
    held = sorted({(sd.image_number(p) - 1000) // 10 for p in split["heldout"]})
    assert held == list(range(15, 20)) + list(range(35, 40))
    assert len(split["train"]) == 300 and len(split["heldout"]) == 100
    # the folder itself or its parent
    assert split == sd.split_by_person(tmp_path / "Dataset")


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="0..9"):
        sd.split_by_person(tmp_path)


def test_expected_states_table():
    assert sorted(sd.EXPECTED_FINGER_STATES) == list(range(10))
    five, fist_o = sd.EXPECTED_FINGER_STATES[5], sd.EXPECTED_FINGER_STATES[0]
    assert five.as_tuple() == ("out", "extended", "extended", "extended", "extended")
    assert fist_o["index"] == "curled" and fist_o["thumb"] == "any"
    # the number of extended fingers (index..little) of each digit, as signed
    ext = {d: sum(s[f] == "extended" for f in FINGER_NAMES[1:]) for d, s in sd.EXPECTED_FINGER_STATES.items()}
    assert ext == {0: 0, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 3, 7: 3, 8: 3, 9: 3}
    with pytest.raises(ValueError, match="thumb"):
        sd.FingerStates("bent", "extended", "extended", "extended", "extended")
    with pytest.raises(ValueError, match="ring"):
        sd.FingerStates("out", "extended", "extended", "straight", "extended")
    with pytest.raises(KeyError, match="pinky"):
        five["pinky"]


@needs_sign
def test_real_split():
    photos = sd.list_photos(SIGN)
    assert len(photos) == 2062
    split = sd.split_by_person(SIGN)
    assert split == sd.split_by_person(SIGN)  # fixed
    train, held = set(split["train"]), set(split["heldout"])
    assert not train & held and len(train) + len(held) == 2062
    assert 0.2 <= len(held) / 2062 <= 0.3
    # every digit is held out about equally, and no person is on both sides
    counts = [sum(sd.digit_of(p) == d for p in held) for d in range(10)]
    assert min(counts) >= 40
    for person in sd.group_persons(photos):
        assert len({p in held for p in person}) == 1
