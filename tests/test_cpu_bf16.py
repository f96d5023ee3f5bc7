"""bf16 autocast on a CPU only where it has bf16 instructions (read from the kernel's flags, no private torch API)."""

from __future__ import annotations

from pathlib import Path

from pipeline.train.parts import cpu_has_native_bf16

FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl{extra}\nbogomips\t: 4000\n"


def test_native_bf16_only_with_avx512_bf16_or_amx(tmp_path: Path) -> None:
    cases = {"": False, " avx512_bf16": True, " amx_bf16 amx_tile": True, " avx512_bf16x": False}
    for extra, expected in cases.items():
        info = tmp_path / "cpuinfo"
        info.write_text(FLAGS.format(extra=extra))
        assert cpu_has_native_bf16(info) is expected, extra
    assert cpu_has_native_bf16(tmp_path / "missing") is False
