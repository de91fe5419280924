"""The SQLite backend's own faults: a lock file deleted, replaced, shared, busy or corrupt.

Every test works on a real file with real SQLite connections; a second OS user is a real
process running under another uid (the suite runs as root in CI).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sqlite3
import stat
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

import tenure
from tenure._core.tokens import Owner
from tenure._sync.backends.sqlite.table import SQLiteLeaseTable

MAX_FENCE = 2**63 - 1


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "locks.db"


def set_row(db: Path, key: str, **values: object) -> None:
    """Edit a lease row behind tenure's back, as a person or a broken tool would."""
    columns = ", ".join(f"{name} = :{name}" for name in values)
    with sqlite3.connect(db) as conn:
        assert (
            conn.execute(
                f"UPDATE tenure_leases SET {columns} WHERE key = :key", {**values, "key": key}
            ).rowcount
            == 1
        )
    conn.close()


# -- 4: a lock file deleted, recreated, truncated or restored under a holder -----------------------


@pytest.mark.parametrize("removed", [("",), ("", "-wal", "-shm")], ids=["file", "file-wal-shm"])
def test_a_deleted_file_ends_the_lease_and_the_next_fence_is_higher(
    db: Path, removed: tuple[str, ...]
) -> None:
    url = f"sqlite://{db}"
    with tenure.Coordinator(url) as a, tenure.Coordinator(url) as b:
        for _ in range(3):
            a.lock("job", ttl=5).acquire(timeout=1).release()
        lease = a.lock("job", ttl=5).acquire(timeout=1)
        for suffix in removed:
            Path(f"{db}{suffix}").unlink()
        # A's renewal must not land in the detached file: the lease is gone with it.
        with pytest.raises(tenure.LockLost):
            lease.renew()
        successor = b.lock("job", ttl=5).try_acquire()
        assert successor is not None
        assert successor.fence > lease.fence
        assert a.inspect("job") is not None  # A follows the path too: it sees B's lease
        assert a.lock("job").try_acquire() is None
        successor.release()


def test_the_renewer_reports_the_loss_of_a_deleted_file(db: Path) -> None:
    told: list[object] = []
    with tenure.Coordinator(f"sqlite://{db}") as coord:
        lease = coord.lock("job", ttl=1.5).acquire(timeout=1)
        lease.on_lost(told.append)
        db.unlink()
        deadline = time.monotonic() + 1.2  # renewals come every ttl/3; the TTL itself is 1.5 s
        while not told and time.monotonic() < deadline:
            time.sleep(0.02)
        assert told == [lease]  # by a renewal, before the lease could have run out on its own
        with pytest.raises(tenure.LockLost):
            lease.check()


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_a_recreated_or_truncated_file_never_repeats_a_fence(db: Path, how: str) -> None:
    url = f"sqlite://{db}"
    with tenure.Coordinator(url) as coord:
        fences = [coord.lock(name, ttl=5).acquire(timeout=1) for name in ("job", "other")]
        for lease in fences:
            lease.release()
    if how == "deleted":
        db.unlink()
    else:
        os.truncate(db, 0)
    with tenure.Coordinator(url) as coord:  # a new coordinator: nothing remembered in-process
        for old in fences:
            lease = coord.lock(old.name, ttl=5).acquire(timeout=1)
            assert lease.fence > old.fence
            lease.release()


def test_a_file_restored_from_a_copy_is_followed_and_never_repeats_a_fence(db: Path, tmp_path: Path) -> None:
    # A copy that knows only the earlier commits is what a power loss leaves with synchronous=NORMAL.
    url = f"sqlite://{db}"
    backup = tmp_path / "backup.db"
    with tenure.Coordinator(url) as coord:
        coord.lock("job", ttl=5).acquire(timeout=1).release()
        with sqlite3.connect(db) as conn, sqlite3.connect(backup) as copy:
            conn.backup(copy)
        conn.close()
        copy.close()
        held = coord.lock("job", ttl=5).acquire(timeout=1)
        os.replace(backup, db)  # the copy knows only the first fence
        for suffix in ("-wal", "-shm"):  # they belong to the path: left, they would overlay the copy
            Path(f"{db}{suffix}").unlink()
        with pytest.raises(tenure.LockLost):
            held.renew()
    with tenure.Coordinator(url) as fresh:  # a new process would remember nothing of the old fence
        lease = fresh.lock("job", ttl=5).acquire(timeout=1)
        assert lease.fence > held.fence
        lease.release()


