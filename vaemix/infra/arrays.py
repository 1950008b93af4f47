"""Arrays from files and the fixed held-out split: what image and table sources share."""

from __future__ import annotations

import os
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


class NpyRows:
    """The rows of a 2-D ``.npy`` file, read from disk when indexed (``os.pread``): a slice or an index array
    gives an in-memory copy of just those rows, and nothing of the file stays in this process's memory, so
    the file may be larger than memory (a memory map would count every row it touched as resident)."""

    def __init__(self, path: Path):
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = header(f)
                self.offset = f.tell()
        except (OSError, ValueError) as e:
            raise VaemixError(f"{path}: not a readable .npy file ({e})") from None
        if fortran or len(shape) != 2:
            raise VaemixError(f"{path}: a table must be a 2-D [N, F] array in C order, got shape {shape}")
        self.path, self.shape, self.dtype, self.ndim = path, tuple(shape), np.dtype(dtype), 2
        self.row_bytes = shape[1] * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self) -> None:
        if hasattr(self, "_fd"):
            os.close(self._fd)

    def _read(self, first: int, count: int) -> bytes:
        return os.pread(self._fd, count * self.row_bytes, self.offset + first * self.row_bytes)

    def __getitem__(self, key) -> np.ndarray:
        """Rows by a slice (one read) or by an array of row numbers (one read per run of consecutive rows)."""
        if isinstance(key, slice):
            start, stop, _ = key.indices(self.shape[0])
            data = self._read(start, max(stop - start, 0))
            return np.frombuffer(data, self.dtype).reshape(-1, self.shape[1]).copy()
        rows = np.asarray(key, np.int64)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1  # runs of consecutive rows
        parts = [
            np.frombuffer(self._read(int(run[0]), len(run)), self.dtype) for run in np.split(rows, breaks) if len(run)
        ]
        return (
            np.concatenate(parts).reshape(len(rows), self.shape[1])
            if parts
            else np.empty((0, self.shape[1]), self.dtype)
        )

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = self[:]
        return rows if dtype is None else rows.astype(dtype)
