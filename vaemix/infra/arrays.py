"""Arrays from files and the fixed held-out split: what image and table sources share."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaemix.errors import VaemixError

SPLIT_SEED = 0  # fixed forever: the held-out rows of a file never change


def existing_file(path: str) -> Path:
    """``path`` with ``~`` expanded, or a clear error if no such file exists."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise VaemixError(f"data file {str(p)!r} does not exist")
    return p


def read_npz(path: Path, key: str, optional: bool = False) -> np.ndarray | None:
    """Array ``key`` of a ``.npz`` file (None if ``optional`` and absent), or a clear error."""
    try:
        with np.load(path) as f:
            names, value = f.files, f[key] if key in f else None
    except (OSError, ValueError) as e:
        raise VaemixError(f"{path}: not a readable .npz file ({e})") from None
    if value is None and not optional:
        raise VaemixError(f"{path}: no array {key!r} in the .npz (it has: {', '.join(names)})")
    return value


def held_out_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train and test row indices with ``round(n * fraction)`` test rows (at least one of each)."""
    n_test = int(round(n * fraction))
    if n_test < 1 or n_test >= n:
        raise VaemixError(f"{n} examples are too few to hold out data.test_fraction={fraction}")
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return perm[n_test:], perm[:n_test]
