"""The per-call contenders of ``benchmarks.idempotency``: tenure, the raw GETs, AWS Powertools.

Each is a handle whose ``acquire()`` makes one call (``release()`` does nothing), so the
uncontended loop of ``benchmarks/uncontended.py`` times one call per cycle: warm-up, bounds and
``perf_counter_ns`` included. A raw GET reads a value of the size of tenure's record
(``RECORD_BYTES``) by its key, through the driver the suite's floor uses, on its own connection.
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from collections.abc import Callable
from typing import Any

import tenure
from benchmarks.registry import BenchContext, Unavailable
from benchmarks.suites.common import TIMEOUT, TTL
from tenure._core.idempotency import HEADER_BYTES, JSONSerializer

# What every measured function returns: a small JSON object, as an API's answer would be.
RESULT: dict[str, str | int] = {"order": 42, "status": "paid", "amount": "19.99", "currency": "EUR"}
# tenure's record of a run that returned RESULT: its header (format, fingerprint) + the JSON.
RECORD_BYTES = HEADER_BYTES + len(JSONSerializer().dumps(RESULT))
NO_RECORDS = "no Records capability"
RAW_KEY = "bench-raw-get"
# The size of what each contender stores per key, filled by the handles as they are built.
STORED_BYTES: dict[str, int] = {}


def short_reason(reason: str) -> str:
    """Return a skip reason's head ("no Records capability"); the JSON keeps all of it."""
    return NO_RECORDS if reason.startswith(NO_RECORDS) else reason


def sqlite_url(ctx: BenchContext) -> str:
    return f"sqlite:///{ctx.path('tenure.db')}"  # the file the suite's tenure contenders use


def open_keys(
    url: str, space: str, *, timeout: float = TIMEOUT
) -> tuple[tenure.Coordinator, tenure.Idempotency]:
    """Return a coordinator on ``url`` and its idempotency space, or raise ``Unavailable``.

    A backend that does not declare ``Capability.RECORDS`` is reported as such, not as an error.
    """
    try:
        coordinator = tenure.Coordinator(url)
    except tenure.ConfigurationError as exc:
        raise Unavailable(f"backend not available ({type(exc).__name__}: {exc})") from exc
    if tenure.Capability.RECORDS not in coordinator.capabilities:
        declared = ", ".join(sorted(c.value for c in coordinator.capabilities)) or "none"
        coordinator.close()
        raise Unavailable(f"{NO_RECORDS}: {url.split(':', 1)[0]}:// declares {declared}")
    return coordinator, coordinator.idempotency(space, lease=TTL, timeout=timeout)


def _result() -> dict[str, str | int]:
    return RESULT


def _must_not_run() -> dict[str, str | int]:
    raise RuntimeError("a replayed key ran its function again")


class TenureReplay:
    """``keys.run(key, fn)`` on a key whose record exists: the function must not run."""

    def __init__(self, url: str, name: str) -> None:
        self._coordinator, self._keys = open_keys(url, f"bench-replay-{name}")
        self._key = os.urandom(8).hex()
        try:
            if self._keys.run(self._key, _result) != RESULT:
                raise RuntimeError("the first run's result did not come back")
            done = self._keys.state(self._key).done
            if done is None or len(done.record) != RECORD_BYTES:
                raise RuntimeError(f"tenure's record is not {RECORD_BYTES} bytes: {done!r}")
        except BaseException:
            self._coordinator.close()
            raise
        STORED_BYTES["tenure"] = RECORD_BYTES

    def acquire(self) -> None:
        self._keys.run(self._key, _must_not_run)

    def release(self) -> None:
        """Nothing: a cycle is one call."""

    def close(self) -> None:
        self._coordinator.close()


class TenureFirst:
    """``keys.run(new_key, fn)`` with a trivial ``fn``: begin the run, run it, record its result."""

    def __init__(self, url: str, name: str) -> None:
        self._coordinator, self._keys = open_keys(url, f"bench-first-{name}")
        self._prefix = os.urandom(8).hex()  # fresh keys for every handle: every call is a first
        self._count = 0

    def acquire(self) -> None:
        self._count += 1
        self._keys.run(f"{self._prefix}-{self._count}", _result)

    def release(self) -> None:
        """Nothing: a cycle is one call."""

    def close(self) -> None:
        self._coordinator.close()


