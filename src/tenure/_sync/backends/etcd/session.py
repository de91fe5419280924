# GENERATED from src/tenure/_async/backends/etcd/session.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Session leases of one etcd connection, and the keeper of a store's sessions and entries.

A *session* is an etcd lease this process keeps alive; every entry (the key of a holder or a
waiter of a lock) is attached to one, so whatever a dead process held or queued ends with its
sessions. Locks of one ttl share a session, granted lazily for a little more than the ttl, in
whole seconds (etcd's unit), and at least the URL option ``session_ttl`` (default 1; the
server may raise it to its own minimum). A session *covers* a ttl from a moment when the
server surely keeps its lease that long: a renewal or a hand-over succeeds only then, so the
local validity never outlives the server's.

The keeper, one background task (a thread in the sync twin) per store:
- sends each session's keep-alive at a third of its TTL;
- deletes the entry of a holder whose renewals stopped for longer than its ttl (a partition
  only this process sees, a stuck renewer), so others do not wait for its session to expire;
- retries every failed delete (a release, a waiter leaving, a stalled holder) until it
  succeeds or the entry's session is gone: a live session would keep the entry, and block the
  lock, for as long as this process lives.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenure._sync.backends.etcd import proto
from tenure._sync.backends.etcd.client import EtcdClient, LeaseGone
from tenure._sync.backends.etcd.entries import Entries
from tenure._concurrency import Background, Mutex, Signal
from tenure._exceptions import BackendError, BackendProtocolError, BackendUnavailable

DRIFT = 0.01  # the local estimate of a session's life is shortened by 1% (+ 2 ms)
DELETE_RETRY = 0.1  # seconds between the keeper's tries to delete an entry whose delete failed


@dataclass(slots=True)
class Session:
    """One etcd lease and what this process knows about its life."""

    lease: int
    granted: int  # seconds the server gives the lease after each keep-alive
    valid_until: float  # local monotonic time before which the server surely keeps it
    refreshed: float  # when the last keep-alive was sent
    alive: bool = True


class Sessions:
    """Grant the session leases of one connection and keep them alive."""

    def __init__(self, client: EtcdClient, session_ttl: int) -> None:
        self._client = client
        self.session_ttl = session_ttl
        self.wake: Signal | None = None  # set when a session is granted, for the keeper
        self._mutex: Mutex | None = None

    def open(self) -> None:
        """Get ready to grant sessions (in the event loop that will use them)."""
        self._mutex = Mutex()

    def create(self, ttl: float, started: float, build: Callable[[int], Any]) -> tuple[Session, Any]:
        """Run the create transaction ``build(lease)`` under a live session; return both."""
        for _ in range(2):
            session = self.session(ttl, started)
            try:
                return session, self._client.call("kv", "Txn", build(session.lease), "acquiring")
            except LeaseGone:
                # The session expired before the keeper noticed; the transaction changed
                # nothing, so it is sent once more under a new session.
                session.alive = False
        raise BackendUnavailable(f"the etcd sessions on {self._client.url} keep expiring")

    def session(self, ttl: float, started: float) -> Session:
        """Return a live session whose lease the server keeps at least ``ttl`` s past ``started``."""
        # A session covers a ttl only if its lease outlives it after the drift margin.
        granted = max(self.session_ttl, math.ceil((ttl + 0.01) / (1 - DRIFT)))
        sessions = self._client.sessions
        for _ in range(2):
            session = sessions.get(granted)
            if session is not None and session.alive and session.valid_until >= started + ttl:
                return session
            assert self._mutex is not None, "open() first"
            with self._mutex:
                session = sessions.get(granted)
                if session is None or not session.alive:
                    session = sessions[granted] = self._grant(granted)
                    if self.wake is not None:
                        self.wake.set()  # the keeper keeps the new session alive too
            if self.covers(session, ttl, started):
                return session
            if session.alive:
                break  # alive but not refreshed in time: the cluster is not answering
        raise BackendUnavailable(f"the etcd session on {self._client.url} could not be kept alive")

    def covers(self, session: Session, ttl: float, started: float) -> bool:
        """Return whether the server keeps ``session`` ``ttl`` s past ``started``; refresh if needed."""
        if session.alive and session.valid_until < started + ttl:
            self.keepalive(session)
        return session.alive and session.valid_until >= started + ttl

    def keepalive(self, session: Session) -> None:
        """Refresh ``session``'s lease once; mark it dead if the server no longer has it."""
        sent = time.monotonic()
        request = proto.lease_keepalive(session.lease)
        reply = self._client.call("streams", "keepalive", request, "keep-alive", stream=True)
        if reply is None or reply.TTL <= 0:
            session.alive = False  # expired at the server: every entry of it is gone
            return
        session.granted = int(reply.TTL)
        session.valid_until = _valid_until(sent, session.granted)
        session.refreshed = sent

    def keep_alive(self, now: float) -> float:
        """Refresh the sessions due at ``now``, forget dead ones; return when the next is due."""
        sessions = self._client.sessions
        for granted, session in list(sessions.items()):
            if session.refreshed + session.granted / 3 <= now:
                with contextlib.suppress(BackendError):  # retried at the next tick; renewals fail
                    self.keepalive(session)  # once the session may have expired
                if not session.alive:
                    sessions.pop(granted, None)
        return min((s.refreshed + s.granted / 3 for s in sessions.values()), default=now + 1)

    def any_alive(self) -> bool:
        """Return whether some session of this connection is still alive."""
        return any(session.alive for session in self._client.sessions.values())

    def _grant(self, ttl: int) -> Session:
        sent = time.monotonic()
        reply = self._client.first_answer(
            "lease", "LeaseGrant", proto.lease_grant(ttl), self._client.op_timeout, "granting"
        )
        if reply.error:
            raise BackendProtocolError(f"{self._client.url} refused a session lease: {reply.error}")
        granted = int(reply.TTL)
        return Session(int(reply.ID), granted, _valid_until(sent, granted), sent)


