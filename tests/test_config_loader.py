from dataclasses import dataclass, field
from typing import Literal

import pytest

from m3dhmr.config_loader import ConfigError, from_dict, load_yaml, to_dict


@dataclass(frozen=True)
class Inner:
    k: int = 8
    name: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    lr: float = 1e-3
    channels: tuple[int, ...] = (32, 64)
    pair: tuple[int, int] = (1, 2)
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    path: str | None = None


def test_roundtrip_and_nesting():
    cfg = from_dict(Outer, {"lr": 1, "channels": [1, 2, 3], "inner": {"k": 2, "name": "b"}})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.channels == (1, 2, 3)
    assert cfg.inner == Inner(k=2, name="b")
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"lrr": 1}, "lrr"),
        ({"inner": {"kk": 1}}, "inner.kk"),
        ({"inner": {"name": "c"}}, "inner.name"),
        ({"pair": [1, 2, 3]}, "pair"),
        ({"flag": "yes"}, "flag"),
        ({"inner": {"k": 1.5}}, "inner.k"),
    ],
)
def test_errors_name_the_key(data, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        from_dict(Outer, data)


def test_load_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.01\ninner:\n  k: 4\n")
    assert load_yaml(Outer, p) == Outer(lr=0.01, inner=Inner(k=4))
    p.write_text("lr: 0.01\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_yaml(Outer, p)
    with pytest.raises(FileNotFoundError):
        load_yaml(Outer, tmp_path / "missing.yaml")
