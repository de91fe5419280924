"""What a backend promises and what optional operations it offers, declared per backend."""

from __future__ import annotations

import enum


class Guarantee(enum.Enum):
    """A property of a backend that the contract suite verifies and the README tabulates."""

    FENCING = "strictly monotonic fences per name, never repeated"
    FIFO = "waiters of a fair=True lock served in arrival order"
    SERVER_TIME = "expiry measured by one authoritative clock, not each client's"
    SURVIVES_FAILOVER = "held locks survive the loss of one server node"
    SESSION_BOUND = "a lease ends with its holder's session"
    CROSS_HOST = "processes on different hosts can coordinate"
    CROSS_PROCESS = "processes on one host can coordinate"


class Capability(enum.Enum):
    """An optional group of atomic operations a backend may implement.

    ``QUEUEING`` is the ``Queueing`` protocol of ``backends/base.py``; ``SESSIONS`` says that
    what a client holds lives in one server session; ``COUNTING`` is the ``Counting`` protocol
    (semaphores); ``RECORDS`` is the ``Records`` protocol (idempotency keys); ``COUNTERS`` is the
    ``Counters`` protocol (rate limits).
    """

    QUEUEING = "Queueing"
    COUNTING = "Counting"
    SESSIONS = "Sessions"
    RECORDS = "Records"
    COUNTERS = "Counters"
