# GENERATED from src/tenure/_async/backends/postgresql/records.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Idempotency records on ``postgresql://``: what both modes share, and advisory mode's steps.

A run of an idempotency key is an ordinary lease on the key; its record is a row of a logged
table (so records survive a restart or a crash), one per mode: ``tenure_lock_records`` beside
advisory mode's locks, ``tenure_records`` beside table mode's lease rows (``table_records.py``).

**Rows.** A key's row is its record (``record`` set, kept until ``expires_at``) or the *marker*
of a run (``record`` NULL): written when a run takes the key, so that what a run leaves behind
(advisory mode's holder row, table mode's lease row) is found again and deleted once the run is
over, whether it stored a record, gave the key up or died. A finishing run deletes up to
``SWEEP`` expired rows, with what their runs left: the tables stay bounded by what lives,
without a sweeper. The marker of a run that outlives its lease is looked at again later.

**A hit reads, nothing more.** The begin statement of both modes (``begin_statement``) reads
the live record by its key and calls the mode's begin function only in a ``CASE`` branch taken
when there is none: a ``CASE`` evaluates only the branch it takes (a volatile function is never
folded at planning), so a replay takes no lock, writes nothing and runs no PL/pgSQL, and a first
execution still begins in one round trip. The function's row then comes back as one anonymous
record, which psycopg reads as a tuple of text (``began``).

**Advisory mode.** ``tenure_begin_run`` reads the record, else takes the session lock with a
fence from the sequence (as the lock statement does), then reads the record again: the second
read's snapshot is taken after the lock was granted, and a run commits its record before it lets
the lock go, so a run that just finished is never run again. ``tenure_finish_run`` is a
procedure: it checks that this session's lease is the owner's and live, stores the record,
deletes the holder row, COMMITs, and only then unlocks, so whoever takes the lock next (a waiter
woken by the unlock) finds the record. Fences come from the server-wide sequence, so deleting a
key's holder row never lets its fences repeat.

**In the caller's transaction** (``transaction=``): the caller's connection turns the run's
marker into the record, only while the holder row is the run's, live, and its session holds the
lock (``pg_locks``), and keeps that row locked until it commits. Only then does the store's
session delete the holder row and unlock. Were the lock lost in between, a run that took it
would wait for the marker's row in ``tenure_begin_run`` and, the record committed, not run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import psycopg.errors

from tenure._sync.backends.base import Recorded, SQLStep
from tenure._sync.backends.postgresql import sql
from tenure._sync.backends.postgresql.connection import PgSession
from tenure._sync.backends.postgresql.record_sql import (
    BEGIN_RUN,
    END_AFTER_COMMIT,
    FINISH_RUN,
    READ_RECORD,
    RECORD_LIMIT,
    STORE_IN_TRANSACTION,
    SWEEP_IN_TRANSACTION,
    began,
    recorded,
)
from tenure._sync.backends.postgresql.shared import Hold
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError

if TYPE_CHECKING:
    from tenure._sync.backends.postgresql.store import PostgresStore

log = logging.getLogger("tenure")


