"""Handles shared by every suite: tenure's own lock, driven through its public sync API."""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

import tenure
from benchmarks.registry import Unavailable

# Generous bounds: a benchmark measures waiting, it must not turn a slow hand-off into an error.
# 10 s outlasts any contended run's duration, and a lease never expires while it is held.
TTL = 10.0
TIMEOUT = 10.0


class TenureHandle:
    """A tenure lock on any backend URL: ``Coordinator(url).lock(name)``, one lease at a time.

    Each handle owns its coordinator, as each worker process of a real service would. A backend
    tenure does not have yet (``ConfigurationError`` for the URL) or one that cannot serve the
    options (``BackendIncapable``, e.g. ``fair=True`` without queueing) raises ``Unavailable``,
    so the runner reports the contender as skipped instead of failing the suite.
    """

    def __init__(
        self, url: str, name: str, *, ttl: float = TTL, timeout: float = TIMEOUT, fair: bool = False
    ) -> None:
        try:
            self._coordinator = tenure.Coordinator(url)
        except tenure.ConfigurationError as exc:
            raise Unavailable(f"backend not available ({type(exc).__name__}: {exc})") from exc
        try:
            self._lock = self._coordinator.lock(name, ttl=ttl, timeout=timeout, fair=fair)
        except tenure.BackendIncapable as exc:
            self._coordinator.close()
            raise Unavailable(f"backend not capable ({type(exc).__name__}: {exc})") from exc
        self._lease: tenure.Lease | None = None
        self.last_fence = 0

    def acquire(self) -> None:
        self._lease = self._lock.acquire()
        self.last_fence = self._lease.fence

    def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            raise RuntimeError("release() without a held lease")
        lease.release()

    def close(self) -> None:
        self._coordinator.close()


def client_versions(*packages: str) -> str:
    """Return the versions of the client libraries, which the JSON records with the figures."""
    found = []
    for name in packages:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} missing")
    return ", ".join(found)


class ToozHandle:
    """tooz's lock on one of its drivers: ``get_coordinator(url).get_lock(name).acquire()``."""

    def __init__(self, url: str, name: str, *, what: str, **acquire_options: Any) -> None:
        from tooz import coordination  # a bench peer: missing, skipped

        self._what = what
        self._acquire_options = {"blocking": True, **acquire_options}
        self._coordinator: Any = coordination.get_coordinator(url, os.urandom(8).hex().encode())
        self._coordinator.start()
        self._lock = self._coordinator.get_lock(f"tooz:{name}".encode())

    def acquire(self) -> None:
        if not self._lock.acquire(**self._acquire_options):
            raise TimeoutError(f"{self._what} lock not acquired within {TIMEOUT} s")

    def release(self) -> None:
        if not self._lock.release():
            raise RuntimeError(f"{self._what} lock was not held at release")

    def close(self) -> None:
        self._coordinator.stop()
