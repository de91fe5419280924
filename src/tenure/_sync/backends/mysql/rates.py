# GENERATED from src/tenure/_async/backends/mysql/rates.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The Counters capability (rate limits) of both modes, mixed into their stores.

A decision is one round trip: ``rate_sql.step`` runs the GCRA step on the key's ``tenure_rates``
row in one autocommitted INSERT ... ON DUPLICATE KEY UPDATE, by the server's clock read under
the row's lock, and answers in the same round trip. A refusal, or a peek (cost 0,
``rate_sql.look``), writes nothing. Every ``SWEEP_EVERY``-th decision of a store also deletes
up to ``rate_sql.SWEEP_LIMIT`` rows that expired, in the same round trip.

**Connections.** A decision is a short call of the pool (``MySQLPool.call``): a store's
decisions and other short calls run on at most ``pool_size`` connections at once, and more
callers wait in-process for one to come back (a decision takes well under a millisecond, a new
connection more, and a burst of thousands must not exhaust the server's max_connections). A
pooled connection the server ended (idle limit, restart) fails once and the call is sent again
on a fresh one; a failed or interrupted call closes its connection, so a decision cut by the
limiter's deadline leaves nothing behind. A deadlock's victim is sent once more (nothing of it
was done).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from tenure._sync.backends.mysql import rate_sql
from tenure._sync.backends.mysql.connection import MySQLPool, Session, Reply
from tenure._concurrency import within
from tenure._core.ratelimit import Rate, RateStep, gcra_step
from tenure._exceptions import BackendError, BackendProtocolError

SWEEP_EVERY = 8  # decisions taking permits per sweep: each adds at most one row, a sweep drops 16
DEADLOCK = 1213  # InnoDB rolled the whole transaction back: nothing of it was done
DEADLOCK_RESENDS = 3  # a decision that loses more deadlocks than this fails


class MySQLRates:
    """Rate limits on ``tenure_rates`` (InnoDB, shared by both modes; ``rate_sql``)."""

    _pool: MySQLPool
    _rate_steps = 0  # decisions taking permits so far (a race between threads only shifts a sweep)

    def rate_step(
        self, key: str, rates: Sequence[Rate], cost: int, deadline: float | None = None
    ) -> RateStep:
        def step() -> RateStep:  # the drivers have no per-call timeout of their own: bound it
            return self._rate_step(key, rates, cost)

        if deadline is None:
            return step()
        return within(deadline, step)

    def _rate_step(self, key: str, rates: Sequence[Rate], cost: int) -> RateStep:
        if cost == 0:
            reply = self._decide(rate_sql.look(len(rates)), rate_sql.key_params(key))
            now, *stored = _row(key, reply, 0, len(rates) + 1)
            standing = tuple(float(tat) for tat in itertools.takewhile(lambda tat: tat is not None, stored))
            return gcra_step(standing, float(now), rates, 0)
        self._rate_steps += 1
        sweep = self._rate_steps % SWEEP_EVERY == 0
        statement = rate_sql.step(len(rates), sweep=sweep)
        reply = self._decide(statement, rate_sql.step_params(key, rates, cost))
        allowed, now, *tats = _row(key, reply, 1, len(rates) + 2)
        return RateStep(bool(allowed), float(now), tuple(float(tat) for tat in tats))

    def _decide(self, statement: str, params: Mapping[str, object]) -> Reply:
        """Return the reply of one round trip on a pooled connection; a deadlock's victim is sent again.

        InnoDB rolls the victim back whole, so sending it again is safe; concurrent upserts of
        one hot key can lose more than once in a row on a loaded host.
        """
        for _ in range(DEADLOCK_RESENDS):
            try:
                return self._pool.call(statement, params)
            except BackendError as exc:
                if getattr(exc.__cause__, "args", (None,))[:1] != (DEADLOCK,):
                    raise
        return self._pool.call(statement, params)

    def _start_rates(self, session: Session) -> None:
        """Create the rates table, on ``session``."""
        self._pool.execute(session, rate_sql.CREATE_RATES, {})


def _row(key: str, reply: Reply, now_at: int, width: int) -> tuple[Any, ...]:
    """Return the reply's one row of ``width`` values, the server's now at ``now_at``."""
    if len(reply.rows) != 1 or len(reply.rows[0]) != width or reply.rows[0][now_at] is None:
        raise BackendProtocolError(f"the rate step of {key!r} came back malformed: {reply.rows!r}")
    return reply.rows[0]
