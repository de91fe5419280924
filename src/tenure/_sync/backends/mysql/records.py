# GENERATED from src/tenure/_async/backends/mysql/records.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The Records capability (idempotency keys) of both modes, mixed into their stores.

A run of a key is the key's lease: a GET_LOCK on a shared session (advisory mode) or the key's
lease row (table mode), renewed, released and lost through the lock steps. ``begin_run`` first
reads the record with one plain SELECT on a pooled connection: a replay is that round trip and
nothing else (no multi-statement step, no transaction, no shared session's mutex). Only a miss
sends the begin step, which looks again itself (``record_sql``); ``finish_run`` is one round
trip. The record is a row of ``tenure_records`` that outlives a restart, expires by the
server's clock, and goes with a later run's ``finish_run`` (a few expired rows each time).

The caller's-transaction option: ``record_steps`` are single statements for the caller's own
connection (PyMySQL or pymysql, ``%(name)s`` params) to the URL's database, which store the
record and prove the run still holds its key inside the caller's transaction; tenure commits it,
then ``end_after_commit`` ends the run on the store's own session (``record_sql``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from tenure._sync.backends.base import Recorded, SQLStep
from tenure._sync.backends.mysql import record_sql, sql
from tenure._sync.backends.mysql.connection import MySQLPool, Session, Reply, connection_lost
from tenure._concurrency import Returning
from tenure._core.tokens import Owner
from tenure._exceptions import (
    BackendError,
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
    IdempotencyError,
)

T = TypeVar("T")
log = logging.getLogger("tenure")


class RecordSteps:
    """What both modes share: the record limit, its check, the read of a record."""

    _pool: MySQLPool
    # Half the packet the server takes, less the statement (record_sql.record_limit): set from
    # the server's max_allowed_packet at connect; before, from MariaDB's default packet.
    record_limit = record_sql.record_limit(record_sql.MARIADB_DEFAULT_PACKET)
    transaction_drivers = "PyMySQL or pymysql connections to the URL's database"

    def read_record(self, key: str) -> Recorded | None:
        reply = self._pool.call(record_sql.READ_RECORD, {"name": sql.lock_name(key)})
        if not reply.rows or reply.rows[0][2] is None or reply.rows[0][2] <= 0:
            return None  # none, or expired (a later finish drops it)
        record, fence, remaining_us = reply.rows[0]
        return _recorded(key, record, fence, remaining_us / 1e6)

    def begin_run(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        """Return the live record (one plain read), else the begin step's answer.

        The read is committed data only, so a record in a caller's open transaction is not seen:
        the begin step waits for it (its locking read). A miss costs first executions this read.
        """
        found = self.read_record(key)
        return found if found is not None else self._begin(key, owner, ttl)

    def _start_records(self, session: Session) -> None:
        """Create the records table and read the server's packet limit, on ``session``."""
        self._pool.execute(session, record_sql.CREATE_RECORDS, {})
        packet = (self._pool.execute(session, record_sql.PACKET_LIMIT, {})).rows[0][0]
        self.record_limit = record_sql.record_limit(int(packet))

    def _refuse_oversized(self, key: str, owner: Owner, record: bytes) -> None:
        """Free the key and raise if ``record`` is over the limit read at connect.

        Only a space built before the first connection can pass one (its default size limit
        came from the default packet); the server would drop the connection on it.
        """
        if len(record) > self.record_limit:
            self.release(key, owner)
            raise IdempotencyError(
                f"the record of {key!r} is {len(record)} bytes; {self._pool.url} keeps at most "
                f"{self.record_limit} (its max_allowed_packet): the key was freed, nothing was recorded"
            )

    def _finish(self, key: str, owner: Owner, step: Returning[bool]) -> bool:
        """Return ``step()``, the finish step; if its connection broke under it, whether it stored.

        A broken connection (the server ended the session, or restarted) leaves the step done
        or undone, and the record's owner says which. A timeout raises: the statement may still
        be running on the server.
        """
        try:
            return step()
        except BackendUnavailable as exc:
            if isinstance(exc, BackendTimeout) or not connection_lost(exc):
                raise
        params = {"name": sql.lock_name(key), "owner": owner.token}
        reply = self._pool.call(record_sql.STORED_BY, params)
        return bool(reply.rows[0][0])

    def _caller_params(
        self, key: str, owner: Owner, fence: int, record: bytes, ttl: float
    ) -> dict[str, object]:
        """Return the params of the caller's statements; raise if ``record`` is over the limit."""
        if len(record) > self.record_limit:
            raise IdempotencyError(
                f"the record of {key!r} is {len(record)} bytes; {self._pool.url} keeps at most "
                f"{self.record_limit} (its max_allowed_packet): nothing was recorded"
            )
        return {
            "name": sql.lock_name(key),
            "owner": owner.token,
            "fence": fence,
            "record": record_sql.record_hex(record),
            "ttl_us": sql.micros(ttl),
        }

    def _begun(self, key: str, reply: Reply) -> Recorded | int | None:
        """Return what a begin step's reply says: the new fence, the live record, or None."""
        taken, fence, record, record_fence, remaining = reply.rows[0]
        if taken:
            return int(fence)
        return None if record is None else _recorded(key, record, record_fence, remaining)

    def _begin(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        raise NotImplementedError  # pragma: no cover

    # -- the store's ---------------------------------------------------------------------------

    def release(self, key: str, owner: Owner) -> bool:
        raise NotImplementedError  # pragma: no cover


class MySQLRecords(RecordSteps):
    """Advisory mode: a run is a GET_LOCK taken and let go on the session that holds it.

    On a miss, ``begin_run`` takes the lock, fence and holder row on a shared session as
    ``try_acquire`` does, after looking for a live record again, and looks once more once the
    lock is taken.
    ``finish_run`` commits the record on the holding session before RELEASE_LOCK, so a waiter
    the server hands the lock to next sees it. The fence comes from the server-wide sequence,
    so a key keeps nothing of its own but its record (the holder row goes with the release).

    In a caller's transaction (``record_steps``), the record is written first, then the holder
    row and ``IS_USED_LOCK`` prove the run's session still holds the lock; the lock is released
    only after the commit. A begin step that takes the lock meanwhile (the session was lost) reads
    the record locking, so it waits for the caller's commit and then sees the record. The
    caller's connection must have the URL's database as its own (the tables are unqualified).
    """

    def _begin(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        name = sql.lock_name(key)

        def step(session: Session) -> Recorded | int | None:
            # A name this session holds already is not taken again (GET_LOCK would re-enter it).
            params = {"name": name, "take": name not in session.names, **sql.holder_params(owner, ttl)}
            reply = self._pool.execute(
                session, record_sql.ADVISORY_BEGIN, params, idle=sql.idle_limit(ttl)
            )
            begun = self._begun(key, reply)
            if isinstance(begun, int):
                self._keep(session, key, owner, name, ttl)
            return begun

        return self._on_shared(ttl, step)

    def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        self._refuse_oversized(key, owner, record)
        params = {"owner": owner.token, "record": record_sql.record_hex(record), "ttl_us": sql.micros(ttl)}
        step = functools.partial(self._end, key, owner, record_sql.ADVISORY_FINISH, params)
        return self._finish(key, owner, step)

    def record_steps(self, key: str, owner: Owner, fence: int, record: bytes, ttl: float) -> list[SQLStep]:
        """Return the caller's statements: the record first, then the proof that the lock is held."""
        params = self._caller_params(key, owner, fence, record, ttl)
        return [
            SQLStep(record_sql.CALLER_STORE_RECORD, params),
            SQLStep(record_sql.CALLER_ADVISORY_HELD, params, proves_hold=True),
        ]

    def end_after_commit(self, key: str, owner: Owner) -> bool:
        """Release the lock only now that the record is committed, and drop a few expired records."""
        try:
            return self._end(key, owner, record_sql.SWEEP_EXPIRED + sql.RELEASE, {})
        except BackendError:
            return False  # the connection is closed: its session, and the lock, end with it

    # -- the store's ---------------------------------------------------------------------------

    def _on_shared(self, ttl: float, step: Returning[T]) -> T:
        raise NotImplementedError  # pragma: no cover

    def _keep(self, session: Session, key: str, owner: Owner, name: str, ttl: float) -> None:
        raise NotImplementedError  # pragma: no cover

    def _end(self, key: str, owner: Owner, statement: str, params: Mapping[str, object]) -> bool:
        raise NotImplementedError  # pragma: no cover


class MySQLTableRecords(RecordSteps):
    """Table mode: a run is the key's lease row, taken and ended with the record in one transaction.

    ``finish_run`` deletes the lease row with the record's upsert, so a key leaves only its
    record behind; a new row's fence starts at the server's time in microseconds, so a run after
    the record expired still gets a larger fence than every earlier run of the key.

    In a caller's transaction (``record_steps``), the proof locks the live lease row until the
    commit, which also deletes it with the record's upsert: a begin step waits on that row, then
    sees the record (``TABLE_BEGIN``'s locking read). The caller's connection must have the URL's
    database as its own (the tables are unqualified); any isolation level works, as the steps use
    only locking reads and writes.
    """

    def _begin(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        params = {
            "name": sql.lock_name(key),
            "owner": owner.token,
            "label": owner.label[: sql.MAX_LABEL],
            "ttl_us": sql.micros(ttl),
        }
        return self._begun(key, self._take(record_sql.TABLE_BEGIN, params))

    def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        self._refuse_oversized(key, owner, record)
        params = {
            "name": sql.lock_name(key),
            "owner": owner.token,
            "record": record_sql.record_hex(record),
            "ttl_us": sql.micros(ttl),
        }

        def step() -> bool:
            return bool((self._take(record_sql.TABLE_FINISH, params)).rows[0][0])

        return self._finish(key, owner, step)

    def record_steps(self, key: str, owner: Owner, fence: int, record: bytes, ttl: float) -> list[SQLStep]:
        """Return the caller's statements: lock the live lease row (the proof), delete it, store."""
        params = self._caller_params(key, owner, fence, record, ttl)
        return [
            SQLStep(record_sql.CALLER_TABLE_HELD, params, proves_hold=True),
            SQLStep(record_sql.CALLER_TABLE_END_RUN, params),
            SQLStep(record_sql.CALLER_STORE_RECORD, params),
        ]

    def end_after_commit(self, key: str, owner: Owner) -> bool:
        """Drop a few expired records: the caller's commit already ended the run with its row."""
        try:
            self._pool.call(record_sql.SWEEP_EXPIRED, {})
        except BackendError as exc:
            log.warning(
                "tenure: dropping expired records on %s failed (%s); a later run does it", self._pool.url, exc
            )
        return True

    # -- the store's ---------------------------------------------------------------------------

    def _take(self, statement: str, params: Mapping[str, object]) -> Reply:
        raise NotImplementedError  # pragma: no cover


def _recorded(key: str, record: Any, fence: Any, remaining: Any) -> Recorded:
    if not isinstance(record, bytes | bytearray) or fence is None or remaining is None:
        raise BackendProtocolError(f"the record of {key!r} came back corrupt ({type(record).__name__})")
    return Recorded(bytes(record), int(fence), max(0.0, float(remaining)))
