"""One acquisition's state, shared by the lease its holder uses and the renewer that keeps it.

Sans-I/O and colour-free: the lease (asyncio or threads) wraps a ``Holding`` and does the I/O;
the renewer reads and updates the same ``Holding`` without reaching into the lease. Loss is
recorded once, under a lock, because the renewer and the holder may notice it together.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tenure._core.keys import key_kind
from tenure._core.renewal import Validity
from tenure._core.tokens import Owner

log = logging.getLogger("tenure")


class Holding:
    """Who holds ``key`` (``owner``, ``fence``), until when surely, and whether it was lost."""

    __slots__ = (
        "_listeners",
        "_lost_reason",
        "_state",
        "depth",
        "fence",
        "key",
        "last_renew_error",
        "name",
        "owner",
        "reentrant",
        "released",
        "validity",
    )

    def __init__(
        self, name: str, key: str, owner: Owner, fence: int, validity: Validity, *, reentrant: bool = False
    ) -> None:
        self.name = name
        self.key = key
        self.owner = owner
        self.fence = fence
        self.validity = validity
        self.reentrant = reentrant  # whether its holder may acquire it again
        self.depth = 1  # reentrant acquisitions not yet released
        self.released = False
        self.last_renew_error: BaseException | None = None
        self._lost_reason: str | None = None
        self._listeners: list[Callable[[], object]] = []
        self._state = threading.Lock()

    @property
    def lost_reason(self) -> str | None:
        """Return why the holding was lost, or None while it is not (validity checked now)."""
        if self._lost_reason is None and not self.released and self.validity.expired(time.monotonic()):
            self.mark_lost("its validity ran out before it could be renewed")
        return self._lost_reason

    def renewed(self, started: float, ttl: float | None = None) -> None:
        """Record a renewal that was sent at ``started`` and granted."""
        self.validity = self.validity.renewed(started, ttl)

    def on_lost(self, listener: Callable[[], object]) -> bool:
        """Call ``listener()`` once when the holding is lost; return False (not added) if it already is."""
        with self._state:
            if self._lost_reason is not None:
                return False
            self._listeners.append(listener)
            return True

    def mark_lost(self, reason: str, *, force: bool = False) -> bool:
        """Record the loss once and call the listeners; return whether this call recorded it.

        A released holding is not lost, unless ``force`` (its release found it lost already).
        """
        with self._state:
            if self._lost_reason is not None or (self.released and not force):
                return False
            self._lost_reason = reason
            listeners, self._listeners = self._listeners, []
        if key_kind(self.key) == "election":  # a leader deposed: a failover follows
            log.warning("tenure: election %r: leadership (term %d) lost: %s", self.name, self.fence, reason)
        else:
            log.warning("tenure: lock %r (fence %d) lost: %s", self.name, self.fence, reason)
        for listener in listeners:
            try:
                listener()
            except Exception:
                log.exception("tenure: a loss listener of lock %r failed", self.name)
        return True
