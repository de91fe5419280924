"""The lock file of the ``sqlite://`` backend: opening it, its permissions, its identity, errors.

A lock file is opened in WAL mode (``synchronous=NORMAL``) after checking that this user can
write it and the ``-wal`` and ``-shm`` files beside it; a new file gets the URL's ``file_mode``.
Its identity (device, inode) lets the table notice a file deleted or replaced under it.
``map_errors`` is the one mapping of sqlite3 and file errors to tenure's.
"""

from __future__ import annotations

import errno
import os
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from tenure._async.backends.sqlite.sql import (
    RATES_EXPIRY_INDEX,
    RATES_SCHEMA,
    RECORDS_EXPIRY_INDEX,
    RECORDS_SCHEMA,
    SCHEMA,
    SEMAPHORES_SCHEMA,
    STATES_EXPIRY_INDEX,
    STATES_SCHEMA,
    WAITERS_SCHEMA,
)
from tenure._exceptions import (
    BackendError,
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
)

DEFAULT_FILE_MODE = 0o600  # a new lock file is its creator's alone unless the URL says otherwise
Identity = tuple[int, int] | None  # (device, inode) of a file, None if there is none


def connect(path: Path, *, busy_timeout: float, file_mode: int) -> tuple[sqlite3.Connection, Identity]:
    """Open the lock file (creating it, its folder and its tables) in WAL mode.

    Return the connection and the identity of the file it opened.
    """
    try:
        prepare(path, file_mode)
        db = sqlite3.connect(
            path,
            # Busy waits are ours (the table's): SQLite's own handler sleeps 1, 2, 5, 10 ms...,
            # far longer than a lock hand-off takes.
            timeout=0,
            isolation_level=None,  # autocommit: every statement is its own transaction
            check_same_thread=False,  # guarded by the table's lock instead
        )
    except (OSError, sqlite3.Error) as exc:
        raise map_errors(exc, f"cannot open the SQLite lock file {path}") from exc
    try:
        opened = identity(path)
        _while_locked(lambda: _use_wal(db), busy_timeout)
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
        _while_locked(lambda: db.execute(SCHEMA), busy_timeout)
        _while_locked(lambda: db.execute(WAITERS_SCHEMA), busy_timeout)
        _while_locked(lambda: db.execute(SEMAPHORES_SCHEMA), busy_timeout)
        _while_locked(lambda: db.execute(RECORDS_SCHEMA), busy_timeout)
        _while_locked(lambda: db.execute(RECORDS_EXPIRY_INDEX), busy_timeout)
        _while_locked(lambda: db.execute(RATES_SCHEMA), busy_timeout)
        _while_locked(lambda: db.execute(RATES_EXPIRY_INDEX), busy_timeout)
        _while_locked(lambda: db.execute(STATES_SCHEMA), busy_timeout)
        _while_locked(lambda: db.execute(STATES_EXPIRY_INDEX), busy_timeout)
    except (OSError, sqlite3.Error) as exc:
        db.close()
        raise map_errors(exc, f"cannot open the SQLite lock file {path}") from exc
    return db, opened


def prepare(path: Path, file_mode: int) -> None:
    """Create the lock file with ``file_mode`` if it is missing; refuse files this user cannot write.

    SQLite opens a file it cannot write read-only and creates its ``-wal`` and ``-shm`` files
    beside it, owned by this user: in a shared (sticky) folder the file's owner can then neither
    write nor remove them. So look first, and fail leaving nothing behind.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, file_mode)
        except FileExistsError:
            pass
        else:
            try:
                os.fchmod(fd, file_mode)  # the umask must not change what was asked for
            finally:
                os.close(fd)
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            try:
                os.close(os.open(name, os.O_RDWR | os.O_CLOEXEC))
            except FileNotFoundError:
                if name == path:
                    raise
        if not Path(f"{path}-wal").exists() and not os.access(path.parent, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "cannot create its -wal and -shm files", str(path.parent))
    except PermissionError as exc:
        raise ConfigurationError(_no_write_access(path, exc)) from None


def _no_write_access(path: Path, exc: PermissionError) -> str:
    """Explain which file this user cannot write, and whose it is."""
    name = exc.filename or path
    try:
        st = os.stat(name)
        whose = f" (owner uid {st.st_uid}, mode {st.st_mode & 0o7777:04o})"
    except OSError:
        whose = ""
    return (
        f"the SQLite lock file {path} is not writable by this user: {exc.strerror or exc}: {name}{whose}; "
        "every user of a lock file needs write access to it and its folder (share it with "
        "?file_mode=0660 and a common group) or use a path of your own"
    )


def identity(path: Path) -> Identity:
    """Return (device, inode) of the file ``path`` names now, or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def roll_back(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")


def map_errors(exc: BaseException, what: str) -> BackendError:
    """Return the tenure error for an sqlite3 or file error (busy: locked past the busy timeout)."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return BackendTimeout(f"{what}: still locked by another process after the busy timeout")
    if isinstance(exc, (OSError, sqlite3.OperationalError)):
        return BackendUnavailable(f"{what}: {exc}")
    return BackendProtocolError(f"{what}: {exc}")


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL mode (it persists in the file, so check first)."""
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        db.execute("PRAGMA journal_mode=WAL")


def _while_locked(step: Callable[[], object], busy_timeout: float) -> None:
    """Run ``step``, retrying while processes that create the same file at once hold it.

    Changing the journal mode needs the file to itself, and the connection does not wait on
    its own (timeout=0), so a few processes opening a new file together can see "locked".
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.001 * (0.5 + random.random()))