class AdvisoryRecords:
    """The Records capability of advisory mode, mixed into ``PostgresStore``.

    A run holds its key as ``try_acquire`` holds a lock (a shared session, renewed and released
    by the lock steps); see the module's docstring for the two steps.
    """

    record_limit = RECORD_LIMIT

    def begin_run(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        store = cast("PostgresStore", self)
        with store._mutex:
            taken = key in store._keys
            if not taken:
                store._keys.add(key)
        if taken:  # a run of this store holds it (or just finished): the record, if there is one
            return self.read_record(key)
        lock = sql.lock_id(key)
        try:
            session = store._shared.pick()
        except BaseException:
            store._untake(key)
            raise
        session.hold(lock, ttl)  # counted in the session's idle limit from now on

        def params() -> dict[str, Any]:
            return {"id": lock, "key": key, "owner": owner.token, "label": owner.label, "ttl": ttl,
                    "idle": session.idle()}  # fmt: skip

        what = f"beginning a run of {key!r}"
        try:
            record, fence, row = (store._pool.run(session, BEGIN_RUN, params, what))[0]
            if row is not None and row[0] == "epoch":  # the server crashed: nothing was taken
                store._recover_fences(session)
                record, fence, row = (store._pool.run(session, BEGIN_RUN, params, what))[0]
        except BaseException:
            # The lock may have been taken: a failed statement keeps it, closing the session does not.
            store._untake(key, session)
            store._pool.discard(session)
            raise
        if row is None:  # a hit: the statement read the record and called nothing
            store._untake(key, session)
            return recorded(store.url, key, record, fence)
        status, run_fence, _ = began(store.url, key, row)
        if status == "taken" and run_fence is not None:
            store._holds[(key, owner.token)] = Hold(session, ttl)
            return run_fence
        store._untake(key, session)
        if status == "done":  # finished between the statement's read and the function's
            return self.read_record(key)
        if status == "busy":
            return None
        raise BackendProtocolError(f"{store.url}: no fence for {key!r}: {sql.EPOCH_TABLE} stays empty")

    def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        store = cast("PostgresStore", self)
        session = self._end_hold(key, owner)
        if session is None:
            return False
        lock = sql.lock_id(key)

        def params() -> dict[str, Any]:
            return {"id": lock, "key": key, "owner": owner.token, "record": record, "ttl": ttl,
                    "idle": session.idle(), "mine": list(session.holds)}  # fmt: skip

        try:
            rows = store._pool.run(session, FINISH_RUN, params, f"recording the run of {key!r}")
        except BaseException as exc:
            store._pool.discard(session)  # frees the lock, and any other on the session
            if isinstance(exc, BackendError) and isinstance(exc.__cause__, psycopg.errors.IdleSessionTimeout):
                return False  # the server had ended the session for silence: the lease was lost
            raise
        finally:
            store._untake(key)
        return bool(rows) and rows[0][0] is True

    transaction_drivers = "psycopg connections to the store's database, at READ COMMITTED"

    def record_steps(self, key: str, owner: Owner, fence: int, record: bytes, ttl: float) -> list[SQLStep]:
        """Return the statements that store the run's record in the caller's transaction.

        See the module's docstring; the sweep of a finishing run goes with them.
        """
        lock = sql.lock_id(key)
        classid, objid = sql.lock_halves(lock)
        params = {"id": lock, "key": key, "owner": owner.token, "fence": fence, "record": record,
                  "ttl": ttl, "classid": classid, "objid": objid}  # fmt: skip
        return [SQLStep(STORE_IN_TRANSACTION, params, proves_hold=True), SQLStep(SWEEP_IN_TRANSACTION, {})]

    def end_after_commit(self, key: str, owner: Owner) -> bool:
        """Unlock the run's key, its record committed: a waiter that takes the lock finds it."""
        store = cast("PostgresStore", self)
        session = self._end_hold(key, owner)
        if session is None:
            return False
        lock = sql.lock_id(key)

        def params() -> dict[str, Any]:
            return {"id": lock, "owner": owner.token, "idle": session.idle()}

        try:
            rows = store._pool.run(session, END_AFTER_COMMIT, params, f"ending the run of {key!r}")
        except BaseException as exc:
            store._pool.discard(session)  # frees the lock, and any other on the session
            if not isinstance(exc, BackendError):
                raise
            log.warning("tenure: ending the run of %r failed (%s); its session, closed, frees it", key, exc)
            return False
        finally:
            store._untake(key)
        return bool(rows) and rows[0][0] is True

    def read_record(self, key: str) -> Recorded | None:
        store = cast("PostgresStore", self)
        rows = store._call(READ_RECORD, {"key": key}, f"reading the record of {key!r}")
        return recorded(store.url, key, *rows[0]) if rows else None

    def _end_hold(self, key: str, owner: Owner) -> PgSession | None:
        """Take the run's hold for its last step: the session still holding its lock, or None if lost."""
        store = cast("PostgresStore", self)
        hold = store._holds.pop((key, owner.token), None)
        if hold is None:
            return None
        if hold.wait is not None:  # in a lock's line (not a run's step): leave it
            store._leave(hold)
            return None
        session = hold.session
        session.unhold(sql.lock_id(key))
        if session.broken:  # found dead earlier (and closed): the lock went with it
            store._untake(key)
            return None
        return session
