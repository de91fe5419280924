# GENERATED from src/tenure/_async/backends/zookeeper/session.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""One kazoo client, one ZooKeeper session: calls bounded and re-sent, errors mapped, shared watches.

The ``zookeeper://`` store makes every server call through this class. A call waits for kazoo's
thread-completed result on the caller's loop (``tenure._concurrency.await_result``), never in a
thread of its own; a call whose connection dropped is sent again until ``op_timeout`` (kazoo
queues it until it has reconnected to a member). ``map_errors`` is the one mapping of kazoo's
errors to tenure's.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kazoo import exceptions as zk_errors  # type: ignore[import-untyped]
from kazoo.client import KazooClient, KazooState  # type: ignore[import-untyped]
from kazoo.handlers.threading import KazooTimeoutError  # type: ignore[import-untyped]

from tenure._concurrency import await_result, run_blocking, sleep
from tenure._exceptions import BackendError, BackendProtocolError, BackendTimeout, BackendUnavailable

# kazoo's handler.result, spelt so the sync generator (which drops "async_") keeps it.
NEW_RESULT = "async" + "_result"
RETRY_PAUSE = 0.05  # seconds between sends of a call whose connection dropped
# The request may or may not have been applied, and kazoo reconnects (with a new session if the
# old one expired, whose nodes are gone, which the caller then finds out): send it again.
RETRYABLE = (zk_errors.ConnectionLoss, zk_errors.ConnectionDropped, zk_errors.SessionExpiredError)
UNREACHABLE = (
    zk_errors.SessionExpiredError,  # also ConnectionClosedError
    zk_errors.SessionMovedError,
    zk_errors.OperationTimeoutError,
    zk_errors.ZookeeperStoppedError,
)


