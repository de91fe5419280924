"""Module-level shorthands on a default coordinator, for scripts that need one lock quickly."""

from __future__ import annotations

import atexit
import threading

from tenure._sync.coordinator import DEFAULT_TIMEOUT, DEFAULT_TTL, Coordinator
from tenure._sync.lease import Lease
from tenure._sync.lock import Lock

_default: Coordinator | None = None
_default_lock = threading.Lock()


def default_coordinator() -> Coordinator:
    """Return the process's default coordinator (``$TENURE_URL`` or the embedded SQLite file)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Coordinator()
            atexit.register(_default.close)
        return _default


def lock(
    name: str, *, ttl: float = DEFAULT_TTL, timeout: float | None = DEFAULT_TIMEOUT, reentrant: bool = False
) -> Lock:
    """Return a lock on ``name`` on the default coordinator; use it as ``with tenure.lock(...)``."""
    return default_coordinator().lock(name, ttl=ttl, timeout=timeout, reentrant=reentrant)


def try_lock(name: str, *, ttl: float = DEFAULT_TTL) -> Lease | None:
    """Make one attempt at ``name`` on the default coordinator; return the lease or None."""
    return default_coordinator().try_lock(name, ttl=ttl)
