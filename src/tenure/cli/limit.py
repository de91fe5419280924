"""The ``tenure limit`` command: wait for a permit of a rate limit, then run a child command."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import tenure
from tenure.cli.supervisor import SignalInbox, Supervision

DECISION_DEADLINE = 10.0
"""Longest wait for one answer of the store, connecting included (a command starts cold)."""


def run_limit(args: argparse.Namespace) -> int:
    """Take ``args.cost`` permits of the rate limit ``args.name``, then run ``args.command``.

    Waits until the permits are due, at most ``args.timeout`` seconds, without polling: the
    store says when. Nothing is held while CMD runs (a permit is spent once taken), so CMD only
    gets stop signals passed on, and tenure exits with its code.

    Raises ``ConfigurationError`` for bad input (before any I/O), ``RateLimited`` when the
    permits are not due within the timeout (its message and ``retry_after`` say when they
    are), ``BackendUnavailable`` when the backend cannot be reached and ``Interrupted`` when a
    stop signal came while waiting.
    """
    coordinator = tenure.Coordinator(args.url)
    try:
        limiter = coordinator.rate_limiter(
            args.name,
            rate=args.rate,
            burst=args.burst,
            timeout=args.timeout,
            on_unavailable="deny",  # never run CMD unchecked
            deadline=DECISION_DEADLINE,
        )
        with SignalInbox() as inbox:
            try:
                limiter.acquire(key=args.key, cost=args.cost)
            except tenure.RateLimited as exc:
                raise _told(exc, args) from exc
            coordinator.close()  # nothing to keep while CMD runs
            return Supervision(PermitHold(args.name), args.command, grace=0.0, inbox=inbox).run()
    finally:
        coordinator.close()


def _told(exc: tenure.RateLimited, args: argparse.Namespace) -> tenure.TenureError:
    """Return the error that reports ``exc`` in the command's terms."""
    of_key = f" for key {args.key!r}" if args.key else ""
    if exc.unavailable:
        return tenure.BackendUnavailable(
            f"rate limit {args.name!r}: the backend cannot be reached (or did not answer within "
            f"{DECISION_DEADLINE:g} s); CMD was not run"
        )
    return tenure.RateLimited(
        f"rate limit {args.name!r}{of_key}: no permit within the timeout ({args.timeout:g} s); "
        f"retry after {exc.retry_after:.3f} s",
        exc.retry_after,
    )


class PermitHold:
    """A permit already spent: nothing to renew, lose or give back; CMD gets ``TENURE_LIMIT``."""

    loss_level = "error"
    lost = False

    def __init__(self, name: str) -> None:
        self.name = name

    def check(self) -> None:
        pass

    def on_lost(self, callback: Callable[[], object]) -> None:
        pass  # never called: a spent permit cannot be lost

    def release(self) -> None:
        pass

    def environment(self) -> dict[str, str]:
        return {"TENURE_LIMIT": self.name}

    def loss_fallback(self) -> str:
        return f"rate limit {self.name!r}"  # unreachable: never lost

    def release_warning(self, exc: tenure.BackendError) -> str:
        return f"rate limit {self.name!r}: {exc}"  # unreachable: nothing to release