def map_errors(exc: BaseException | None, what: str) -> BackendError:
    """Return the tenure error for a kazoo error; ``what`` names the ensemble and the step."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, TimeoutError):
        return BackendTimeout(f"no answer within op_timeout from {what}")
    if isinstance(exc, (*RETRYABLE, *UNREACHABLE, KazooTimeoutError, OSError)):
        return BackendUnavailable(f"cannot reach {what}: {exc!r}")
    return BackendProtocolError(f"unexpected reply from {what}: {exc!r}")


class CallInterrupted(Exception):
    """A kazoo call lost its connection and may or may not have been applied; see its cause."""


class ZooKeeperSession:
    """Hold one kazoo client and run calls on it; construct without I/O, then ``connect()``."""

    def __init__(
        self, url: str, *, hosts: str, session_timeout: float, connect_timeout: float, op_timeout: float
    ) -> None:
        self._url = url  # redacted
        self._hosts = hosts
        self._session_timeout = session_timeout
        self._connect_timeout = connect_timeout
        self._op_timeout = op_timeout
        self._client: Any = None  # KazooClient: kazoo is untyped
        self.state: str = KazooState.LOST
        self._watches: dict[str, Any] = {}  # node path -> result set when that node changes

    def connect(self) -> None:
        """Open the session within connect_timeout, else raise ``BackendUnavailable``; idempotent."""
        if self._client is not None:
            return
        client = KazooClient(
            hosts=self._hosts,
            timeout=self._session_timeout,
            # Reconnect without end (to any member) while the session may still be alive.
            connection_retry={"max_tries": -1, "delay": 0.05, "max_delay": 1.0},
            command_retry=None,  # never retry a command: a retried create could double-queue
        )
        client.add_listener(self._on_state)
        try:
            run_blocking(client.start, self._connect_timeout)
        except (KazooTimeoutError, zk_errors.KazooException, OSError) as exc:
            run_blocking(_stop, client, self._connect_timeout)
            waited = f"connect_timeout={self._connect_timeout:g} s"
            raise map_errors(exc, f"{self._url} within {waited}") from exc
        self._client = client

    def session_id(self) -> int | None:
        """Return the id of the session while connected, else None."""
        client_id = None if self._client is None else self._client.client_id
        return None if client_id is None else int(client_id[0])

    def _on_state(self, state: str) -> None:
        """Track the connection (called on kazoo's thread; must not block)."""
        self.state = state
        if state == KazooState.LOST:
            self._wake_watchers()  # every node of ours is gone: waiters must look again

    def _wake_watchers(self) -> None:
        watches, self._watches = self._watches, {}
        for watch in watches.values():
            if not watch.ready():
                watch.set(None)

    def get(self, path: str, what: str, *, watch: bool = False) -> tuple[bytes, Any] | None:
        """Return ``path``'s data and stat, or None if it is gone.

        With ``watch``, the same request also arms the shared watch on ``path`` (unless one is
        armed already), so a later ``wait_for_change(path)`` need not send one of its own.
        """
        armed: Any = None
        if watch:
            current = self._watches.get(path)
            if current is None or current.ready():
                armed = getattr(self.live_client().handler, NEW_RESULT)()
        # get (not exists) so a node that is already gone leaves no creation watch behind.
        got: tuple[bytes, Any] | None = self.call(
            lambda c: c.get_async(path, watch=None if armed is None else armed.set), what
        )
        if armed is not None and got is not None:
            if len(self._watches) >= 4096:  # stay bounded: a dropped entry only costs a watch
                self._wake_watchers()
            self._watches[path] = armed
        return got

    def wait_for_change(self, path: str, timeout: float) -> None:
        """Wait up to ``timeout`` for ``path`` to change or go; one watch per path, shared."""
        watch = self._watches.get(path)
        if watch is None or watch.ready():
            if self.get(path, "watching", watch=True) is None:
                return
            watch = self._watches.get(path)
            if watch is None:  # woken meanwhile (the session was lost): look again
                return
        try:
            await_result(watch, timeout)
        except TimeoutError:
            return
        self._watches.pop(path, None)

    def call(self, make: Any, what: str) -> Any:
        """Run one kazoo call; return its value, or None if its node does not exist (or changed).

        A call whose connection dropped is sent again (kazoo queues it until it reconnects to
        a member) until ``op_timeout``: every call made this way is idempotent.
        """
        deadline = time.monotonic() + self._op_timeout
        while True:
            try:
                return self.result(make(self.live_client()), deadline, what)
            except (zk_errors.NoNodeError, zk_errors.BadVersionError, zk_errors.NotEmptyError):
                return None
            except CallInterrupted as retry:
                if time.monotonic() + RETRY_PAUSE >= deadline:
                    raise self.mapped(retry.__cause__, what) from retry.__cause__
                sleep(RETRY_PAUSE)

    def result(self, result: Any, deadline: float, what: str) -> Any:
        """Wait for a kazoo result until ``deadline``; raise CallInterrupted if the connection dropped."""
        try:
            return await_result(result, max(0.001, deadline - time.monotonic()))
        except zk_errors.ConnectionClosedError as exc:  # closed by us: no retry can help
            raise self.mapped(exc, what) from exc
        except RETRYABLE as exc:
            raise CallInterrupted from exc
        except (zk_errors.NoNodeError, zk_errors.BadVersionError, zk_errors.NotEmptyError):
            raise
        except (zk_errors.KazooException, TimeoutError) as exc:
            raise self.mapped(exc, what) from exc

    def mapped(self, exc: BaseException | None, what: str) -> BackendError:
        """Return the tenure error for a kazoo error in step ``what`` (the caller chains it)."""
        return map_errors(exc, f"{self._url} ({what})")

    def live_client(self) -> Any:
        """Return the kazoo client, or raise ``BackendUnavailable`` once closed."""
        if self._client is None:
            raise BackendUnavailable(f"the connection to {self._url} is closed")
        return self._client

    def close(self) -> None:
        """End the session (the ensemble deletes its ephemeral nodes); idempotent."""
        client, self._client = self._client, None
        if client is not None:
            self._wake_watchers()
            run_blocking(_stop, client, self._op_timeout)


def _stop(client: Any, timeout: float) -> None:
    """End a kazoo client's session and free its threads, waiting at most ``timeout`` seconds.

    kazoo's stop() waits up to max(10 s, session timeout) for a connection thread that may be
    stuck on an unreachable ensemble; that wait goes on in a daemon thread, not the caller's.
    """

    def stop() -> None:
        try:
            client.stop()
        finally:
            client.close()

    stopping = threading.Thread(target=stop, name="tenure-zookeeper-close", daemon=True)
    stopping.start()
    stopping.join(timeout)
