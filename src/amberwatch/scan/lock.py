"""One scan at a time per scan identity (results.store.ScanIdentity): an OS file lock beside the project DB.

The lock file ``<db stem>-scan-<key>.lock`` holds the pid of the process running the scan. The lock is
an ``flock`` on it, so the OS releases it when that process ends in any way (even ``kill -9``); a second
process asking for the same scan gets ScanRunningError naming the pid, before any tile is requested.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from amberwatch.errors import DatabaseError, ScanRunningError
from amberwatch.project import scan_lock_file
from amberwatch.results.store import ScanIdentity


def scan_lock_path(db_path: str | os.PathLike[str], identity: ScanIdentity) -> Path:
    """The lock file of one scan identity beside the DB."""
    return scan_lock_file(db_path, hashlib.sha256(identity.key().encode("utf-8")).hexdigest()[:16])


def _holder(fd: int) -> str:
    """The pid written in a held lock file (the holder writes it just after locking: wait a moment for it)."""
    for _ in range(20):
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.01)
    return "unknown"


def _acquire(path: Path, what: str) -> int:
    """Lock ``path`` (created if needed) -> its fd; ScanRunningError naming the holder's pid when taken."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DatabaseError(f"cannot create the scan lock file {str(path)!r}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise ScanRunningError(
                f"{what} is already running (pid {pid}; lock {str(path)!r}); wait for it to finish, or stop it "
                "and run the same command again to resume"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file between our open and lock: take the new one


@contextlib.contextmanager
def scan_lock(db_path: str | os.PathLike[str], identity: ScanIdentity, what: str) -> Iterator[Path]:
    """Hold the lock of one scan identity for the block; ``what`` names the scan in the error message."""
    path = scan_lock_path(db_path, identity)
    fd = _acquire(path, what)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still holding the lock, so no one else is using this file
        os.close(fd)
