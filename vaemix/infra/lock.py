"""One writer per run dir: ``train.py`` holds ``<run_dir>/train.lock`` for its whole life.

The lock is an ``fcntl`` lock, which the OS releases when its holder dies (``kill -9``, a crashed node),
so a stale lock never blocks on one machine. ``fcntl`` locks are unreliable on the shared filesystems that
multi-worker runs use, so the file also records the holder's host, PID and a heartbeat that a thread
renews every ``HEARTBEAT_S`` seconds: a holder on another host whose heartbeat is fresh is respected, and
one silent for ``STALE_S`` seconds is taken over with a line saying so.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from vaemix.errors import VaemixError

log = logging.getLogger("vaemix")

LOCK = "train.lock"
HEARTBEAT_S = 10.0
STALE_S = 120.0  # a heartbeat older than this is a dead holder's


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``with RunLock(run_dir): ...``: the run dir's one writer, or a :class:`VaemixError` naming the holder."""

    def __init__(self, run_dir: str | Path, stale_s: float = STALE_S, heartbeat_s: float = HEARTBEAT_S):
        self.path, self.stale_s, self.heartbeat_s = Path(run_dir) / LOCK, stale_s, heartbeat_s
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None  # being written, or empty: a lock just taken

    def _refuse(self, holder: dict | None, age: float | None) -> None:
        who = "another process" if holder is None else f"PID {holder['pid']} on host {holder['host']}"
        since = "" if holder is None else f" since {holder['started']}"
        beat = "" if age is None else f" (last heartbeat {age:.0f} s ago)"
        raise VaemixError(
            f"{self.path.parent} is being trained by {who}{since}{beat}; wait for it to finish, stop it, or choose "
            "another hydra.run.dir"
        )

    def _open_locked(self) -> int:
        """An fd of the lock file holding its fcntl lock, the file still being the one at ``self.path``."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = self._holder()
                self._refuse(holder, None if holder is None else time.time() - holder["heartbeat"])
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                return fd
            os.close(fd)  # the previous holder removed the file between our open and our lock: again

    def _check_other_host(self) -> None:
        """The fcntl lock is ours; respect a live holder elsewhere that the shared filesystem hid from it."""
        holder = self._holder()
        if holder is None or holder["host"] == socket.gethostname():
            return
        age = time.time() - holder["heartbeat"]
        if age < self.stale_s:
            self._refuse(holder, age)
        log.warning("taking over the lock of PID %s on host %s: no heartbeat for %.0f s", holder["pid"],
                    holder["host"], age)  # fmt: skip

    def _write(self, started: str) -> None:
        record = {"host": socket.gethostname(), "pid": os.getpid(), "started": started, "heartbeat": time.time()}
        data = json.dumps(record).encode()
        os.ftruncate(self._fd, 0)  # rewritten in place: a new file would not carry the fcntl lock
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def _beat(self, started: str) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._write(started)
            except OSError as e:  # a full disk must not kill training; the next beat tries again
                log.warning("could not renew the run dir lock's heartbeat: %s", e)

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._open_locked()
        except OSError as e:
            raise VaemixError(f"cannot lock the run dir {self.path.parent}: {e.strerror or e}") from None
        try:
            self._check_other_host()
        except VaemixError:
            self._release(remove=False)
            raise
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        self._write(started)
        self._thread = threading.Thread(target=self._beat, args=(started,), daemon=True, name="run-lock-heartbeat")
        self._thread.start()
        return self

    def _release(self, remove: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._fd is not None:
            if remove:
                self.path.unlink(missing_ok=True)  # before closing: nobody can lock the old file after us
            os.close(self._fd)
            self._fd = None

    def __exit__(self, *exc) -> None:
        self._release(remove=True)
