"""A fence that goes back is refused on every backend that promises fencing (issue 12, item 14).

The table is sans-I/O and unit-tested here; its use is checked on the memory backend, whose
counter a test can rewind in place (SQLite's is rewound by restoring a copy of its file, in
tests/test_sqlite.py).
"""

from __future__ import annotations

import pytest

import tenure
from tenure._async.backends.memory import _SPACES as async_spaces
from tenure._core.fences import FenceHighWater
from tenure._sync.backends.memory import _SPACES


def test_the_table_refuses_a_fence_not_above_the_highest_seen() -> None:
    table = FenceHighWater()
    assert table.admit("a", 5) is None
    assert table.admit("a", 7) is None
    assert table.admit("a", 7) == 7  # a repeat
    assert table.admit("a", 3) == 7  # a rewind
    assert table.admit("b", 1) is None  # names are apart


def test_the_table_is_bounded_and_forgets_the_least_recently_acquired() -> None:
    table = FenceHighWater(size=3)
    for key in ("a", "b", "c"):
        table.admit(key, 10)
    table.admit("a", 11)  # "a" is now the most recent
    table.admit("d", 10)  # evicts "b"
    assert table.admit("b", 1) is None  # forgotten: checked again from now on
    assert table.admit("a", 1) == 11 and table.admit("d", 1) == 10
    assert len(table._seen) == 3


def test_a_rewound_counter_is_refused_and_the_lock_freed(memory_url: str) -> None:
    with tenure.Coordinator(memory_url) as coord, tenure.Coordinator(memory_url) as other:
        lock = coord.lock("job", ttl=5)
        seen = lock.acquire(timeout=1)
        seen.release()
        space = _SPACES[memory_url.removeprefix("memory://")]
        space.entries[lock.key].fence = seen.fence - 3  # the backend "lost" its last increments
        with pytest.raises(tenure.BackendProtocolError, match="rewound"):
            lock.acquire(timeout=1)  # granted seen - 2
        with pytest.raises(tenure.BackendProtocolError, match="rewound"):
            coord.lock("job", ttl=5).try_acquire()  # seen - 1, to a new Lock object of the same coordinator
        assert coord.inspect("job") is None  # freed at once, not left to expire
        # Another coordinator has seen nothing of the name: it cannot tell, and takes seen again.
        repeated = other.lock("job", ttl=5).acquire(timeout=1)
        assert repeated.fence == seen.fence
        repeated.release()
        # Past the highest seen, the first coordinator accepts fences again.
        assert lock.acquire(timeout=1).fence == seen.fence + 1


async def test_the_async_lock_refuses_a_rewound_counter_too(memory_url: str) -> None:
    async with tenure.AsyncCoordinator(memory_url) as coord:
        lock = coord.lock("job", ttl=5)
        seen = await lock.acquire(timeout=1)
        await seen.release()
        async_spaces[memory_url.removeprefix("memory://")].entries[lock.key].fence = seen.fence - 1
        with pytest.raises(tenure.BackendProtocolError, match="rewound"):
            await lock.try_acquire()
        assert await coord.inspect("job") is None
