"""Idempotency records on ZooKeeper: a run is a lock's line node, its record a node beside the line.

A run of key K is an ordinary lock on K: an ephemeral sequential node in K's line directory,
first in line = held, fence = its czxid (``line.py``). The record a finished run leaves is the
persistent node ``<dir>/record`` in that directory (a name without a sequence, so never in
line), holding the fence, the ttl (ms) and the record, a line each; it lives until its
``mtime`` + ttl by the ensemble leader's clock.

- ``finish_run`` is one multi: delete the run's node (which fails, and with it the whole multi,
  if the lease was taken over or ended with its session), write the record, and file it in
  the expiry index. Deleting the node wakes the waiters watching it, as ``release`` does.
- ``begin_run`` first reads the record alone: a live one is returned at once (a replay is one
  read, which the member serves without the leader; nothing is created, so nothing is deleted).
  "Live" is judged by the ensemble's clock as last read (a write's stamp, advanced by our
  monotonic clock) with a margin; a record near its end, or a store that has not read the
  ensemble's clock yet, takes the path below, which judges by the exact time.
- Else the lock's own try (create our node, list the line) with a read of the record sent
  right after the listing, in one round trip. A record can only be written by a multi that
  deletes a node of the line; a node first in a listing has no node before it, and none can
  come back (sequences only grow), so a record written before our node was first is in the
  read, and none can be written while it stays first. A live record is returned (our node
  deleted); an expired one counts as none. After a take-over (more listings) the record is
  read again, after the last one. This read, not the first, is what exactly-once rests on.

**Expiry.** ZooKeeper deletes no persistent node by itself (TTL nodes need a server option), so
``finish_run`` files each record as ``<index>/<bucket>/<fence>-<key node>``, the bucket being
the ~10 s window its record expires in, and deletes a few expired records of the oldest due
bucket each time (with the key's directory when it is empty). An index entry is created once
(a fence never repeats) and deleted in the same multi as its record, with the record's
version: a record rewritten or deleted meanwhile is never deleted by a cleaner that read an
older one. Fences are czxids, one ensemble-wide counter, so nothing per key must outlive it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kazoo import exceptions as zk_errors  # type: ignore[import-untyped]

from tenure._async.backends.base import Recorded
from tenure._async.backends.zookeeper.line import AsyncLines
from tenure._async.backends.zookeeper.session import AsyncZooKeeperSession, CallInterrupted
from tenure._core.tokens import Owner
from tenure._exceptions import BackendError, BackendProtocolError

log = logging.getLogger("tenure")

# The largest record kept: a multi (record + paths) and a read must stay under jute.maxbuffer's
# default of 1 MiB, the size past which a member drops the connection; 64 KiB are left for paths.
RECORD_LIMIT = 960 * 1024
RECORD = "record"  # the record's node in a key's line directory: no "-<digits>", never in line
INDEX = "#records"  # under the chroot: a key's node escapes '#', so no lock's directory meets it
BUCKET_MS = 10_000  # width of an expiry bucket of the index
SLACK_MS = 1_000  # a record is filed a bucket late enough that it has expired when cleaned
CLEANS_PER_FINISH = 8  # more than one record is filed per finish: the index shrinks
RELIST_AFTER = 60.0  # seconds between listings of the buckets (other processes' buckets)
FINISH_TRIES = 4
# A replay judges a record live by an estimate of the ensemble's clock (see begin_run): only if
# it lives this long past the estimate, plus CLOCK_DRIFT ms per second since the estimate's stamp.
CLOCK_MARGIN_MS = 1_000
CLOCK_DRIFT = 1.0  # ms per s: 0.1%, far beyond a clock's drift, and NTP slews at most 0.05%
GONE = (zk_errors.NoNodeError, zk_errors.NodeExistsError)
Op = tuple[str, str, Any]  # a transaction's method, its path and its data or version


class AsyncZooKeeperRecords:
    """The record steps of one store, on its session and its lines."""

    def __init__(self, zk: AsyncZooKeeperSession, lines: AsyncLines, root: str, op_timeout: float) -> None:
        self._zk, self._lines, self._op_timeout = zk, lines, op_timeout
        self._root, self._index = root, f"{root}/{INDEX}"
        self._buckets: set[int] = set()  # buckets known to exist (ours, and the last listing's)
        self._listed_at = float("-inf")
        self._index_made = False
        # The ensemble's clock (ms) as last read, and our monotonic clock then: a finish files
        # its record by an estimate of when the ensemble will judge it expired, and a replay
        # judges a record live by it (None: not read yet, the first begin_run does).
        self._clock: tuple[int, float] | None = None
        # (key, token) -> whether begin_run found a record node (finish_run rewrites it then).
        self._seen: dict[tuple[str, str], bool] = {}

    async def begin_run(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        path = f"{self._lines.dir(key)}/{RECORD}"
        if self._clock is not None:
            # A replay: one read, no write. A miss costs first executions this read.
            got = await self._zk.get(path, "reading the record")
            found = self._surely_live(key, got)
            if found is not None:
                return found
        node, now_ms, listed, pending = await self._lines.create(
            key, owner, ttl, also=lambda client: client.get_async(path)
        )
        self._clock = (now_ms, time.monotonic())
        fence = await self._lines.first_or_take_over(key, node, now_ms, listed, plain=True)
        # The read sent with the create comes after a listing that held our node: it is the
        # record as of our node's turn, unless a take-over needed listings after it.
        trusted = listed is not None and node.name in listed and (fence is None or listed[0] == node.name)
        got = None
        if pending is not None and trusted:
            try:
                deadline = time.monotonic() + self._op_timeout
                got = await self._zk.result(pending, deadline, "reading the record")
            except zk_errors.NoNodeError:
                got = None
            except CallInterrupted:
                trusted = False
        if not trusted:
            got = await self._zk.get(path, "reading the record")
        found = self._live(key, got, now_ms)
        if found is not None or fence is None:
            # A record, or another run holds the key: leave no node behind (it wakes waiters).
            await self._lines.delete(f"{self._lines.dir(key)}/{node.name}")
            self._lines.nodes.pop((key, owner.token), None)
            return found
        if len(self._seen) >= 4096:  # stay bounded: a run forgotten here only leaves its directory
            del self._seen[next(iter(self._seen))]
        self._seen[(key, owner.token)] = got is not None
        return fence

    async def end_failed_run(self, key: str, owner: Owner) -> None:
        """After ``release`` gave a run's key up: delete the key's directory if nothing is in it.

        A failed run leaves no record, so no index entry would ever delete its directory; a
        directory that holds a node (a record, another run) is not deleted.
        """
        if self._seen.pop((key, owner.token), None) is not None:
            await self._lines.delete(self._lines.dir(key))

    async def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        node = self._lines.nodes.pop((key, owner.token), None)
        exists = self._seen.pop((key, owner.token), False)
        if node is None or not node.held:
            return False
        directory = self._lines.dir(key)
        path = f"{directory}/{RECORD}"
        data = b"%d\n%d\n" % (node.fence, round(ttl * 1000)) + record
        bucket = self._bucket(ttl)
        entry = f"{self._index}/{bucket}/{node.fence}-{directory.rpartition('/')[2]}"
        await self._make_bucket(bucket)
        for _ in range(FINISH_TRIES):
            ops = [_delete(f"{directory}/{node.name}"), _write(path, data, exists), _create(entry)]
            ops.append(_stamp(f"{self._index}/{bucket}"))
            results = await self._zk.call(_multi(ops), "recording the run")
            failed = _first_failure(results)
            if failed is None:
                now_ms = int(results[-1].mtime)
                self._clock = (now_ms, time.monotonic())
                await self._clean_some(now_ms)
                return True
            index, error = failed
            if index == 0 and isinstance(error, zk_errors.NoNodeError):
                # Our node is gone: taken over, ended with its session, or this very multi was
                # applied before its reply was lost and then sent again (the record says).
                return await self._recorded_by(path, node.fence)
            if index == 1 and isinstance(error, GONE):
                exists = not exists  # created or deleted (expired, by a cleaner) since our read
            elif index in (2, 3) and isinstance(error, zk_errors.NoNodeError):
                self._buckets.discard(bucket)  # deleted by a cleaner whose clock ran ahead
                await self._make_bucket(bucket)
            else:
                raise self._zk.mapped(error, f"recording {key!r}")
        raise BackendProtocolError(f"recording {key!r} failed {FINISH_TRIES} times over; try again")

    async def read_record(self, key: str) -> Recorded | None:
        await self._make_index()
        # A write returns the ensemble's time; the read after it sees at least that state.
        stamp = await self._zk.call(lambda c: c.set_async(self._index, b""), "reading the server time")
        got = await self._zk.get(f"{self._lines.dir(key)}/{RECORD}", "reading the record")
        if stamp is None:
            return None
        self._clock = (int(stamp.mtime), time.monotonic())
        return self._live(key, got, int(stamp.mtime))

    # -- internals -------------------------------------------------------------------------------

    def _surely_live(self, key: str, got: tuple[bytes, Any] | None) -> Recorded | None:
        """Return the record read if it outlives the ensemble's estimated time by a margin.

        The estimate (the last stamp read, plus our monotonic clock since) runs late by at most
        the stamp's trip back and the drift between the two clocks: the margin covers both.
        """
        if got is None or self._clock is None:
            return None
        server_ms, then = self._clock
        age = time.monotonic() - then
        found = self._live(key, got, int(server_ms + age * 1000))
        margin = (CLOCK_MARGIN_MS + age * CLOCK_DRIFT) / 1000
        live = found is not None and found.remaining is not None and found.remaining > margin
        return found if live else None

    def _live(self, key: str, got: tuple[bytes, Any] | None, now_ms: int) -> Recorded | None:
        if got is None:
            return None
        data, stat = got
        parsed = _parse(data)
        if parsed is None:
            raise BackendProtocolError(f"the record of {key!r} is not one tenure wrote: {data[:40]!r}")
        fence, ttl_ms, record = parsed
        remaining_ms = int(stat.mtime) + ttl_ms - now_ms
        return Recorded(record, fence, remaining_ms / 1000) if remaining_ms > 0 else None

    async def _recorded_by(self, path: str, fence: int) -> bool:
        got = await self._zk.get(path, "reading the record")
        parsed = None if got is None else _parse(got[0])
        return parsed is not None and parsed[0] == fence

    def _bucket(self, ttl: float) -> int:
        """Return the bucket whose end comes after the record's expiry (by the ensemble's clock)."""
        if self._clock is None:
            now_ms = time.time() * 1000
        else:
            server_ms, then = self._clock
            now_ms = server_ms + (time.monotonic() - then) * 1000
        return int((now_ms + ttl * 1000 + SLACK_MS) // BUCKET_MS) + 1

    async def _make_index(self) -> None:
        if not self._index_made:
            await self._zk.call(lambda c: c.ensure_path_async(self._index), "making the record index")
            self._index_made = True

    async def _make_bucket(self, bucket: int) -> None:
        if bucket not in self._buckets:
            bucket_path = f"{self._index}/{bucket}"
            await self._zk.call(lambda c: c.ensure_path_async(bucket_path), "making a record bucket")
            self._index_made = True
            self._buckets.add(bucket)

    async def _clean_some(self, now_ms: int) -> None:
        """Delete a few expired records of the oldest due bucket; never fail the finish for it."""
        try:
            await self._clean(now_ms)
        except BackendError as exc:
            log.debug("tenure: deleting expired records failed (%s); a later finish will", exc)

    async def _clean(self, now_ms: int) -> None:
        if time.monotonic() - self._listed_at >= RELIST_AFTER:
            names = await self._zk.call(lambda c: c.get_children_async(self._index), "listing record buckets")
            self._buckets = {int(name) for name in names or () if name.isdigit()}
            self._listed_at = time.monotonic()
        due = [bucket for bucket in self._buckets if bucket * BUCKET_MS <= now_ms]
        if not due:
            return
        bucket = min(due)
        bucket_path = f"{self._index}/{bucket}"
        entries = await self._zk.call(lambda c: c.get_children_async(bucket_path), "listing a record bucket")
        batch = sorted(entries or ())[:CLEANS_PER_FINISH]
        paths = [f"{self._root}/{name.partition('-')[2]}/{RECORD}" for name in batch]
        records = await self._each([lambda c, p=p: c.get_async(p) for p in paths])
        plans: list[list[Op]] = []
        for name, path, got in zip(batch, paths, records, strict=True):
            entry = f"{bucket_path}/{name}"
            parsed = None if got is None else _parse(got[0])
            if got is None or parsed is None or str(parsed[0]) != name.partition("-")[0]:
                plans.append([_delete(entry)])  # its record is gone, or a later run's
            elif int(got[1].mtime) + parsed[1] <= now_ms:
                # The record, at the version read (so never a newer one), with its entry and,
                # if no run of the key is on, the key's directory.
                directory = path.rpartition("/")[0]
                plans.append([_delete(path, got[1].version), _delete(entry), _delete(directory)])
            # else: filed early (a clock changed); a later finish finds it expired
        cleaned = 0
        retries: list[list[Op]] = []
        for ops, results in zip(plans, await self._each([_multi(ops) for ops in plans]), strict=True):
            failed = (-1, None) if results is None else _first_failure(results)
            if failed is None:
                cleaned += 1
            elif failed[0] == 2 and isinstance(failed[1], zk_errors.NotEmptyError):
                retries.append(ops[:2])  # a new run of the key is on: its directory stays
            # else: cleaned or rewritten meanwhile by another process
        for results in await self._each([_multi(ops) for ops in retries]):
            cleaned += results is not None and _first_failure(results) is None
        if entries is None or cleaned == len(entries):
            # Emptied (a finish never files into a due bucket, unless a clock jumped: it makes
            # the bucket again if it finds it gone).
            await self._zk.call(lambda c: c.delete_async(bucket_path), "deleting a record bucket")
            self._buckets.discard(bucket)

    async def _each(self, calls: list[Any]) -> list[Any]:
        """Send every call at once, then wait for each: its value, or None for a node gone."""
        client = self._zk.live_client()
        sent = [call(client) for call in calls]
        deadline = time.monotonic() + self._op_timeout
        results = []
        for result in sent:
            try:
                results.append(await self._zk.result(result, deadline, "deleting expired records"))
            except (zk_errors.NoNodeError, zk_errors.BadVersionError, zk_errors.NotEmptyError):
                results.append(None)
            except CallInterrupted as exc:
                raise self._zk.mapped(exc.__cause__, "deleting expired records") from exc.__cause__
        return results


def _parse(data: bytes) -> tuple[int, int, bytes] | None:
    """Return a record node's fence, ttl (ms) and record, or None if tenure did not write it."""
    fence, _, rest = data.partition(b"\n")
    ttl_ms, _, record = rest.partition(b"\n")
    return (int(fence), int(ttl_ms), record) if fence.isdigit() and ttl_ms.isdigit() else None


def _delete(path: str, version: int = -1) -> Op:
    return ("delete", path, version)


def _write(path: str, data: bytes, exists: bool) -> Op:
    return ("set_data" if exists else "create", path, data)


def _create(path: str) -> Op:
    return ("create", path, b"")


def _stamp(path: str) -> Op:
    """Rewrite a node: its stat in the reply carries the ensemble's time of the multi."""
    return ("set_data", path, b"")


def _multi(ops: list[Op]) -> Any:
    """Return a call that sends ``ops`` in one multi (a kazoo transaction)."""

    def commit(client: Any) -> Any:
        transaction = client.transaction()
        for kind, path, arg in ops:
            getattr(transaction, kind)(path, arg)
        return transaction.commit_async()

    return commit


def _first_failure(results: list[Any]) -> tuple[int, BaseException] | None:
    """Return the op that failed a multi and its error (the others report a rollback), or None."""
    for index, result in enumerate(results):
        if isinstance(result, Exception) and not isinstance(
            result, (zk_errors.RolledBackError, zk_errors.RuntimeInconsistency)
        ):
            return index, result
    return None
