"""The ``tenure`` logger: a loss, a breaker change, an outage, each logged once, never with a password."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import tenure
from tests.servers import RedisServer

SECRET = "s3cret-Pa55word"


@pytest.fixture
def guarded_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    redis.Redis(host="127.0.0.1", port=server.port).config_set("requirepass", SECRET)
    yield server
    server.resume()
    server.stop()


def test_loss_outage_and_breaker_are_logged_once_without_the_password(
    guarded_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tenure")
    url = f"redis://:{SECRET}@127.0.0.1:{guarded_redis.port}/0?op_timeout=0.2"
    with tenure.Coordinator(url) as coord:
        lease = coord.lock("orders:42", ttl=0.6).acquire()
        limiter = coord.rate_limiter("search", rate="100/s", deadline=0.05)
        breaker = coord.circuit_breaker("partner", min_calls=2, deadline=0.05)
        assert limiter.try_acquire()
        guarded_redis.pause()  # a frozen server: renewals time out, the lease runs out
        try:
            deadline = time.monotonic() + 5
            while not lease.lost and time.monotonic() < deadline:
                time.sleep(0.05)
            assert lease.lost
            assert limiter.try_acquire() and limiter.try_acquire()  # "allow" while the store is away
            for _ in range(2):
                breaker.admit().failed()  # decided in this process: it opens here
            with pytest.raises(tenure.CircuitOpen):
                breaker.admit()
        finally:
            guarded_redis.resume()
        with pytest.raises(tenure.LockLost):
            lease.release()
    text = [record.getMessage() + (caplog.text if record.exc_info else "") for record in caplog.records]
    assert all(SECRET not in line for line in text), "a password reached the log"
    assert all(record.name == "tenure" for record in caplog.records)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    losses = [w for w in warnings if "lost" in w]
    assert len(losses) == 1 and f"lock 'orders:42' (fence {lease.fence}) lost" in losses[0], warnings
    assert len([w for w in warnings if "rate limiter 'search'" in w and "did not answer" in w]) == 1
    assert len([w for w in warnings if "circuit breaker 'partner'" in w and "did not answer" in w]) == 1
    assert [w for w in warnings if "closed -> open" in w] == [
        "tenure: circuit breaker 'partner' (shared on redis://): closed -> open"
    ]
