# GENERATED from src/tenure/_async/backends/etcd/entries.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The entries a store made in etcd, by name: its connection state, in one table.

An entry is the key of a holder or a waiter of a lock (lock prefix + owner token, see
``proto.entry_key``). For each one the store knows the session lease it is attached to and:
for a holder, its ttl and when its last renewal (or its acquisition) was sent, which the keeper
uses to delete it once its validity has ended without a renewal; for a waiter, its place in the
line (``line.Waiting``). It also lists the entries whose delete failed, which the keeper
retries while their session lives. The table is shared by the callers and the keeper (a thread
in the sync twin), so every access takes its lock.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenure._core.renewal import drift_margin

if TYPE_CHECKING:
    from tenure._sync.backends.etcd.line import Waiting
    from tenure._sync.backends.etcd.session import Session

REAP_GRACE = 0.05  # seconds past a stalled holder's validity before its entry is deleted


@dataclass(slots=True)
class Held:
    """A holder's entry: its ttl, when its last renewal (or acquisition) was sent, its session.

    Also its create revision (the fence) and the ttl the entry stores (None: not known), which a
    renewal rewrites when it changes: the waiter behind the holder reads it there. ``part`` is
    its part of a renewal Txn for that ttl (``proto.renewal``), built once: the same every time.
    ``always``: rewritten at every renewal, not only while a waiter stands behind it (a permit:
    its waiters stand in no line, and judge its silence by these writes, ``permits.py``).
    """

    ttl: float
    renewed: float
    session: Session
    fence: int
    stored_ttl: float | None
    part: Any = None
    always: bool = False

    def still_valid(self) -> bool:
        """Return whether the holder is surely still valid (and so its entry still there)."""
        now = time.monotonic()
        alive = self.session.alive and self.session.valid_until > now
        return alive and now < self.renewed + self.ttl - drift_margin(self.ttl)


class Entries:
    """The entries this store made, by name; shared by the callers and the keeper."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[bytes, Held] = {}
        self._waiting: dict[bytes, Waiting] = {}
        # Entries whose delete failed, with the session they belong to (None: unknown).
        self._doomed: dict[bytes, Session | None] = {}

    def hold(
        self,
        name: bytes,
        ttl: float,
        started: float,
        session: Session,
        fence: int,
        stored_ttl: float | None,
        *,
        always: bool = False,
    ) -> None:
        """Record that ``name`` holds its lock since ``started`` (no longer waits, nor is doomed)."""
        with self._lock:
            self._held[name] = Held(ttl, started, session, fence, stored_ttl, always=always)
            self._waiting.pop(name, None)
            self._doomed.pop(name, None)

    def renewing(self, name: bytes, ttl: float, started: float) -> Held | None:
        """Note a renewal of ``name`` sent at ``started``; return its record, None if not held."""
        with self._lock:
            held = self._held.get(name)
            if held is None:
                return None
            held.ttl, held.renewed = ttl, started
            return held

    def holds(self, name: bytes) -> bool:
        """Return whether ``name`` is still recorded as a holder."""
        with self._lock:
            return name in self._held

    def waiting(self, name: bytes) -> Waiting | None:
        """Return where ``name`` waits in its line, if it does."""
        with self._lock:
            return self._waiting.get(name)

    def wait(self, name: bytes, waiting: Waiting) -> None:
        """Record that ``name`` waits in its line at ``waiting``."""
        with self._lock:
            self._waiting[name] = waiting

    def forget(self, name: bytes) -> tuple[Held | None, Session | None]:
        """Forget ``name``; return its holder record, if any, and its session, if known."""
        with self._lock:
            held = self._held.pop(name, None)
            waiting = self._waiting.pop(name, None)
        session = held.session if held is not None else waiting.session if waiting is not None else None
        return held, session

    def doom(self, name: bytes, session: Session | None) -> None:
        """Record that ``name`` must be deleted while ``session`` (None: unknown) lives."""
        with self._lock:
            self._doomed[name] = session

    def doomed(self) -> list[tuple[bytes, Session | None]]:
        """Return the entries whose delete failed."""
        with self._lock:
            return list(self._doomed.items())

    def deleted(self, name: bytes, session: Session | None) -> bool:
        """Note that doomed ``name`` is gone; return whether others are left."""
        with self._lock:
            if self._doomed.get(name) is session:
                del self._doomed[name]
            return bool(self._doomed)

    def stalled(self, now: float) -> list[tuple[bytes, Session]]:
        """Forget and return the holders whose validity ended before ``now`` (renewals stopped)."""
        with self._lock:
            names = [name for name, held in self._held.items() if held.renewed + held.ttl + REAP_GRACE < now]
            # Forgotten before the delete: a renewal in flight then reports the loss.
            return [(name, self._held.pop(name).session) for name in names]

    def next_stall(self) -> float:
        """Return when the first holder's validity ends if it is not renewed."""
        with self._lock:
            return min((h.renewed + h.ttl + REAP_GRACE for h in self._held.values()), default=math.inf)

    def clear(self) -> None:
        """Forget everything (the sessions are revoked, which deletes every entry)."""
        with self._lock:
            self._held.clear()
            self._waiting.clear()
            self._doomed.clear()