def test_a_lock_file_that_cannot_be_reopened_for_a_while_is_tried_again(db: Path) -> None:
    with tenure.Coordinator(f"sqlite://{db}") as coord:
        coord.lock("job", ttl=5).acquire(timeout=1).release()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink()
        db.mkdir()  # the path names something that is no lock file
        with pytest.raises(tenure.BackendUnavailable):
            coord.lock("job", ttl=5).try_acquire()
        db.rmdir()
        lease = coord.lock("job", ttl=5).try_acquire()
        assert lease is not None
        lease.release()


# -- 5: a shared folder and a second OS user --------------------------------------------------------

OWNER, INTRUDER = 42421, 42422  # uids nobody uses; a root run switches to them in child processes
AS_ROOT = os.geteuid() == 0


def try_lock(url: str) -> str:
    """Try the lock once; say what happened in one line."""
    try:
        with tenure.Coordinator(url) as coord:
            lease = coord.lock("job", ttl=5).try_acquire()
            if lease is None:
                return "held"
            lease.release()
            return f"fence {lease.fence}"
    except tenure.TenureError as exc:
        return f"{type(exc).__name__} {exc}"


def attempt(url: str, uid: int) -> str:
    """Try the lock in a forked process, as ``uid`` when running as root; return what it said.

    Forked rather than started: the interpreter may live where another uid cannot run it.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            if AS_ROOT:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            said = try_lock(url)
            code = 0
        except BaseException:
            said = traceback.format_exc()
        finally:
            os.write(write, said.encode())
            os._exit(code)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 60)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read, closefd=False) as output:
            said = output.read()
    finally:
        os.close(read)
    assert ready and os.waitstatus_to_exitcode(status) == 0, said
    return said


@pytest.fixture
def shared() -> Iterator[Path]:
    """A world-writable sticky folder like /tmp (not under pytest's private tmp_path)."""
    folder = Path(tempfile.mkdtemp(prefix="tenure-shared-", dir="/tmp"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder)


@pytest.mark.parametrize("file_mode", [None, "0644"])
def test_a_user_without_write_access_fails_clearly_and_leaves_nothing(
    shared: Path, file_mode: str | None
) -> None:
    """As root: two real uids. Otherwise the second "user" is this one, the file made read-only."""
    db = shared / "locks.db"
    url = f"sqlite://{db}" + (f"?file_mode={file_mode}" if file_mode else "")
    first = attempt(url, OWNER)
    assert first.startswith("fence ")
    assert sorted(os.listdir(shared)) == ["locks.db"]
    info = db.stat()
    assert stat.S_IMODE(info.st_mode) == (int(file_mode, 8) if file_mode else 0o600)
    if AS_ROOT:
        assert info.st_uid == OWNER
    else:
        db.chmod(0o400)

    refused = attempt(url, INTRUDER)
    assert refused.startswith("ConfigurationError") and "not writable" in refused, refused
    assert sorted(os.listdir(shared)) == ["locks.db"]  # no -wal or -shm left to lock the owner out

    if not AS_ROOT:
        db.chmod(0o600)
    again = attempt(url, OWNER)
    assert again.startswith("fence ") and int(again.split()[1]) > int(first.split()[1])


def test_wal_files_left_by_another_user_are_named_in_the_error(shared: Path) -> None:
    db = shared / "locks.db"
    url = f"sqlite://{db}"
    assert attempt(url, OWNER).startswith("fence ")
    leftover = Path(f"{db}-wal")
    leftover.write_bytes(b"")
    if AS_ROOT:
        os.chown(leftover, INTRUDER, INTRUDER)
        leftover.chmod(0o644)
    else:
        leftover.chmod(0o400)
    refused = attempt(url, OWNER)
    assert refused.startswith("ConfigurationError") and f"{leftover}" in refused, refused
    if AS_ROOT:
        assert f"owner uid {INTRUDER}" in refused


@pytest.mark.parametrize(
    ("query", "mode"), [("", 0o600), ("?file_mode=0640", 0o640), ("?file_mode=660", 0o660)]
)
def test_new_files_get_the_mode_asked_for_whatever_the_umask(db: Path, query: str, mode: int) -> None:
    previous = os.umask(0o022)
    try:
        with tenure.Coordinator(f"sqlite://{db}{query}") as coord:
            coord.lock("job", ttl=5).acquire(timeout=1).release()
            for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                assert stat.S_IMODE(path.stat().st_mode) == mode, path
    finally:
        os.umask(previous)


def test_an_existing_file_keeps_its_mode(db: Path) -> None:
    db.touch(mode=0o664)
    db.chmod(0o664)
    with tenure.Coordinator(f"sqlite://{db}?file_mode=0600") as coord:
        coord.lock("job", ttl=5).acquire(timeout=1).release()
    assert stat.S_IMODE(db.stat().st_mode) == 0o664


@pytest.mark.parametrize("bad", ["0700", "0400", "0601", "1600", "64", "06000", "0o600", "rw", "", "0689"])
def test_a_bad_file_mode_is_refused_before_any_io(db: Path, bad: str) -> None:
    with pytest.raises(tenure.ConfigurationError, match="file_mode"):
        tenure.Coordinator(f"sqlite://{db}?file_mode={bad}")
    assert not db.exists()


# -- 6: one attempt on a write-locked file is bounded by op_timeout --------------------------------


@pytest.mark.parametrize("fair", [False, True])
@pytest.mark.parametrize("how", ["try_acquire", "acquire(timeout=0)"])
def test_one_attempt_on_a_write_locked_file_takes_one_op_timeout(db: Path, fair: bool, how: str) -> None:
    op_timeout = 1.0
    with tenure.Coordinator(f"sqlite://{db}?op_timeout={op_timeout}") as coord:
        coord.lock("warm-up", ttl=5).acquire(timeout=1).release()  # the file is open and set up
        rival = sqlite3.connect(db, isolation_level=None)
        rival.execute("BEGIN IMMEDIATE")  # SQLite's write lock, held by another connection
        try:
            lock = coord.lock("job", ttl=5, fair=fair)
            started = time.monotonic()
            with pytest.raises(tenure.BackendTimeout):
                lock.try_acquire() if how == "try_acquire" else lock.acquire(timeout=0)
            waited = time.monotonic() - started
        finally:
            rival.execute("ROLLBACK")
            rival.close()
        # Before the fix the clean-up after the failed attempt waited a second op_timeout.
        assert op_timeout * 0.9 <= waited < op_timeout * 1.7
        lease = lock.try_acquire()  # nothing was left behind
        assert lease is not None
        lease.release()


def test_an_owner_that_took_the_lock_after_a_busy_attempt_still_releases_it(db: Path) -> None:
    table = SQLiteLeaseTable(db, busy_timeout=0.05)
    table.open()
    owner = Owner(label="test")
    rival = sqlite3.connect(db, isolation_level=None)
    rival.execute("BEGIN IMMEDIATE")
    with pytest.raises(tenure.BackendTimeout):
        table.try_acquire("job", owner, 5)
    rival.execute("ROLLBACK")
    rival.close()
    assert table.try_acquire("job", owner, 5) is not None  # no clean-up ran in between
    assert table.release("job", owner)  # the busy attempt's mark must not swallow this release
    assert table.holder("job") is None
    table.close()


# -- 10: bad input and corrupt data become typed errors --------------------------------------------


def test_a_nul_in_the_path_is_a_configuration_error_before_any_io(tmp_path: Path) -> None:
    for url in (f"sqlite://{tmp_path}/lo\x00cks.db", f"sqlite://{tmp_path}/lo%00cks.db"):
        with pytest.raises(tenure.ConfigurationError, match="NUL"):
            tenure.Coordinator(url)
        with pytest.raises(tenure.ConfigurationError, match="NUL"):
            tenure.AsyncCoordinator(url)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("column", "value"), [("expires_at", "garbage"), ("fence", "garbage"), ("fence", 1.5)]
)
def test_corrupt_rows_raise_backend_protocol_error(db: Path, column: str, value: object) -> None:
    with tenure.Coordinator(f"sqlite://{db}") as coord, tenure.Coordinator(f"sqlite://{db}") as rival:
        lock = coord.lock("job", ttl=30)
        lock.acquire(timeout=1)
        set_row(db, lock.key, **{column: value})
        with pytest.raises(
            tenure.BackendProtocolError, match={"expires_at": "expiry", "fence": "fence"}[column]
        ):
            coord.inspect("job")
        if column == "expires_at":  # a waiter reads the row before writing: it must not crash
            with pytest.raises(tenure.BackendProtocolError, match="expiry"):
                rival.lock("job", ttl=5).acquire(timeout=0.5)


# -- 14: fences are ints, and never repeat ----------------------------------------------------------


@pytest.mark.parametrize("fair", [False, True])
def test_a_fence_counter_at_its_limit_raises_instead_of_repeating(db: Path, fair: bool) -> None:
    with tenure.Coordinator(f"sqlite://{db}") as coord:
        lock = coord.lock("job", ttl=5, fair=fair)
        lock.acquire(timeout=1).release()
        set_row(db, lock.key, fence=MAX_FENCE - 1)
        last = lock.acquire(timeout=1)
        assert last.fence == MAX_FENCE and type(last.fence) is int
        last.release()
        for _ in range(2):
            with pytest.raises(tenure.BackendProtocolError, match="64-bit"):
                lock.acquire(timeout=1)
        assert coord.inspect("job") is None  # the failed attempts left the lock free
