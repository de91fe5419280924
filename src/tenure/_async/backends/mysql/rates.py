"""The Counters capability (rate limits) of both modes, mixed into their stores.

A decision is one round trip on a pooled connection: ``rate_sql.step`` runs the GCRA step on
the key's ``tenure_rates`` row in one autocommitted INSERT ... ON DUPLICATE KEY UPDATE, by the
server's clock read under the row's lock, and answers in the same round trip. A refusal, or a
peek (cost 0, ``rate_sql.look``), writes nothing. Every ``SWEEP_EVERY``-th decision of a store
also deletes up to ``rate_sql.SWEEP_LIMIT`` rows that expired, in the same round trip.

A pooled connection the server ended (idle limit, restart) fails once and the pool retries on a
fresh one (``AsyncMySQLPool.run``); a failed or interrupted call closes its connection, so a
decision that ran into the limiter's deadline leaves no connection half-read behind.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from tenure._async.backends.mysql import rate_sql
from tenure._async.backends.mysql.connection import AsyncMySQLPool, AsyncSession, Reply
from tenure._core.ratelimit import Rate, RateStep, gcra_step
from tenure._exceptions import BackendError, BackendProtocolError

SWEEP_EVERY = 32  # decisions taking permits per sweep: each can add at most one row
DEADLOCK = 1213  # InnoDB rolled the whole transaction back: nothing of it was done


class AsyncMySQLRates:
    """Rate limits on ``tenure_rates`` (InnoDB, shared by both modes; ``rate_sql``)."""

    _pool: AsyncMySQLPool
    _rate_steps = 0  # decisions taking permits so far (a race between threads only shifts a sweep)

    async def rate_step(self, key: str, rates: Sequence[Rate], cost: int) -> RateStep:
        if cost == 0:
            reply = await self._rate_call(rate_sql.look(len(rates)), rate_sql.key_params(key))
            now, *stored = _row(key, reply, 0, len(rates) + 1)
            standing = tuple(float(tat) for tat in itertools.takewhile(lambda tat: tat is not None, stored))
            return gcra_step(standing, float(now), rates, 0)
        self._rate_steps += 1
        sweep = self._rate_steps % SWEEP_EVERY == 0
        statement = rate_sql.step(len(rates), sweep=sweep)
        reply = await self._rate_call(statement, rate_sql.step_params(key, rates, cost))
        allowed, now, *tats = _row(key, reply, 1, len(rates) + 2)
        return RateStep(bool(allowed), float(now), tuple(float(tat) for tat in tats))

    async def _start_rates(self, session: AsyncSession) -> None:
        """Create the rates table, on ``session``."""
        await self._pool.execute(session, rate_sql.CREATE_RATES, {})

    async def _rate_call(self, statement: str, params: Mapping[str, object]) -> Reply:
        """Run a decision's round trip; once more if InnoDB chose it as a deadlock's victim."""
        for attempt in range(2):
            try:
                session, reply = await self._pool.run(statement, params)
            except BackendError as exc:
                code = getattr(exc.__cause__, "args", (None,))[:1]
                if attempt or code != (DEADLOCK,):
                    raise
                continue
            self._pool.checkin(session)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover


def _row(key: str, reply: Reply, now_at: int, width: int) -> tuple[Any, ...]:
    """Return the reply's one row of ``width`` values, the server's now at ``now_at``."""
    if len(reply.rows) != 1 or len(reply.rows[0]) != width or reply.rows[0][now_at] is None:
        raise BackendProtocolError(f"the rate step of {key!r} came back malformed: {reply.rows!r}")
    return reply.rows[0]
