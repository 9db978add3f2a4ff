"""The processor's name and features (m3dhmr.hardware), as benchmarks print them."""

from __future__ import annotations

from m3dhmr import hardware

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 fma avx f16c avx2
processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 fma avx f16c avx2
"""
XEON = """model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm aes
CPU implementer\t: 0x41
"""


def test_parse_cpuinfo_by_hand():
    assert hardware.parse_cpuinfo(EPYC) == ("AMD EPYC", frozenset("fpu vme sse sse2 fma avx f16c avx2".split()))
    name, flags = hardware.parse_cpuinfo(ARM)
    assert name is None and "asimd" in flags
    assert hardware.parse_cpuinfo("") == (None, frozenset())


def test_features_match_a_loop_over_the_table():
    for text in (EPYC, XEON, ARM):
        flags = hardware.parse_cpuinfo(text)[1]
        naive = []
        for name, names in hardware.FEATURES.items():
            for f in names:
                if f in flags:
                    naive.append(name)
                    break
        assert hardware.features_of(flags) == tuple(naive)
    assert hardware.features_of(hardware.parse_cpuinfo(EPYC)[1]) == ("avx2", "fma")
    assert hardware.features_of(hardware.parse_cpuinfo(XEON)[1]) == ("avx2", "fma", "avx512", "vnni", "bf16", "amx")
    assert hardware.features_of(hardware.parse_cpuinfo(ARM)[1]) == ("neon",)


def test_this_machine(tmp_path):
    info = hardware.cpu_info()
    assert info.name and info.cores >= 1 and info.name in hardware.cpu_summary()
    missing = hardware.cpu_info.__wrapped__(tmp_path / "no_cpuinfo")  # not Linux: still a name
    assert missing.name and missing.features == () and "features unknown" in missing.summary()


def test_flags_are_kept_for_exact_checks(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(XEON)
    got = hardware.cpu_info.__wrapped__(info)
    assert {"amx_bf16", "amx_tile"} <= got.flags and got.name.startswith("Intel(R) Xeon(R)")


def test_torch_threads_sets_then_restores_even_on_error():
    import pytest
    import torch

    before = torch.get_num_threads()
    with hardware.torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"):
        with hardware.torch_threads(before + 2):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with hardware.torch_threads(None):  # None: leave torch's count as it is
        assert torch.get_num_threads() == before
