# GENERATED from src/tenure/_async/backends/etcd/client.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The etcd v3 gRPC connection behind ``etcd://``: endpoints, failover, sessions and watches.

One gRPC channel per endpoint. A call goes to the current endpoint and, while that one is
unreachable, moves on to the next; a call that ran out of ``op_timeout`` is not resent, but
the next call starts elsewhere. Resending is safe for everything the store sends: each request
is idempotent by the name of the entry it touches (a resent create finds the entry, a resent
delete finds none, a read is a read), so no resend can take a lock twice. Watches and
keep-alives send one request each and then only read, so they are called in gRPC's
unary-stream form (``proto.OneRequestStreams``), which costs grpc's sync client no thread.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped]

from tenure._sync.backends.etcd import proto
from tenure._concurrency import Mutex, Signal
from tenure._exceptions import BackendError, BackendProtocolError, BackendTimeout, BackendUnavailable

DRIFT = 0.01  # the local estimate of a session's life is shortened by 1% (+ 2 ms)


class LeaseGone(BackendProtocolError):
    """The session's lease no longer exists at the server."""


@dataclass(slots=True)
class Session:
    """One etcd lease and what this process knows about its life."""

    lease: int
    granted: int  # seconds the server gives the lease after each keep-alive
    valid_until: float  # local monotonic time before which the server surely keeps it
    refreshed: float  # when the last keep-alive was sent
    alive: bool = True


