# GENERATED from src/tenure/_async/backends/mysql/rates.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The Counters capability (rate limits) of both modes, mixed into their stores.

A decision is one round trip: ``rate_sql.step`` runs the GCRA step on the key's ``tenure_rates``
row in one autocommitted INSERT ... ON DUPLICATE KEY UPDATE, by the server's clock read under
the row's lock, and answers in the same round trip. A refusal, or a peek (cost 0,
``rate_sql.look``), writes nothing. Every ``SWEEP_EVERY``-th decision of a store also deletes
up to ``rate_sql.SWEEP_LIMIT`` rows that expired, in the same round trip.

**Lanes.** A store's decisions run on at most ``RATE_LANES`` pooled connections at once; more
callers queue in-process on the least busy one (a decision takes well under a millisecond, a
new connection more, and a burst of thousands must not exhaust the server's max_connections).
A lane goes back to the pool once nobody uses it. A connection the server ended (idle limit,
restart) fails once and the decision is sent again on a fresh one; a failed or interrupted
call closes its connection, so a decision cut by the limiter's deadline leaves nothing behind.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from tenure._sync.backends.mysql import rate_sql
from tenure._sync.backends.mysql.connection import MySQLPool, Session, Reply, connection_lost
from tenure._concurrency import Mutex
from tenure._core.ratelimit import Rate, RateStep, gcra_step
from tenure._exceptions import BackendError, BackendProtocolError, BackendUnavailable

SWEEP_EVERY = 8  # decisions taking permits per sweep: each adds at most one row, a sweep drops 16
RATE_LANES = 8  # connections a store's decisions use at once, at most
LANE_QUEUE = 4  # callers on the least busy lane before another lane is opened
DEADLOCK = 1213  # InnoDB rolled the whole transaction back: nothing of it was done


class RateLanes:
    """Run decisions on at most RATE_LANES pooled connections, one call at a time on each."""

    def __init__(self, pool: MySQLPool) -> None:
        self._pool = pool
        self._lanes: list[Session] = []
        self._picking = Mutex()

    def run(self, statement: str, params: Mapping[str, object]) -> Reply:
        """Return the reply of one round trip on a lane.

        Sent once more if its connection was gone or InnoDB chose it as a deadlock's victim
        (either way nothing of it was done).
        """
        failed = False
        for _ in range(RATE_LANES + 2):  # a lane found dead is dropped and another picked
            lane = self._pick(fresh=failed)
            try:
                with lane.mutex:
                    if not lane.alive:
                        continue  # its previous call failed and closed it
                    try:
                        return self._pool.execute(lane, statement, params)
                    except BackendError as exc:
                        if failed or not _retryable(exc):
                            raise
                        failed = True
            finally:
                self._done(lane)
        raise BackendUnavailable(f"no live connection to {self._pool.url} for a rate decision")

    def _pick(self, *, fresh: bool) -> Session:
        """Return the least busy lane, or a new one (``fresh``: a new connection, not a pooled one)."""
        with self._picking:
            self._lanes = [lane for lane in self._lanes if lane.alive]
            lane = min(self._lanes, key=lambda lane: lane.users, default=None)
            if fresh or lane is None or (lane.users >= LANE_QUEUE and len(self._lanes) < RATE_LANES):
                lane = (self._pool.open() if fresh else self._pool.checkout())
                self._lanes.append(lane)
            lane.users += 1
            return lane

    def _done(self, lane: Session) -> None:
        """Count the caller off ``lane``; the last one gives it back to the pool."""
        with self._picking:
            lane.users -= 1
            if lane.users == 0 and lane in self._lanes:
                self._lanes.remove(lane)
                if lane.alive:
                    self._pool.checkin(lane)


class MySQLRates:
    """Rate limits on ``tenure_rates`` (InnoDB, shared by both modes; ``rate_sql``)."""

    _pool: MySQLPool
    _rate_lanes: RateLanes  # made by the store with its pool
    _rate_steps = 0  # decisions taking permits so far (a race between threads only shifts a sweep)

    def rate_step(self, key: str, rates: Sequence[Rate], cost: int) -> RateStep:
        if cost == 0:
            reply = self._rate_lanes.run(rate_sql.look(len(rates)), rate_sql.key_params(key))
            now, *stored = _row(key, reply, 0, len(rates) + 1)
            standing = tuple(float(tat) for tat in itertools.takewhile(lambda tat: tat is not None, stored))
            return gcra_step(standing, float(now), rates, 0)
        self._rate_steps += 1
        sweep = self._rate_steps % SWEEP_EVERY == 0
        statement = rate_sql.step(len(rates), sweep=sweep)
        reply = self._rate_lanes.run(statement, rate_sql.step_params(key, rates, cost))
        allowed, now, *tats = _row(key, reply, 1, len(rates) + 2)
        return RateStep(bool(allowed), float(now), tuple(float(tat) for tat in tats))

    def _start_rates(self, session: Session) -> None:
        """Create the rates table, on ``session``."""
        self._pool.execute(session, rate_sql.CREATE_RATES, {})


def _retryable(exc: BaseException) -> bool:
    """Return whether nothing of the failed round trip was done and sending it again may work."""
    if connection_lost(exc):
        return True
    return getattr(exc.__cause__, "args", (None,))[:1] == (DEADLOCK,)


def _row(key: str, reply: Reply, now_at: int, width: int) -> tuple[Any, ...]:
    """Return the reply's one row of ``width`` values, the server's now at ``now_at``."""
    if len(reply.rows) != 1 or len(reply.rows[0]) != width or reply.rows[0][now_at] is None:
        raise BackendProtocolError(f"the rate step of {key!r} came back malformed: {reply.rows!r}")
    return reply.rows[0]
