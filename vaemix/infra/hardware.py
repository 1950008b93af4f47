"""What this machine's CPU can do that changes the fastest way to train on it."""

from __future__ import annotations

import os
from pathlib import Path

_BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16"}  # the instructions oneDNN runs bfloat16 products on


def cpu_has_bfloat16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU multiplies bfloat16 natively and TF's oneDNN kernels are on to use it (False where
    the CPU cannot say, as off Linux: emulated bfloat16 is slower than float32)."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        return False
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool(_BFLOAT16_FLAGS & set(flags))
