"""Clocks: the local monotonic clock, and a host clock that several processes can share."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

Clock = Callable[[], float]
"""A function returning seconds; only differences between two readings mean anything."""

monotonic: Clock = time.monotonic


@cache
def boot_id() -> str:
    """Return an id of this boot of the host, so host-clock readings are never compared across boots.

    CLOCK_MONOTONIC is shared by every process on a Linux host but restarts at each boot; a lease
    written before a reboot must not look valid after it.
    """
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        # No boot id (not Linux): fall back to wall-clock seconds, which every process shares.
        return "wall"


def host_now() -> float:
    """Return seconds on the clock that every process of this host agrees on."""
    return time.monotonic() if boot_id() != "wall" else time.time()