def _raw_value() -> bytes:
    return os.urandom(RECORD_BYTES)


class RawGet:
    """The floor: one read of a stored value of ``RECORD_BYTES`` by its key, nothing else."""

    def __init__(self, read: Callable[[], Any], close: Callable[[], None]) -> None:
        self._read, self._close = read, close
        try:
            found = read()
        except BaseException:
            close()
            raise
        if found is None or len(found) != RECORD_BYTES:
            close()
            raise RuntimeError(f"the raw GET read {found!r}, not {RECORD_BYTES} bytes")

    def acquire(self) -> None:
        self._read()

    def release(self) -> None:
        """Nothing: a cycle is one call."""

    def close(self) -> None:
        self._close()


RAW_TABLE_SQLITE = "CREATE TABLE IF NOT EXISTS bench_raw_get (key TEXT PRIMARY KEY, value BLOB NOT NULL)"


def sqlite_get(ctx: BenchContext, name: str) -> RawGet:
    """A ``SELECT`` of a blob by primary key, on its own connection to tenure's file (WAL)."""
    db = sqlite3.connect(ctx.path("tenure.db"), timeout=TIMEOUT, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(RAW_TABLE_SQLITE + " WITHOUT ROWID")
    db.execute("INSERT OR REPLACE INTO bench_raw_get VALUES (?, ?)", (RAW_KEY, _raw_value()))
    select = "SELECT value FROM bench_raw_get WHERE key = ?"

    def read() -> Any:
        row = db.execute(select, (RAW_KEY,)).fetchone()
        return None if row is None else row[0]

    return RawGet(read, db.close)


def redis_get(ctx: BenchContext, name: str) -> RawGet:
    """``GET key`` with redis-py (on redlock5: on the first master, where the floor runs)."""
    import redis

    client = redis.Redis.from_url(ctx.params["redis_url"])
    client.set(RAW_KEY, _raw_value())
    return RawGet(lambda: client.get(RAW_KEY), client.close)


def postgresql_get(ctx: BenchContext, name: str) -> RawGet:
    """``SELECT value FROM … WHERE key = %s`` (prepared), psycopg 3 in autocommit."""
    import psycopg

    conn = psycopg.connect(ctx.params["pg_url"], autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS bench_raw_get (key text PRIMARY KEY, value bytea NOT NULL)")
    conn.execute(
        "INSERT INTO bench_raw_get VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (RAW_KEY, _raw_value()),
    )
    select = "SELECT value FROM bench_raw_get WHERE key = %s"

    def read() -> Any:
        row = conn.execute(select, (RAW_KEY,), prepare=True).fetchone()
        return None if row is None else row[0]

    return RawGet(read, conn.close)


def mysql_get(ctx: BenchContext, name: str) -> RawGet:
    """``SELECT v FROM … WHERE k = %s`` with PyMySQL (tenure's driver) in autocommit, InnoDB."""
    from benchmarks.suites.mysql import _connect

    conn = _connect(ctx)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS bench_raw_get (k VARCHAR(191) PRIMARY KEY, v BLOB NOT NULL) "
            "ENGINE=InnoDB"
        )
        cur.execute("REPLACE INTO bench_raw_get VALUES (%s, %s)", (RAW_KEY, _raw_value()))

    def read() -> Any:
        with conn.cursor() as cur:
            cur.execute("SELECT v FROM bench_raw_get WHERE k = %s", (RAW_KEY,))
            row = cur.fetchone()
        return None if row is None else row[0]

    return RawGet(read, conn.close)


def etcd_get(ctx: BenchContext, name: str) -> RawGet:
    """A linearizable ``Range`` of one key with the gRPC stubs tenure uses, to the first node."""
    import grpc  # type: ignore[import-untyped]
    from aetcd.rpc import rpc_pb2  # type: ignore[import-untyped]  # the messages tenure uses

    from tenure._sync.backends.etcd import proto

    channel = grpc.insecure_channel(ctx.params["endpoint"])
    kv = proto.KVStub(channel)
    key = RAW_KEY.encode()
    kv.Put(rpc_pb2.PutRequest(key=key, value=_raw_value()), timeout=TIMEOUT)
    request = rpc_pb2.RangeRequest(key=key)

    def read() -> Any:
        reply = kv.Range(request, timeout=TIMEOUT)
        return reply.kvs[0].value if reply.kvs else None

    return RawGet(read, channel.close)


def zookeeper_get(ctx: BenchContext, name: str) -> RawGet:
    """kazoo's ``get(path)`` of a node holding the value, on the first member."""
    from benchmarks.suites.zookeeper3 import CHROOT, _client, _stop

    client = _client(ctx)
    path = f"{CHROOT}/raw-get/{RAW_KEY}"
    client.ensure_path(path)
    client.set(path, _raw_value())
    return RawGet(lambda: client.get(path)[0], lambda: _stop(client))


def powertools_function(
    url: str, prefix: str, execute: Callable[[str], Any]
) -> tuple[Callable[..., Any], Callable[[], None]]:
    """Return ``execute`` made idempotent by Powertools (keyed by ``order["id"]``) and a closer.

    As its documentation sets it up with a client of one's own: ``RedisCachePersistenceLayer
    (client=redis.Redis(..., decode_responses=True))`` (the class ``CachePersistenceLayer``
    names; it warns that it is deprecated), ``idempotent_function(data_keyword_argument=
    "order")`` and ``IdempotencyConfig(event_key_jmespath="id")``, records kept an hour (its
    default). Outside Lambda there is no remaining time, so a run in progress has no expiry of
    its own (only the record's hour) and each call warns about it: that warning is silenced.
    """
    import redis
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
    from aws_lambda_powertools.utilities.idempotency.persistence.redis import RedisCachePersistenceLayer

    warnings.filterwarnings("ignore", message="Couldn't determine the remaining time left")
    # Any: redis-py's types are wider than Powertools' client Protocol, which is what it documents.
    client: Any = redis.Redis.from_url(url, decode_responses=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        layer = RedisCachePersistenceLayer(client=client)

    def order_task(order: dict[str, str]) -> Any:
        return execute(order["id"])

    call = idempotent_function(
        order_task,
        data_keyword_argument="order",
        persistence_store=layer,
        config=IdempotencyConfig(event_key_jmespath="id"),
        key_prefix=prefix,
    )
    return call, client.close


def _powertools_key_bytes(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        key = next(iter(client.scan_iter(match=f"{prefix}#*", count=1000)))
        return len(client.get(key) or b"")
    finally:
        client.close()


class PowertoolsCall:
    """AWS Powertools' ``idempotent_function`` on the suite's Redis: a replayed key or a new one each call."""

    def __init__(self, ctx: BenchContext, name: str, *, replay: bool) -> None:
        url = ctx.params["redis_url"]
        prefix = f"powertools-{name}-{os.urandom(4).hex()}"
        self._replay = replay
        self._call, self._close = powertools_function(url, prefix, self._run)
        self._key = os.urandom(8).hex()
        self._count = 0
        self.ran = 0
        if replay:
            try:
                if self._call(order={"id": self._key}) != RESULT:
                    raise RuntimeError("Powertools' first run did not return the result")
                STORED_BYTES["powertools"] = _powertools_key_bytes(url, prefix)
            except BaseException:
                self._close()
                raise

    def _run(self, key: str) -> Any:
        if self._replay and self.ran:
            raise RuntimeError("a replayed key ran its function again")
        self.ran += 1
        return RESULT

    def acquire(self) -> None:
        if self._replay:
            self._call(order={"id": self._key})
            return
        self._count += 1
        self._call(order={"id": f"{self._key}-{self._count}"})

    def release(self) -> None:
        """Nothing: a cycle is one call."""

    def close(self) -> None:
        self._close()


def powertools_replay(ctx: BenchContext, name: str) -> PowertoolsCall:
    return PowertoolsCall(ctx, name, replay=True)


def powertools_first(ctx: BenchContext, name: str) -> PowertoolsCall:
    return PowertoolsCall(ctx, name, replay=False)