class EtcdClient:
    """Talk to the endpoints of one etcd cluster and keep this process's sessions."""

    def __init__(self, url: str, targets: list[str], *, session_ttl: int, op_timeout: float) -> None:
        self.url = url  # redacted, for messages
        self.targets = targets
        self.session_ttl = session_ttl
        self.op_timeout = op_timeout
        self.sessions: dict[int, Session] = {}  # granted TTL -> session
        self.wake: Signal | None = None  # set when a session is granted, for the keeper
        self._channels: list[Any] = []
        self._stubs: list[dict[str, Any]] = []
        self._current = 0  # index of the endpoint calls go to first
        self._mutex: Mutex | None = None

    @property
    def is_open(self) -> bool:
        """Return whether the channels are open."""
        return bool(self._channels)

    def open(self, connect_timeout: float) -> None:
        """Open a channel per endpoint and check one answers within ``connect_timeout``."""
        for target in self.targets:
            channel = grpc.insecure_channel(target, options=proto.CHANNEL_OPTIONS)
            self._channels.append(channel)
            stubs = {"kv": proto.KVStub, "lease": proto.LeaseStub, "streams": proto.OneRequestStreams}
            self._stubs.append({name: stub(channel) for name, stub in stubs.items()})
        self._mutex = Mutex()
        try:
            self._first_answer("Range", proto.get(b"\x00tenure-ping"), connect_timeout, "connecting")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Revoke every session (which deletes its entries and wakes their watchers) and close."""
        for session in list(self.sessions.values()):
            with contextlib.suppress(BackendError):  # else the entries end when the lease expires
                self.call("lease", "LeaseRevoke", proto.lease_revoke(session.lease), "closing")
        self.sessions.clear()
        channels, self._channels, self._stubs = self._channels, [], []
        for channel in channels:
            channel.close()

    # -- sessions -------------------------------------------------------------------------------

    def create(self, ttl: float, started: float, build: Callable[[int], Any]) -> tuple[Session, Any]:
        """Run the create transaction ``build(lease)`` under a live session; return both."""
        for _ in range(2):
            session = self.session(ttl, started)
            try:
                return session, self.call("kv", "Txn", build(session.lease), "acquiring")
            except LeaseGone:
                # The session expired before the keeper noticed; the transaction changed
                # nothing, so it is sent once more under a new session.
                session.alive = False
        raise BackendUnavailable(f"the etcd sessions on {self.url} keep expiring")

    def session(self, ttl: float, started: float) -> Session:
        """Return a live session whose lease the server keeps at least ``ttl`` s past ``started``."""
        # A session covers a ttl only if its lease outlives it after the drift margin.
        granted = max(self.session_ttl, math.ceil((ttl + 0.01) / (1 - DRIFT)))
        for _ in range(2):
            session = self.sessions.get(granted)
            if session is not None and session.alive and session.valid_until >= started + ttl:
                return session
            assert self._mutex is not None
            with self._mutex:
                session = self.sessions.get(granted)
                if session is None or not session.alive:
                    session = self._grant(granted)
                    self.sessions[granted] = session
                    if self.wake is not None:
                        self.wake.set()  # the keeper keeps the new session alive too
            if self.covers(session, ttl, started):
                return session
            if session.alive:
                break  # alive but not refreshed in time: the cluster is not answering
        raise BackendUnavailable(f"the etcd session on {self.url} could not be kept alive")

    def covers(self, session: Session, ttl: float, started: float) -> bool:
        """Return whether the server keeps ``session`` ``ttl`` s past ``started``; refresh if needed."""
        if session.alive and session.valid_until < started + ttl:
            self.keepalive(session)
        return session.alive and session.valid_until >= started + ttl

    def keepalive(self, session: Session) -> None:
        """Refresh ``session``'s lease once; mark it dead if the server no longer has it."""
        sent = time.monotonic()
        request = proto.lease_keepalive(session.lease)
        reply = self.call("streams", "keepalive", request, "keep-alive", stream=True)
        if reply is None or reply.TTL <= 0:
            session.alive = False  # expired at the server: every entry of it is gone
            return
        session.granted = int(reply.TTL)
        session.valid_until = _valid_until(sent, session.granted)
        session.refreshed = sent

    def keep_sessions_alive(self, now: float) -> float:
        """Refresh the sessions due at ``now``, forget dead ones; return when the next is due."""
        for granted, session in list(self.sessions.items()):
            if session.refreshed + session.granted / 3 <= now:
                with contextlib.suppress(BackendError):  # retried at the next tick; renewals fail
                    self.keepalive(session)  # once the session may have expired
                if not session.alive:
                    self.sessions.pop(granted, None)
        return min((s.refreshed + s.granted / 3 for s in self.sessions.values()), default=now + 1)

    def _grant(self, ttl: int) -> Session:
        sent = time.monotonic()
        reply = self._first_answer("LeaseGrant", proto.lease_grant(ttl), self.op_timeout, "granting")
        if reply.error:
            raise BackendProtocolError(f"{self.url} refused a session lease: {reply.error}")
        granted = int(reply.TTL)
        return Session(int(reply.ID), granted, _valid_until(sent, granted), sent)

    # -- calls ----------------------------------------------------------------------------------

    def call(
        self,
        service: str,
        method: str,
        request: Any,
        what: str,
        *,
        stream: bool = False,
        sent: list[int] | None = None,
    ) -> Any:
        """Send one request, moving on to the next endpoint while the current one is unreachable.

        ``sent``, if given, gets the index of every endpoint the request was sent to: more than
        one means it was resent, and its first sending may have been applied.
        """
        if not self._stubs:
            raise BackendUnavailable(f"the connection to {self.url} is closed")
        error: Exception | None = None
        for _ in range(len(self._stubs)):
            index = self._current
            if sent is not None:
                sent.append(index)
            function = getattr(self._stubs[index][service], method)
            try:
                if stream:
                    return _first_reply(function(request, timeout=self.op_timeout))
                return function(request, timeout=self.op_timeout)
            except grpc.RpcError as exc:
                error = self._mapped_error(exc, what)
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise error from exc
                self._current = (index + 1) % len(self._stubs)
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise error from exc  # op_timeout is spent; the next call goes elsewhere
        assert error is not None
        raise error

    def wait_deleted(
        self, name: bytes, revision: int, timeout: float, *, fresh: bool = False
    ) -> bool | None:
        """Return when ``name`` is deleted at or after ``revision``, or after ``timeout`` s.

        True: the deletion was seen. False: ``timeout`` passed without it. None: the watch
        ended without telling (its revision was compacted, the endpoint failed).

        ``fresh``: watch from now rather than from ``revision``. etcd serves a watch that starts
        in the past from its "unsynced" group, caught up only every 100 ms, which would delay
        a hand-over; what changed in between is read from the same member once the watch exists.
        """
        if not self._stubs:
            return None
        if timeout <= 0.001:
            return False
        index = self._current
        ends = time.monotonic() + timeout
        request = proto.watch_deletion(name, 0 if fresh else revision)
        call = self._stubs[index]["streams"].watch(request, timeout=timeout)
        try:
            for reply in call:
                if any(event.type == proto.DELETE_EVENT for event in reply.events):
                    return True
                if reply.canceled:
                    return None
                if fresh and reply.created and int(reply.header.revision) >= revision:
                    kv = self._member_read(index, name)
                    if kv is None or int(kv.create_revision) >= revision:
                        return True  # deleted in between (or made again, which is not the same)
        except grpc.RpcError as exc:
            # The server may end the stream at the deadline first ("context deadline exceeded").
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED or time.monotonic() >= ends - 0.005:
                return False
            self._current = (index + 1) % len(self._stubs)  # only a hint: the caller tries again
        finally:
            call.cancel()
        return False if time.monotonic() >= ends - 0.005 else None

    def watch_entry(self, name: bytes, revision: int, timeout: float) -> tuple[str, Any]:
        """Return the first change of ``name`` at or after ``revision``, within ``timeout`` s.

        ``("put", kv)``, ``("deleted", None)``, ``("timeout", None)``, or ``("ended", None)``
        when the watch ended without telling (compacted, the endpoint failed).
        """
        if not self._stubs:
            return "ended", None
        if timeout <= 0.001:
            return "timeout", None
        index = self._current
        ends = time.monotonic() + timeout
        # From now, for the reason wait_deleted(fresh=True) gives; what changed since
        # ``revision`` is read from the same member once the watch exists.
        call = self._stubs[index]["streams"].watch(proto.watch_entry(name, 0), timeout=timeout)
        try:
            for reply in call:
                for event in reply.events:
                    if event.type == proto.DELETE_EVENT:
                        return "deleted", None
                    return "put", event.kv
                if reply.canceled:
                    return "ended", None
                if reply.created and int(reply.header.revision) >= revision:
                    kv = self._member_read(index, name)
                    if kv is None or int(kv.create_revision) >= revision:
                        return "deleted", None
                    if int(kv.mod_revision) >= revision:
                        return "put", kv
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED or time.monotonic() >= ends - 0.005:
                return "timeout", None
            self._current = (index + 1) % len(self._stubs)
        finally:
            call.cancel()
        return ("timeout", None) if time.monotonic() >= ends - 0.005 else ("ended", None)

    def _member_read(self, index: int, name: bytes) -> Any:
        """Return ``name``'s entry as endpoint ``index`` has applied it (no leader round), or None."""
        request = proto.get(name)
        request.serializable = True
        reply = self._stubs[index]["kv"].Range(request, timeout=self.op_timeout)
        return reply.kvs[0] if reply.kvs else None

    def wait_changed(self, prefix: bytes, since: int, timeout: float) -> int:
        """Return when an entry under ``prefix`` changes at or after revision ``since``, or later.

        Waits at most ``timeout`` s; returns the revision to watch from next (``since`` if
        nothing was seen).
        """
        if not self._stubs or timeout <= 0.001:
            return since
        index = self._current
        ends = time.monotonic() + timeout
        call = self._stubs[index]["streams"].watch(proto.watch_entries(prefix, since), timeout=timeout)
        try:
            for reply in call:
                if reply.events:
                    return max(int(event.kv.mod_revision) for event in reply.events) + 1
                if reply.canceled:  # compacted past ``since``: whatever changed, look again
                    return max(since, int(reply.compact_revision))
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() < ends - 0.005:
                self._current = (index + 1) % len(self._stubs)  # the caller looks again
        finally:
            call.cancel()
        return since

    def _first_answer(self, method: str, request: Any, budget: float, what: str) -> Any:
        """Send ``request`` to each endpoint in turn until one answers, all within ``budget`` s."""
        deadline = time.monotonic() + budget
        error: Exception | None = None
        service = "lease" if method.startswith("Lease") else "kv"
        for offset in range(len(self._stubs)):
            index = (self._current + offset) % len(self._stubs)
            left = (deadline - time.monotonic()) / (len(self._stubs) - offset)
            if left <= 0:
                break
            try:
                reply = getattr(self._stubs[index][service], method)(request, timeout=left)
            except grpc.RpcError as exc:
                error = self._mapped_error(exc, what)
                continue
            self._current = index
            return reply
        raise BackendUnavailable(
            f"cannot reach any etcd endpoint of {self.url} within {budget:g} s"
        ) from error

    def _mapped_error(self, exc: Any, what: str) -> Exception:
        """Return the tenure error for a grpc error (the caller chains it)."""
        code, details = exc.code(), exc.details()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return BackendTimeout(f"{self.url} did not answer within the timeout ({what})")
        if code == grpc.StatusCode.NOT_FOUND and "lease not found" in str(details):
            return LeaseGone(f"the etcd session lease on {self.url} expired ({what})")
        if code == grpc.StatusCode.UNAVAILABLE:
            return BackendUnavailable(f"cannot reach {self.url} ({what}): {details}")
        return BackendProtocolError(f"unexpected reply from {self.url} ({what}): {code.name} {details}")


def _first_reply(call: Any) -> Any:
    """Return the first reply of a streaming call, or None, and end the stream."""
    try:
        for reply in call:
            return reply
        return None
    finally:
        call.cancel()


def _valid_until(sent: float, granted: int) -> float:
    return sent + granted * (1 - DRIFT) - 0.002
