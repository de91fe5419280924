"""MariaDB's idempotency records, both modes: a restart keeps them, the server's packet bounds
them, and a key leaves nothing but its record, which goes once expired."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tenure
from tenure._async.backends.mysql.record_sql import PACKET_HEADROOM, record_limit
from tenure._async.backends.mysql.sql import lock_name
from tenure._core.idempotency import HEADER_BYTES, run_name
from tenure._core.keys import namespaced_key
from tests.servers_mysql import MariaDBServer
from tests.test_mysql import namespaced, raw_connection

pytestmark = pytest.mark.slow
MODES: dict[str, dict[str, object]] = {"advisory": {}, "table": {"mode": "table"}}


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[MariaDBServer]:
    """A server of this test's own, free to be restarted or reconfigured."""
    server = MariaDBServer(tmp_path / "mariadb").start()
    yield server
    server.stop()


class Raw:
    """Results are the bytes the function returns."""

    def dumps(self, value: Any) -> bytes:
        return bytes(value)

    def loads(self, data: bytes) -> Any:
        return data


def scalar(server: MariaDBServer, query: str, params: list[str]) -> int:
    """Return the one number ``query`` reads; ``{names}`` in it stands for ``params``' placeholders."""
    with raw_connection(server) as conn, conn.cursor() as cur:
        cur.execute(query.format(names=", ".join(["%s"] * len(params))), params)
        found: int = cur.fetchone()[0]
        return found


@pytest.mark.parametrize("mode", MODES)
def test_a_restart_keeps_finished_records(own_server: MariaDBServer, mode: str) -> None:
    url = namespaced(own_server.url, op_timeout=2, **MODES[mode])
    runs: list[int] = []

    def charge(amount: int) -> dict[str, int]:
        runs.append(amount)
        return {"charged": amount}

    with tenure.Coordinator(url) as coord:
        keys = coord.idempotency("payments")
        assert keys.run("req-1", charge, 5) == {"charged": 5}
        before = keys.state("req-1").done
        assert before is not None
        own_server.restart()  # kill -9, then the same data dir: every session ends
        assert keys.run("req-1", charge, 5) == {"charged": 5}, "replayed, not run again"
        after = keys.state("req-1")
        assert after.running is None and after.done is not None
        assert after.done.fence == before.fence and after.done.remaining > 86000
        assert keys.run("req-2", charge, 7) == {"charged": 7}
        later = keys.state("req-2").done
        assert later is not None and later.fence > before.fence, "fences keep growing across the crash"
    assert runs == [5, 7]


def test_the_record_limit_follows_the_servers_packet(own_server: MariaDBServer) -> None:
    packet = 4 * 1024 * 1024
    own_server.sql(f"SET GLOBAL max_allowed_packet = {packet}")
    limit = record_limit(packet)
    assert limit == (packet - PACKET_HEADROOM) // 2
    # The largest record, of the bytes that an escaped literal would have doubled.
    body = (b"\0'\\\"" * limit)[: limit - HEADER_BYTES]
    for mode in MODES:
        url = namespaced(own_server.url, **MODES[mode])
        with tenure.Coordinator(url) as coord:
            assert coord._store.record_limit == limit  # type: ignore[attr-defined]
            keys = coord.idempotency("blobs", serializer=Raw())
            assert keys.run("big", lambda: body) == body
            assert keys.run("big", lambda: b"not run") == body
        # A space built before the first connection takes the default packet's size limit: a
        # record over this server's is refused by the store, which frees the key.
        early = tenure.Coordinator(url)
        try:
            keys = early.idempotency("blobs", serializer=Raw())
            with pytest.raises(tenure.IdempotencyError, match="max_allowed_packet"):
                keys.run("bigger", lambda: b"x" * limit)
            assert keys.state("bigger") == tenure.KeyState(None, None)
            assert keys.run("bigger", lambda: b"small") == b"small"
        finally:
            early.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_key_leaves_only_its_record_and_that_goes_once_expired(
    mariadb_server: MariaDBServer, mode: str
) -> None:
    url = namespaced(mariadb_server.url, **MODES[mode])
    fences: list[int] = []

    def charge(amount: int) -> int:
        lease = tenure.Idempotency.current_lease()
        assert lease is not None
        fences.append(lease.fence)
        return amount

    with tenure.Coordinator(url) as coord:
        keys = coord.idempotency("payments", ttl=1)
        names = [
            lock_name(namespaced_key(coord.namespace, run_name("payments", f"req-{i}"), kind="idempotency"))
            for i in range(20)
        ]
        for i in range(20):
            keys.run(f"req-{i}", charge, i)
        mine = "SELECT COUNT(*) FROM {table} WHERE lock_name IN ({{names}})"
        assert scalar(mariadb_server, mine.format(table="tenure_records"), names) == 20
        # No holder row (advisory mode) nor lease row (table mode) is left; fences come from the
        # server-wide sequence (advisory) or start past the server's time (table): none is kept.
        runs = "tenure_holders" if mode == "advisory" else "tenure_leases"
        assert scalar(mariadb_server, mine.format(table=runs), names) == 0
        time.sleep(1.2)
        # Each finish takes up to 8 expired records with it, the oldest first (this server's
        # other tests left some too).
        expired = scalar(
            mariadb_server, "SELECT COUNT(*) FROM tenure_records WHERE expires_at <= UTC_TIMESTAMP(6)", []
        )
        for i in range(math.ceil(expired / 8)):
            keys.run(f"later-{i}", charge, i)
        assert scalar(mariadb_server, mine.format(table="tenure_records"), names) == 0
        keys.run("req-0", charge, 0)  # its record expired: it runs again, with a larger fence
        assert fences[-1] > fences[0]
