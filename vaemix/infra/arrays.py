"""Arrays from files and the fixed held-out split: what image and table sources share."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from vaemix.errors import VaemixError

log = logging.getLogger("vaemix")

SPLIT_SEED = 0  # fixed forever: the held-out rows of a file never change


def existing_file(path: str) -> Path:
    """``path`` with ``~`` expanded, or a clear error if no such file exists."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise VaemixError(f"data file {str(p)!r} does not exist")
    return p


def read_npz(
    path: Path, key: str, optional: bool = False, sole: bool = False, setting: str | None = None
) -> np.ndarray | None:
    """Array ``key`` of a ``.npz`` file (None if ``optional`` and absent), or a clear error naming the config
    ``setting`` that picks another. ``X`` is read for ``x`` when the file has no ``x`` (scikit-learn's
    spelling); with ``sole``, a file of one array under another name gives that one (``np.savez(path, x)``
    names it ``arr_0``)."""
    try:
        with np.load(path) as f:
            names = f.files
            found = _npz_key(names, key, sole)
            if found != key and found in names:
                log.info("%s: its array %r is read as %r", path, found, key)
            value = f[found] if found in names else None
    except (OSError, ValueError) as e:
        raise VaemixError(f"{path}: not a readable .npz file ({e})") from None
    if value is None and not optional:
        pick = f"; name the one to read with {setting}=" if setting else ""
        raise VaemixError(f"{path}: no array {key!r} in the .npz (it has: {', '.join(names)}){pick}")
    return value


def _npz_key(names: list[str], key: str, sole: bool) -> str:
    """The stored name to read for ``key``: itself, its only other-case spelling, or a sole array's name."""
    if key in names:
        return key
    spelled = [name for name in names if name.lower() == key.lower()]
    if len(spelled) == 1:
        return spelled[0]
    return names[0] if sole and len(names) == 1 else key


def held_out_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train and test row indices with ``round(n * fraction)`` test rows (at least one of each)."""
    n_test = int(round(n * fraction))
    if n_test < 1 or n_test >= n:
        raise VaemixError(f"{n} examples are too few to hold out data.test_fraction={fraction}")
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return perm[n_test:], perm[:n_test]


def named_labels(values: list[str], names: list[str] | None) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels as they are; any others numbered in sorted order (their names kept)."""
    if names is None and all(v.strip().lstrip("-").isdigit() for v in values):
        return np.asarray([int(v) for v in values], np.int64), None
    names = names or sorted({v.strip() for v in values})
    number = {name: i for i, name in enumerate(names)}  # not names.index: rows x names compares
    return np.asarray([number.get(v.strip(), -1) for v in values], np.int64), names


def array_labels(path: Path, y: np.ndarray, names: list[str] | None = None) -> tuple[np.ndarray, list[str] | None]:
    """Labels ``y`` from an array file: whole numbers as they are, names (strings) numbered by :func:`named_labels`."""
    y = y.reshape(-1)
    if y.dtype.kind in "US":
        return named_labels([str(v) for v in y], names)
    if y.dtype.kind in "biu" or (y.dtype.kind == "f" and bool(np.all(y == np.round(y)))):
        return y.astype(np.int64), None
    example = y[0].item()
    raise VaemixError(f"{path}: its labels y must be whole numbers or names, got {y.dtype} values such as {example!r}")


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
        if len(shape) != 2:
            raise VaemixError(f"{path}: a table must be a 2-D [N, F] array, got shape {shape}")
        if fortran:  # a row's values lie far apart: rows cannot be read one at a time
            raise VaemixError(
                f"{path}: the array is stored column by column (Fortran order); "
                "save it row by row: np.save(path, np.ascontiguousarray(x))"
            )
        if np.dtype(dtype).hasobject:
            raise VaemixError(f"{path}: the array holds Python objects, not numbers; save a numeric array")
        self.path, self.shape, self.dtype, self.ndim = path, tuple(shape), np.dtype(dtype), 2
        self.row_bytes = shape[1] * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)
        if os.fstat(self._fd).st_size < self.offset + self.shape[0] * self.row_bytes:
            raise VaemixError(self._short())

    def _short(self) -> str:
        return f"{self.path}: the file is shorter than the {self.shape[0]} rows its header declares (cut off?)"

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self) -> None:
        if hasattr(self, "_fd"):
            os.close(self._fd)

    def _read_into(self, out: memoryview, first: int) -> None:
        """Fill ``out`` with the bytes of the rows from ``first`` on. One read may return less than asked
        (Linux stops at ~2 GiB), so it reads on until ``out`` is full; the file's end first is a file cut
        off since it was opened."""
        done, at = 0, self.offset + first * self.row_bytes
        while done < len(out):
            got = os.preadv(self._fd, [out[done:]], at + done)
            if not got:
                raise VaemixError(self._short())
            done += got

    def __getitem__(self, key) -> np.ndarray:
        """Rows by a slice or by an array of row numbers, read straight into the returned array (one read
        per run of consecutive rows)."""
        if isinstance(key, slice):
            key = np.arange(*key.indices(self.shape[0]))
        rows = np.asarray(key, np.int64)
        out = np.empty((len(rows), self.shape[1]), self.dtype)
        if not len(rows):
            return out
        bytes_out, size = memoryview(out.reshape(-1).view(np.uint8)), self.row_bytes
        starts = np.flatnonzero(np.r_[True, np.diff(rows) != 1])  # where each run of consecutive rows begins
        ends = np.append(starts[1:], len(rows))
        for start, end, first in zip(starts.tolist(), ends.tolist(), rows[starts].tolist(), strict=True):
            self._read_into(bytes_out[start * size : end * size], first)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = self[:]
        return rows if dtype is None else rows.astype(dtype)
