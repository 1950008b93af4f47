"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from vaemix.errors import VaemixError


@contextlib.contextmanager
def open_atomic(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A file to write ``path`` through: a temporary file beside it, renamed over ``path`` when the block
    ends without an exception (and removed when it raises)."""
    path = Path(path)
    # One temporary name per process and thread: two writers never share one.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, path)
    except OSError as e:  # a full disk, a read-only run dir: one line, and the old file is untouched
        raise VaemixError(f"could not write {path}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with open_atomic(path, "wb") as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, values: Mapping) -> None:
    write_text(path, json.dumps(dict(values), indent=2, sort_keys=True) + "\n")
