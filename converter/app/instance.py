"""One watcher per folder: a lock file in the user state folder, held for as long as vinv-watch runs.

The operating system releases the lock when its process ends in any way (kill -9 included), so a
leftover file never blocks the next watcher. The file also holds the watcher's process id, which
messages name. ``vinv`` (the launcher) asks here whether to start a watcher; the watcher takes the
lock itself, so two launchers started at once still leave one watcher.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import IO

import platformdirs

from converter.app.config import APP_NAME

if os.name == "nt":
    import msvcrt

    def _try_lock(handle: IO[bytes]) -> bool:
        handle.seek(1 << 20)  # lock a byte past the process id, so that others can still read it
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
else:
    import fcntl

    def _try_lock(handle: IO[bytes]) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True


def lock_path(folder: str | os.PathLike[str]) -> Path:
    """The lock file of the watcher of ``folder``: named by a hash of its real path, in the user state folder."""
    key = hashlib.sha1(os.fsencode(os.path.realpath(folder))).hexdigest()[:16]
    return platformdirs.user_state_path(APP_NAME) / "watchers" / f"{key}.lock"


LOCK_RETRY_SECONDS = 1.0  # how long a starting watcher retries: a launcher's check holds the lock for an instant


def _locked(path: Path) -> IO[bytes] | None:
    """The lock file, opened and locked by this process; None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+b")
    if _try_lock(handle):
        return handle
    handle.close()
    return None


class WatcherLock:
    """Held by the one watcher of a folder; ``acquire`` fails while another process holds it."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = lock_path(folder)
        self._handle: IO[bytes] | None = None

    def acquire(self, retry_seconds: float = LOCK_RETRY_SECONDS) -> bool:
        """Take the lock and write this process id into it; False when another watcher keeps it that long."""
        deadline = time.monotonic() + retry_seconds
        while (handle := _locked(self.path)) is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n".encode("ascii"))
        handle.flush()
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
            self._handle = None


def running_watcher(folder: str | os.PathLike[str]) -> int | None:
    """The process id of the watcher of ``folder``, or None when none is running (0 if its id is unreadable).

    Checking takes the lock for an instant, which is why a starting watcher retries for a moment.
    """
    path = lock_path(folder)
    probe = _locked(path)
    if probe is not None:
        probe.close()
        return None
    try:
        return int(path.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return 0
