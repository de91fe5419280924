"""Semaphore arithmetic, sans-I/O: limits, the keys of permit slots, the order slots are tried in.

A semaphore of ``limit`` permits on key ``<ns>:semaphore:<name>`` keeps each permit as a lease
on one of ``limit`` slot keys, ``<ns>:permit:<slot>:<name>``. A permit is then renewed,
released and lost exactly as a lock is (the renewer batches it with the locks), and a permit
whose holder died frees its slot when its lease expires. What a backend adds is one step that
takes a free slot while fewer than ``limit`` are held, bumps the name's one fence counter, and
refuses a limit other than the one the live permits were taken with.
"""

from __future__ import annotations

import random

from tenure._exceptions import ConfigurationError

MAX_LIMIT = 1024
"""The most permits one semaphore may have: a permit step looks at every slot, so the limit
bounds its work on the server. For larger budgets (requests per second), use a rate limiter."""


def check_limit(limit: object) -> int:
    """Return ``limit`` if it is a usable number of permits, else raise ``ConfigurationError``."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ConfigurationError(f"limit must be an int, not {type(limit).__name__}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigurationError(f"limit must be between 1 and {MAX_LIMIT} permits, got {limit}")
    return limit


SLOT_KINDS = {"semaphore": "permit", "rwlock": "reader", "sequence": "ticket"}
"""The kind of a slot's key, by the kind of key that counts its holders: a semaphore's permits,
a read-write lock's readers, a sequence's tickets."""


def permit_key(key: str, slot: int) -> str:
    """Return the key of slot ``slot`` of the semaphore (or read-write lock) whose key is ``key``.

    ``key`` is ``<ns>:semaphore:<name>`` (``namespaced_key``); the slot's key is
    ``<ns>:permit:<slot>:<name>``: its own kind, so it never meets a lock, a semaphore or a slot
    of another semaphore (the slot number ends at the first ':' after the kind). A read-write
    lock ``<ns>:rwlock:<name>`` counts its readers the same way, in ``<ns>:reader:<slot>:<name>``.
    """
    namespace, kind, name = key.split(":", 2)
    if kind not in SLOT_KINDS:
        raise ValueError(f"not the key of a semaphore or a read-write lock: {key!r}")
    return f"{namespace}:{SLOT_KINDS[kind]}:{slot}:{name}"


def permit_keys(key: str, limit: int) -> list[str]:
    """Return the keys of all ``limit`` permit slots of semaphore ``key``, slot 0 first."""
    return [permit_key(key, slot) for slot in range(limit)]


def slot_order(limit: int) -> list[int]:
    """Return the slots in the order one attempt tries them: a random rotation.

    Random so that concurrent acquirers do not all race for slot 0; a rotation so that each
    slot is tried once.
    """
    start = random.randrange(limit)
    return [*range(start, limit), *range(start)]


def limit_mismatch(key: str, limit: int, recorded: int) -> ConfigurationError:
    """Return the error for asking ``limit`` permits of a semaphore in use with ``recorded``."""
    _, kind, name = key.split(":", 2)
    what = {"semaphore": "semaphore", "rwlock": "read-write lock"}.get(kind, kind)
    return ConfigurationError(
        f"{what} {name!r} is in use with limit={recorded}; this one asks limit={limit}. "
        "Every holder of one name must agree on its limit (change it once no permit is held)"
    )
