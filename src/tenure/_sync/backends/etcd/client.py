# GENERATED from src/tenure/_async/backends/etcd/client.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The etcd v3 gRPC connection behind ``etcd://``: channels, endpoint failover, watches, errors.

One gRPC channel per endpoint. A call goes to the current endpoint and, while that one is
unreachable, moves on to the next; a call that ran out of ``op_timeout`` is not resent, but
the next call starts elsewhere. Resending is safe for everything the store sends: each request
is idempotent by the name of the entry it touches (a resent create finds the entry, a resent
delete finds none, a read is a read), so no resend can take a lock twice. Watches and
keep-alives send one request each and then only read, so they are called in gRPC's
unary-stream form (``proto.OneRequestStreams``), which costs grpc's sync client no thread.
``map_errors`` is the one mapping of grpc errors to tenure's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc  # type: ignore[import-untyped]

from tenure._sync.backends.etcd import proto
from tenure._config import BackendConfig
from tenure._exceptions import (
    BackendError,
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
)

if TYPE_CHECKING:
    from tenure._sync.backends.etcd.session import Session

RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)  # sent elsewhere next


class LeaseGone(BackendProtocolError):
    """The session's lease no longer exists at the server."""


class EtcdClient:
    """Talk to the endpoints of one etcd cluster."""

    def __init__(self, url: str, targets: list[str], *, op_timeout: float) -> None:
        self.url = url  # redacted, for messages
        self.targets = targets
        self.op_timeout = op_timeout
        # The session leases granted through this connection, by granted TTL (``session.py``
        # keeps them); closing the connection revokes them.
        self.sessions: dict[int, Session] = {}
        self._channels: list[Any] = []
        self._stubs: list[dict[str, Any]] = []
        self._current = 0  # index of the endpoint calls go to first

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
        try:
            self.first_answer(
                "kv", "Range", proto.get(b"\x00tenure-ping"), connect_timeout, "connecting"
            )
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
        error: BackendError | None = None
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
                error = map_errors(exc, f"{self.url} ({what})")
                if exc.code() not in RETRIED:
                    raise error from exc
                self._current = (index + 1) % len(self._stubs)
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise error from exc  # op_timeout is spent; the next call goes elsewhere
        assert error is not None
        raise error

    def first_answer(self, service: str, method: str, request: Any, budget: float, what: str) -> Any:
        """Send ``request`` to each endpoint in turn until one answers, all within ``budget`` s."""
        deadline = time.monotonic() + budget
        error: BackendError | None = None
        for offset in range(len(self._stubs)):
            index = (self._current + offset) % len(self._stubs)
            left = (deadline - time.monotonic()) / (len(self._stubs) - offset)
            if left <= 0:
                break
            try:
                reply = getattr(self._stubs[index][service], method)(request, timeout=left)
            except grpc.RpcError as exc:
                error = map_errors(exc, f"{self.url} ({what})")
                continue
            self._current = index
            return reply
        raise BackendUnavailable(
            f"cannot reach any etcd endpoint of {self.url} within {budget:g} s"
        ) from error

    # -- watches: each waits on the current endpoint; a failure only moves the next one on --------

    def wait_deleted(self, name: bytes, revision: int, timeout: float) -> bool | None:
        """Return when ``name`` is deleted at or after ``revision``, or after ``timeout`` s.

        True: the deletion was seen. False: ``timeout`` passed without it. None: the watch
        ended without telling (its revision was compacted, the endpoint failed).
        """
        kind, _ = self._watch(name, revision, timeout, puts=False)
        return True if kind == "deleted" else False if kind == "timeout" else None

    def watch_entry(self, name: bytes, revision: int, timeout: float) -> tuple[str, Any]:
        """Return the first change of ``name`` at or after ``revision``, within ``timeout`` s.

        ``("put", kv)``, ``("deleted", None)``, ``("timeout", None)``, or ``("ended", None)``
        when the watch ended without telling (compacted, the endpoint failed).
        """
        return self._watch(name, revision, timeout, puts=True)

    def _watch(self, name: bytes, revision: int, timeout: float, *, puts: bool) -> tuple[str, Any]:
        """Watch ``name`` from now; what changed since ``revision`` is read once the watch exists.

        etcd serves a watch that starts in the past from its "unsynced" group, caught up only
        every 100 ms, which would delay a hand-over; so the watch starts now, and the entry is
        read from the same member (no round through the leader) once the watch is in place.
        """
        if not self._stubs:
            return "ended", None
        if timeout <= 0.001:
            return "timeout", None
        index = self._current
        ends = time.monotonic() + timeout
        call = self._stubs[index]["streams"].watch(proto.watch_entry(name, 0, puts=puts), timeout=timeout)
        try:
            for reply in call:
                for event in reply.events:
                    return ("deleted", None) if event.type == proto.DELETE_EVENT else ("put", event.kv)
                if reply.canceled:
                    return "ended", None
                if reply.created and int(reply.header.revision) >= revision:
                    kv = self._member_read(index, name)
                    if kv is None or int(kv.create_revision) >= revision:
                        return "deleted", None  # deleted in between (made again is not the same)
                    if puts and int(kv.mod_revision) >= revision:
                        return "put", kv
        except grpc.RpcError as exc:
            # The server may end the stream at the deadline first ("context deadline exceeded").
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED or time.monotonic() >= ends - 0.005:
                return "timeout", None
            self._current = (index + 1) % len(self._stubs)  # only a hint: the caller tries again
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

    def wait_range(
        self, start: bytes, end: bytes, timeout: float, reads: list[Any], settled: Callable[[str, Any], bool]
    ) -> None:
        """Wait up to ``timeout`` s for a change in [``start``, ``end``) that ``settled`` accepts.

        The watch starts now (no lag behind the cluster, see ``_watch``); once it exists, the
        Txns ``reads`` are run on the same member and their replies passed as
        ``settled("read", replies)``, then each event as ``settled("event", event)``; a True
        ends the wait. Only a hint: a failure ends it too.
        """
        if not self._stubs or timeout <= 0.001:
            return
        index = self._current
        ends = time.monotonic() + timeout
        call = self._stubs[index]["streams"].watch(proto.watch_range(start, end), timeout=timeout)
        try:
            for reply in call:
                if reply.created:
                    kv = self._stubs[index]["kv"]
                    replies = [kv.Txn(request, timeout=self.op_timeout) for request in reads]
                    if settled("read", replies):
                        return
                if any(settled("event", event) for event in reply.events) or reply.canceled:
                    return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() < ends - 0.005:
                self._current = (index + 1) % len(self._stubs)  # the caller looks again
        finally:
            call.cancel()


