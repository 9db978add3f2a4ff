"""The handshape library (:mod:`m3dhmr.hand.handshapes`) and its use by the sampler."""

import numpy as np
import pytest
import torch

from m3dhmr import conventions as cv
from m3dhmr.hand import handshapes, load_open_hand
from m3dhmr.hand.limits import within_limits
from m3dhmr.hand.sampler import sample_natural_pose

#: Expected finger states of the sign-language digits, written from the photos of
#: ../shared/data/sign-language-digits (E extended, B bent/curled; thumb, index .. little).
DIGIT_STATES = {
    "digit_1": "?EBBB", "digit_2": "?EEBB", "digit_3": "EEEBB", "digit_4": "?EEEE", "digit_5": "EEEEE",
    "digit_6": "?EEEB", "digit_7": "?EEBE", "digit_8": "?EBEE", "digit_9": "?BEEE",
}


@pytest.fixture(scope="module")
def posed():
    model = load_open_hand(torch.float64)
    names = handshapes.HANDSHAPE_NAMES
    poses = torch.tensor(np.stack([handshapes.handshape(n) for n in names]))
    joints = model(poses, torch.zeros(len(names), 9, dtype=torch.float64)).joints.numpy()
    return dict(zip(names, joints))


def _straightness(J, finger):
    """|tip - base| / summed bone lengths of a finger: 1 when straight."""
    ch = cv.FINGER_JOINTS[finger]
    bones = sum(np.linalg.norm(J[a] - J[b]) for a, b in zip(ch[:-1], ch[1:]))
    return np.linalg.norm(J[ch[-1]] - J[ch[0]]) / bones


def test_every_handshape_is_inside_the_limits_without_clamping():
    for name in handshapes.HANDSHAPE_NAMES:
        raw = handshapes.unclamped_handshape(name).reshape(1, -1)
        assert within_limits(raw)[0], name
        np.testing.assert_array_equal(handshapes.handshape(name), raw[0])  # clamping changed nothing
        assert np.all(raw[0, :3] == 0)
    assert len(handshapes.HANDSHAPE_NAMES) == 24
    assert {f"digit_{d}" for d in range(10)} <= set(handshapes.HANDSHAPE_NAMES)
    with pytest.raises(ValueError, match="unknown handshape 'wave'"):
        handshapes.handshape("wave")


def test_contact_shapes_touch_tip_to_tip(posed):
    for name, (a, b) in handshapes.CONTACTS.items():
        d = np.linalg.norm(posed[name][a] - posed[name][b])
        assert d < 0.010, (name, d)  # tip joints within 1 cm: the pads touch
    # Digit 0: the thumb tip meets the index and middle tips.
    J = posed["digit_0"]
    assert np.linalg.norm(J[4] - (J[8] + J[12]) / 2) < 0.015


def test_finger_states_match_the_sign_digits_and_gestures(posed):
    for name, states in DIGIT_STATES.items():
        for f, s in zip(cv.FINGER_NAMES, states):
            r = _straightness(posed[name], f)
            if s == "E":
                assert r > 0.95, (name, f, r)
            elif s == "B":
                assert r < 0.9, (name, f, r)
    fist = posed["fist"]
    for f in cv.FINGER_NAMES[1:]:
        assert _straightness(fist, f) < 0.5  # closed
        # The fingertip lies near the palm: closer to the wrist than the finger's own PIP joint.
        ch = cv.FINGER_JOINTS[f]
        assert np.linalg.norm(fist[ch[3]] - fist[0]) < np.linalg.norm(fist[ch[1]] - fist[0])
    # Thumbs-up: the thumb straight, the fingers closed; point: only the index straight.
    assert _straightness(posed["thumbs_up"], "thumb") > 0.95
    assert [_straightness(posed["point"], f) > 0.95 for f in cv.FINGER_NAMES[1:]] == [True, False, False, False]


def test_no_thumb_through_a_finger(posed):
    """The thumb's bone line stays >= 1.5 cm from other fingers' bone lines (two finger
    radii), except at the designated contact of the contact shapes."""

    def points(J, finger):
        ch = cv.FINGER_JOINTS[finger]
        t = np.linspace(0, 1, 6)[:, None]
        return np.concatenate([J[a] * (1 - t) + J[b] * t for a, b in zip(ch[:-1], ch[1:])])

    touching = {n: cv.finger_of_joint(b) for n, (_, b) in handshapes.CONTACTS.items()}
    touching.update({"digit_0": None, "grip_tripod": None})  # several fingers meet the thumb by design
    for name, J in posed.items():
        if touching.get(name, 0) is None:
            continue
        thumb = points(J, "thumb")[6:]  # from the thumb's MCP on
        for k, f in enumerate(cv.FINGER_NAMES[1:], start=2):
            if touching.get(name) == k:
                continue
            d = np.linalg.norm(thumb[:, None] - points(J, f)[None], axis=-1).min()
            assert d > 0.015, (name, f, d)


def test_sampling_is_deterministic_within_limits_and_centred():
    a, na = handshapes.sample_handshapes(50, np.random.default_rng(3))
    b, nb = handshapes.sample_handshapes(50, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert na == nb and set(na) <= set(handshapes.HANDSHAPE_NAMES) and len(set(na)) > 10
    assert within_limits(a).all() and np.all(a[:, :3] == 0)
    many, names = handshapes.sample_handshapes(400, np.random.default_rng(0), name="pinch")
    assert set(names) == {"pinch"}
    # Around the handshape: the mean is close, the spread is the documented noise.
    assert np.abs(many.mean(0) - handshapes.handshape("pinch")).max() < 0.06
    assert 0.03 < many[:, 3::3].std(0).mean() < 0.2


def test_sampler_draws_from_the_library_with_its_probability():
    rng = np.random.default_rng(5)
    sources = [sample_natural_pose(rng, 0.5)[1] for _ in range(300)]
    frac = np.mean([s != "joints" for s in sources])
    assert 0.4 < frac < 0.6
    assert all(sample_natural_pose(rng, 0.0)[1] == "joints" for _ in range(20))
    pose, src = sample_natural_pose(np.random.default_rng(1), 1.0)
    assert src in handshapes.HANDSHAPE_NAMES and pose.shape == (48,) and within_limits(pose[None])[0]
    with pytest.raises(ValueError, match="handshape_prob"):
        sample_natural_pose(rng, 1.5)
