"""The two counters the workers share: local files, one fenced and one not.

Both live in one folder and are guarded by one file lock (``flock``), held only for a read or
for one read-compare-write. The fenced store checks the fence of every request, as storage that
honours fencing tokens does: a read or write raises the highest fence it has seen, and a write
whose fence is lower than that is refused (a holder may write several times under one fence).
A fenced read matters: without it, an old holder that writes after a newer holder has read
(but before it writes) would go through, and the newer holder's write would then undo it.
The unfenced store trusts every writer. A write is stamped inside the lock, so the stamps of
one store's writes are in the order the store applied them. The nemesis takes the same lock
before it freezes a worker, so no worker is ever frozen while it holds the lock (that would
freeze every other worker too).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_FILE = "stores.lock"
FENCED_FILE = "counter-fenced.json"
UNFENCED_FILE = "counter-unfenced.json"


def create_stores(folder: Path) -> None:
    """Create both counters at 0 (replacing any earlier run's) and their lock file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).touch()
    _replace(folder / FENCED_FILE, {"value": 0, "highest": 0})
    _replace(folder / UNFENCED_FILE, {"value": 0})


@contextlib.contextmanager
def store_lock(folder: Path, *, timeout: float | None = None) -> Iterator[bool]:
    """Hold the stores' lock for the block; yield False if it could not be had within ``timeout``.

    ``timeout=None`` waits as long as it takes (workers); the nemesis passes a bound.
    """
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        held = _lock(fd, timeout)
        try:
            yield held
        finally:
            if held:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock(fd: int, timeout: float | None) -> bool:
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)


class Stores:
    """One worker's handle on both counters; ``clock`` stamps writes (the worker's event clock)."""

    def __init__(self, folder: Path, clock: Callable[[], int]) -> None:
        self.folder = folder
        self.clock = clock

    def read(self, fence: int | None = None) -> tuple[int, int]:
        """Return ``(fenced value, unfenced value)``, read together under the lock.

        ``fence`` (the reader's) is remembered by the fenced store: lower ones may no longer write.
        """
        with store_lock(self.folder):
            path = self.folder / FENCED_FILE
            fenced = _load(path)
            unfenced = _load(self.folder / UNFENCED_FILE)
            if fence is not None and fence > int(fenced["highest"]):
                _replace(path, {"value": fenced["value"], "highest": fence})
        return int(fenced["value"]), int(unfenced["value"])

    def write_fenced(self, value: int, fence: int) -> tuple[bool, int]:
        """Store ``value`` unless a higher fence was seen; return ``(accepted, stamp)``."""
        with store_lock(self.folder):
            path = self.folder / FENCED_FILE
            state = _load(path)
            accepted = fence >= int(state["highest"])
            if accepted:
                _replace(path, {"value": value, "highest": fence})
            return accepted, self.clock()

    def write_unfenced(self, value: int) -> int:
        """Store ``value`` whoever writes it; return the stamp."""
        with store_lock(self.folder):
            _replace(self.folder / UNFENCED_FILE, {"value": value})
            return self.clock()


def final_values(folder: Path) -> tuple[int, int]:
    """Return the counters' values at the end of a run: ``(fenced, unfenced)``."""
    return Stores(folder, time.monotonic_ns).read()


def _load(path: Path) -> dict[str, int]:
    data: dict[str, int] = json.loads(path.read_text())
    return data


def _replace(path: Path, data: dict[str, int]) -> None:
    """Write ``data`` so that a reader (or a worker killed halfway) sees all of it or none."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
