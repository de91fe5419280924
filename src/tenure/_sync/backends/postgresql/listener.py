# GENERATED from src/tenure/_async/backends/postgresql/listener.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Wake-ups over LISTEN/NOTIFY: one listening session per store, counting releases per lock id.

Table mode's releases and an election's announcements NOTIFY on ``sql.CHANNEL`` with the lock
id as payload. A waiter takes a ``mark`` before its attempt and waits for the count to move; a
listener that reconnects wakes every waiter, since it may have missed something.
"""

from __future__ import annotations

import logging
import threading
import time

from tenure._sync.backends.postgresql import sql
from tenure._sync.backends.postgresql.connection import PgPool, PgSession
from tenure._concurrency import Background, Signal, sleep

log = logging.getLogger("tenure")


class PgListener:
    """One LISTENing session per table-mode store: counts releases per lock id, wakes waiters.

    Only a hint: an expired lease sends nothing, so waits stay bounded by their timeout.
    Started by the first wait; while it is (re)connecting, waits just pause.
    """

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool
        self._mutex = threading.Lock()
        self._counts: dict[int, int] = {}  # lock id -> releases heard
        self._waiters: dict[int, list[Signal]] = {}
        self._worker: Background | None = None
        self._stop: Signal | None = None
        self._session: PgSession | None = None
        self._listening = False  # a LISTEN is in effect right now
        self._closed = False

    def listening(self, timeout: float) -> None:
        """Start listening if not yet, and return once a LISTEN is in effect (or after ``timeout``)."""
        self._start()
        deadline = time.monotonic() + timeout
        while not self._listening and not self._closed and time.monotonic() < deadline:
            sleep(0.002)

    def _start(self) -> None:
        if self._worker is None and not self._closed:
            self._stop = Signal()
            self._worker = Background(self._listen, name="tenure-postgresql-listener")
            self._worker.start()

    def mark(self, lock: int) -> int:
        """Return how many releases of ``lock`` were heard so far (taken before an attempt)."""
        return self._counts.get(lock, 0)

    def wait(self, lock: int, mark: int, timeout: float) -> None:
        """Return when a release of ``lock`` was heard since ``mark``, or after ``timeout``."""
        self._start()
        signal = Signal()
        with self._mutex:
            self._waiters.setdefault(lock, []).append(signal)
        try:
            if self._counts.get(lock, 0) != mark:
                return
            signal.wait(timeout)
        finally:
            with self._mutex:
                waiting = self._waiters.get(lock, [])
                if signal in waiting:
                    waiting.remove(signal)
                if not waiting:
                    self._waiters.pop(lock, None)

    def close(self) -> None:
        """Stop listening; idempotent."""
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        session = self._session
        if session is not None:
            session.abort()
        if self._worker is not None:
            self._worker.join()

    def _heard(self, lock: int | None) -> None:
        with self._mutex:
            if lock is None:  # reconnected: releases may have been missed, every waiter looks
                signals = [s for waiting in self._waiters.values() for s in waiting]
            else:
                if len(self._counts) >= 4096:  # stay bounded; a reset count only wakes early
                    self._counts.clear()
                self._counts[lock] = self._counts.get(lock, 0) + 1
                signals = list(self._waiters.get(lock, ()))
        for signal in signals:
            signal.set()

    def _listen(self) -> None:
        assert self._stop is not None
        pause = 0.05
        while not self._closed:
            session: PgSession | None = None
            try:
                session = self._pool.open_session()
                self._session = session
                self._pool.run(session, sql.LISTEN, None, "listening for releases", rows=False)
                if self._closed:
                    break
                self._listening = True
                self._heard(None)
                pause = 0.05
                for note in session.conn.notifies():
                    try:
                        self._heard(int(note.payload))
                    except ValueError:
                        continue
            except Exception as exc:
                if not self._closed:
                    log.debug(
                        "tenure: the release listener of %s stopped (%s); reconnecting", self._pool.url, exc
                    )
            finally:
                self._listening = False
                self._session = None
                if session is not None:
                    self._pool.discard(session)
            self._heard(None)
            self._stop.wait(pause)
            pause = min(pause * 2, 1.0)
