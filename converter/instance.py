"""One watcher per folder: a lock file in the user state folder, held for as long as vinv-watch runs.

The operating system releases the lock when its process ends in any way (kill -9 included), so a
leftover file never blocks the next watcher. The file also holds the watcher's process id, which
messages name. ``vinv`` (the launcher) asks here whether to start a watcher; the watcher takes the
lock itself, so two launchers started at once still leave one watcher.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO

import platformdirs

from converter.config import APP_NAME

if os.name == "nt":
    import msvcrt

    def _try_lock(handle: IO[str]) -> bool:
        handle.seek(1 << 20)  # lock a byte past the process id, so that others can still read it
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
else:
    import fcntl

    def _try_lock(handle: IO[str]) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True


def lock_path(folder: str | os.PathLike[str]) -> Path:
    """The lock file of the watcher of ``folder``: named by a hash of its real path, in the user state folder."""
    key = hashlib.sha1(os.fsencode(os.path.realpath(folder))).hexdigest()[:16]
    return platformdirs.user_state_path(APP_NAME) / "watchers" / f"{key}.lock"


class WatcherLock:
    """Held by the one watcher of a folder; ``acquire`` fails while another process holds it."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = lock_path(folder)
        self._handle: IO[str] | None = None

    def acquire(self) -> bool:
        """Take the lock and write this process id into it; False when another watcher has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="ascii")
        if not _try_lock(handle):
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
            self._handle = None


def running_watcher(folder: str | os.PathLike[str]) -> int | None:
    """The process id of the watcher of ``folder``, or None when none is running (0 if its id is unreadable)."""
    lock = WatcherLock(folder)
    if lock.acquire():
        lock.release()
        return None
    try:
        return int(lock.path.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return 0
