"""Reading the CPU's bfloat16 units from /proc/cpuinfo."""

from vaemix.infra.hardware import cpu_has_bfloat16_units

LINE = "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni{}\n"


def test_bfloat16_units_are_the_cpus_avx512_bf16_or_amx_flags(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    for extra, expected in ((" avx512_bf16", True), (" amx_bf16 amx_tile", True), ("", False)):
        (cpuinfo := tmp_path / "cpuinfo").write_text("processor\t: 0\n" + LINE.format(extra))
        assert cpu_has_bfloat16_units(cpuinfo) is expected
    assert cpu_has_bfloat16_units(tmp_path / "missing") is False  # a CPU that cannot say: float32
    (cpuinfo := tmp_path / "cpuinfo").write_text(LINE.format(" avx512_bf16"))
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # without oneDNN, TF's bfloat16 products are emulated
    assert cpu_has_bfloat16_units(cpuinfo) is False
