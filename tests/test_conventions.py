"""Pin the package's conventions: changing any of these breaks data compatibility."""

from m3dhmr import conventions as c


def test_joint_order_is_freihand():
    assert c.NUM_JOINTS == len(c.JOINT_NAMES) == 21
    assert c.JOINT_NAMES[0] == "wrist"
    for i, finger in enumerate(c.FINGER_NAMES):
        names = c.JOINT_NAMES[1 + 4 * i: 5 + 4 * i]
        assert all(n.startswith(finger) for n in names)
        assert names[-1].endswith("tip")
        assert c.FINGER_JOINTS[finger] == tuple(range(1 + 4 * i, 5 + 4 * i))
    assert c.FINGER_NAMES == ("thumb", "index", "middle", "ring", "little")
    assert c.TIP_JOINTS == (4, 8, 12, 16, 20)
    assert c.ROOT_JOINT == 0


def test_skeleton_parents_and_bones():
    assert c.JOINT_PARENTS[0] == -1
    for j in range(1, 21):
        p = c.JOINT_PARENTS[j]
        assert p == (0 if (j - 1) % 4 == 0 else j - 1)
    assert len(c.BONES) == 20
    assert c.SCALE_BONE == (9, 10)


def test_regions():
    assert c.REGION_NAMES == ("palm", "thumb", "index", "middle", "ring", "little")
    assert c.NUM_REGIONS == 6 and c.PALM == 0
    assert c.finger_of_joint(0) == 0
    assert [c.finger_of_joint(j) for j in (1, 4, 5, 8, 20)] == [1, 1, 2, 2, 5]


def test_units_camera_and_mano_facts():
    assert c.MM_PER_M == 1000.0
    assert c.VERTEX_NORMALISATION_M == 0.2
    assert c.CAMERA_CONVENTION == "opencv"
    assert c.MANO_TIP_VERTICES == (744, 320, 443, 555, 672)
    assert (c.MANO_NUM_VERTICES, c.MANO_NUM_FACES) == (778, 1538)