class Keeper:
    """Keep a store's sessions alive; delete its stalled holders' entries and its failed deletes."""

    def __init__(self, client: EtcdClient, sessions: Sessions, entries: Entries) -> None:
        self._client, self._sessions, self._entries = client, sessions, entries
        self._wake: Signal | None = None
        self._task: Background | None = None
        self._closed = False

    def start(self) -> None:
        """Start keeping (in the caller's event loop; a thread in the sync twin)."""
        self._closed = False
        self._wake = self._sessions.wake = Signal()
        self._task = Background(self._keep, name="tenure-etcd-sessions")
        self._task.start()

    def stop(self) -> None:
        """Stop keeping and wait for the keeper to end."""
        self._closed = True
        self.poke()
        if self._task is not None:
            self._task.join()

    def poke(self) -> None:
        """Have the keeper look at the tables again now (a new holder, a doomed entry)."""
        if self._wake is not None:
            self._wake.set()

    def doom(self, name: bytes, session: Session | None) -> None:
        """Have the keeper delete ``name`` (a live session would keep it, and block the lock)."""
        self._entries.doom(name, session)
        self.poke()

    def delete(self, name: bytes, session: Session | None, what: str) -> None:
        """Delete entry ``name``; if that fails, leave it to the keeper to retry, and raise."""
        try:
            self._client.call("kv", "DeleteRange", proto.delete(name), what)
        except BackendError:
            self.doom(name, session)
            raise

    def _keep(self) -> None:
        assert self._wake is not None
        while not self._closed:
            self._wake.clear()
            now = time.monotonic()
            next_keepalive = self._sessions.keep_alive(now)
            for name, session in self._entries.stalled(now):
                self._entries.doom(name, session)  # deleted just below
            retry = self._delete_doomed()
            retry_at = time.monotonic() + DELETE_RETRY if retry else math.inf
            wake_at = min(next_keepalive, self._entries.next_stall(), retry_at)
            self._wake.wait(min(max(0.01, wake_at - time.monotonic()), 1.0))

    def _delete_doomed(self) -> bool:
        """Try once more to delete each entry whose delete failed; return whether some are left."""
        doomed = self._entries.doomed()
        any_alive = self._sessions.any_alive()
        left = bool(doomed)
        for name, session in doomed:
            # An entry dies with its session: once that (or, unknown, every one) is gone, so is it.
            if session.alive if session is not None else any_alive:
                # After a failure the rest wait for the next tick too: the cluster does not
                # answer yet, and each try could hold up the session keep-alives for op_timeout.
                try:
                    self._client.call("kv", "DeleteRange", proto.delete(name), "deleting an entry")
                except BackendError:
                    return True
            left = self._entries.deleted(name, session)
        return left


def _valid_until(sent: float, granted: int) -> float:
    return sent + granted * (1 - DRIFT) - 0.002
