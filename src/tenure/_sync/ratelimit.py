# GENERATED from src/tenure/_async/ratelimit.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Rate limiter: GCRA permits per key, decided in one atomic step by the store's clock."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from tenure._concurrency import sleep, within
from tenure._core.deadline import Deadline
from tenure._core.durations import check_timeout
from tenure._core.keys import validate_name
from tenure._core.ratelimit import Rate, RateState, RateStep, check_cost, rate_state
from tenure._exceptions import BackendUnavailable, RateLimited

if TYPE_CHECKING:
    from tenure._sync.backends.base import Counters
    from tenure._sync.context import Context
    from tenure.observability._instruments import Instruments, Key

log = logging.getLogger("tenure")

OnUnavailable = Literal["allow", "deny"]


class _Unset:
    pass


_UNSET = _Unset()


class RateLimiter:
    """A distributed rate limiter: GCRA buckets, one per key, shared through the backend.

    ``try_acquire(key=)`` takes ``cost`` permits if the key's bucket has them (one round trip)
    and returns whether it did; ``acquire(key=, timeout=)`` sleeps exactly until they are due
    (no polling) or raises ``RateLimited`` with the exact ``retry_after`` when that is later
    than the timeout; ``peek(key=)`` tells the bucket's state without taking anything.

    **Guarantees.** Every decision is one atomic step on the store, by the store's clock (a
    client's skewed clock changes nothing where the backend declares SERVER_TIME), so
    concurrent callers of every process never get more than ``rate x time + burst``. A store
    that does not answer within ``deadline`` seconds (unreachable, partitioned, slow) never
    stalls the caller: the limiter answers as ``on_unavailable`` says ("allow" lets the call
    through, "deny" refuses it) and logs the outage once.
    """

    def __init__(
        self,
        context: Context,
        counters: Counters,
        name: str,
        key: str,
        *,
        rates: tuple[Rate, ...],
        timeout: float | None,
        on_unavailable: OnUnavailable,
        deadline: float | None,
    ) -> None:
        self.name = name
        self.key = key
        self.rates = rates
        self.timeout = timeout
        self.on_unavailable = on_unavailable
        self.deadline = deadline
        self._context = context
        self._counters = counters
        self._outage = False  # logged once per outage, not once per call
        self._observed: dict[str, Key] = {}  # decision -> its metric attributes

    def __repr__(self) -> str:
        rates = "; ".join(str(rate) for rate in self.rates)
        return f"<RateLimiter {self.name!r} {rates} on {self._context.url}>"

    def try_acquire(self, *, key: str = "", cost: int = 1) -> bool:
        """Take ``cost`` permits of ``key``'s bucket if it has them now; return whether it did."""
        return (self.decide(key=key, cost=cost)).allowed

    def acquire(
        self, *, key: str = "", cost: int = 1, timeout: float | _Unset | None = _UNSET
    ) -> RateState:
        """Take ``cost`` permits of ``key``'s bucket, sleeping until they are due; return the state.

        Waits at most ``timeout`` seconds (default: the limiter's; ``0`` only tries, ``None``
        waits as long as it takes). Raises ``RateLimited(retry_after)`` at once when the permits
        are due later than the time left: no waiting to fail.
        """
        left = Deadline(self.timeout if isinstance(timeout, _Unset) else check_timeout(timeout))
        while True:
            state = self.decide(key=key, cost=cost)
            if state.allowed:
                return state
            if state.unavailable:
                raise RateLimited(
                    f"rate limiter {self.name!r}: its store {self._context.url} did not answer in time "
                    f"(deadline {self.deadline} s) and on_unavailable is 'deny'",
                    state.retry_after,
                    unavailable=True,
                )
            if state.retry_after > left.remaining():
                raise RateLimited(
                    f"rate limiter {self.name!r}: {cost} permit(s) of key {key!r} are due in "
                    f"{state.retry_after:.3f} s, past the timeout",
                    state.retry_after,
                )
            sleep(state.retry_after)

    def decide(self, *, key: str = "", cost: int = 1) -> RateState:
        """Take ``cost`` permits of ``key``'s bucket if it has them now; return the decision.

        What middleware needs: admitted or not, with the remaining permits and the times for
        the response's headers.
        """
        cost = check_cost(cost, self.rates)
        observer = self._context.observer
        if observer is None:
            state = self._step(self._key_of(key), cost)
            observer = self._context.observer  # the first decision connects
            if observer is None:
                return state
            self._count(observer, state)
            return state
        attributes = lambda: self._span_attributes(observer, key, cost)  # noqa: E731
        span = observer.start_span("tenure.ratelimit.decide", attributes)
        try:
            state = self._step(self._key_of(key), cost)
        except BaseException as exc:
            if span is not None:
                observer.end_span(span, exc)
            raise
        self._count(observer, state)
        if span is not None:
            span.set_attribute("tenure.ratelimit.allowed", state.allowed)
            span.set_attribute("tenure.ratelimit.retry_after", state.retry_after)
            observer.end_span(span)
        return state

    def _count(self, observer: Instruments, state: RateState) -> None:
        """Count one decision: allowed or limited, and whether the store answered."""
        decision = "allowed" if state.allowed else "limited"
        if state.unavailable:
            decision = f"unavailable_{decision}"  # on_unavailable decided: the store did not answer
        key = self._observed.get(decision)
        if key is None:
            key = self._observed[decision] = observer.key(
                self._context.store.scheme, "ratelimit", self.name, ("tenure.ratelimit.decision", decision)
            )
        observer.rate_decisions.add(key)

    def _span_attributes(self, observer: Instruments, key: str, cost: int) -> dict[str, Any]:
        attributes = observer.attributes(observer.key(self._context.store.scheme, "ratelimit", self.name))
        attributes = {**attributes, "tenure.ratelimit.cost": cost}
        return {**attributes, "tenure.ratelimit.key": key} if observer.names else attributes

    def peek(self, *, key: str = "") -> RateState:
        """Return ``key``'s bucket as it stands (``remaining``, ``reset_after``); takes nothing."""
        state = self._step(self._key_of(key), 0)
        return state if state.unavailable else state._replace(allowed=state.remaining >= 1)

    def _key_of(self, key: str) -> str:
        if key == "":
            return self.key
        return f"{self.key}:{validate_name(key, what='rate limit key')}"

    def _step(self, store_key: str, cost: int) -> RateState:
        deadline = self.deadline

        def step_in_store() -> RateStep:
            self._context.ensure_connected()
            return self._counters.rate_step(store_key, self.rates, cost, deadline)

        try:
            if deadline is None or self._context.connected:  # the store keeps the deadline
                step = step_in_store()
            else:  # connecting is bounded by connect_timeout alone: a first call must not stall
                step = within(deadline, step_in_store)
        except (TimeoutError, BackendUnavailable) as exc:  # BackendTimeout is both
            return self._unavailable(exc)
        if self._outage:
            self._outage = False
            log.warning("tenure: rate limiter %r: its store %s answers again", self.name, self._context.url)
        return rate_state(step, self.rates, cost)

    def _unavailable(self, exc: Exception) -> RateState:
        if not self._outage:
            self._outage = True
            log.warning(
                "tenure: rate limiter %r: its store %s did not answer %s (%s: %s); "
                "calls are %s until it does",
                self.name,
                self._context.url,
                "in time" if self.deadline is None else f"within {self.deadline} s",
                type(exc).__name__,
                exc,
                "allowed" if self.on_unavailable == "allow" else "denied",
            )
        allowed = self.on_unavailable == "allow"
        # retry_after is a hint here, not a measurement: a second is what the deadline cannot know.
        return RateState(allowed, 0, 0.0, 0.0 if allowed else 1.0, self.rates[0].burst, unavailable=True)