def map_errors(exc: Any, what: str) -> BackendError:
    """Return the tenure error for a grpc error; ``what`` names the server and the step."""
    code, details = exc.code(), exc.details()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeout(f"{what}: no answer within the timeout")
    if code == grpc.StatusCode.NOT_FOUND and "lease not found" in str(details):
        return LeaseGone(f"{what}: the etcd session lease expired")
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendUnavailable(f"{what}: unreachable: {details}")
    return BackendProtocolError(f"{what}: unexpected reply: {code.name} {details}")


def endpoints(config: BackendConfig) -> list[str]:
    """Return the ``host:port`` gRPC targets of a validated ``etcd://`` URL (no I/O)."""
    url = config.url
    if url.path.strip("/"):
        raise ConfigurationError(
            f"etcd:// takes no path, only hosts: etcd://h1:2379,h2:2379 ({url.redacted})"
        )
    if url.username or url.password:
        raise ConfigurationError(f"etcd:// authentication is not supported yet ({url.redacted})")
    if not url.hosts:
        return ["127.0.0.1:2379"]
    return [f"{host.host or '127.0.0.1'}:{host.port or 2379}" for host in url.hosts]


def _first_reply(call: Any) -> Any:
    """Return the first reply of a streaming call, or None, and end the stream."""
    try:
        for reply in call:
            return reply
        return None
    finally:
        call.cancel()
