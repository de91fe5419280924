# GENERATED from src/tenure/_async/backends/base.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The seam between primitives and backends, in one place.

``LeaseStore`` is what every backend implements: atomic steps on the server, each with its
contract below. Optional capabilities are small Protocols (``Queueing``), checked when a
primitive is built, never base-class methods that raise.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, NamedTuple, Protocol, TypeVar, runtime_checkable

from tenure._concurrency import sleep
from tenure._config import BackendConfig
from tenure._core.guarantees import Capability, Guarantee
from tenure._core.holder import HolderInfo
from tenure._core.idempotency import Recorded as Recorded  # the stores' steps return it
from tenure._core.ratelimit import Rate as Rate
from tenure._core.ratelimit import RateStep as RateStep
from tenure._core.tokens import Owner

T = TypeVar("T")

StateChange = Callable[[bytes | None, float], tuple[bytes | None, T]]
"""What ``update_state`` runs: (the stored bytes or None, the store's now in seconds) -> (the
bytes to store, or None to leave the stored ones; what to return). Pure and fast: it may run
more than once."""


class Renewal(NamedTuple):
    """One lease to renew in a batch: what ``renew`` takes."""

    key: str
    owner: Owner
    ttl: float


RenewOutcome = bool | Exception
"""True renewed, False refused (expired or taken over), or why this renewal could not be done
(a ``BackendError``; anything else is a bug, which the renewer logs)."""


class LeaseStore(abc.ABC):
    """Hold leases on keys: each method is one atomic step on the server.

    Waiting, deadlines, backoff, renewal, reentrancy and loss detection belong to the
    primitives, not here. Constructing a store does no I/O; ``connect()`` does, and fails with
    ``BackendUnavailable`` within ``connect_timeout`` when the server cannot be reached.
    """

    scheme: ClassVar[str]
    description: ClassVar[str]
    guarantees: ClassVar[frozenset[Guarantee]]
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    poll_interval: ClassVar[tuple[float, float]]
    """First and longest pause between acquisition attempts while no release wakes the waiter."""
    plain_waiters_queue: ClassVar[bool] = False
    """Whether a plain (``fair=False``) lock's blocking acquire waits in the QUEUEING line too.

    For a backend whose line is cheaper than retries after each release (one waiter woken, not
    a herd of attempts); a plain lock then promises no order, but gets one.
    """

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    @property
    def url(self) -> str:
        """Return the backend URL with its password redacted."""
        return self.config.url.redacted

    @abc.abstractmethod
    def connect(self) -> None:
        """Open connections and create what the backend needs; idempotent."""

    @abc.abstractmethod
    def try_acquire(self, key: str, owner: Owner, ttl: float) -> int | None:
        """Take ``key`` for ``owner`` if it is free or expired; return the new fence, else None.

        The fence is bumped in the same atomic step, so it grows with every acquisition.
        """

    def renew(self, key: str, owner: Owner, ttl: float) -> bool:
        """Set the lease of ``key`` to expire ``ttl`` seconds from now if ``owner`` still holds it."""
        outcome = (self.renew_many([Renewal(key, owner, ttl)]))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @abc.abstractmethod
    def renew_many(self, renewals: Sequence[Renewal]) -> list[RenewOutcome]:
        """Renew each lease as ``renew`` says; return each one's outcome, in order.

        The renewer hands over every lease that is due at once, so a backend renews them in one
        round trip per connection where it can (a script over many keys, one statement over many
        rows); an error that fails a whole round trip is each of its leases' outcome.
        """

    @abc.abstractmethod
    def release(self, key: str, owner: Owner) -> bool:
        """Free ``key`` if ``owner`` holds it and wake its waiters; return whether it was held."""

    @abc.abstractmethod
    def holder(self, key: str) -> HolderInfo | None:
        """Return who holds ``key`` now, or None if nobody does."""

    @abc.abstractmethod
    def wait_released(self, key: str, timeout: float) -> None:
        """Return when ``key`` may have been released, or after ``timeout`` seconds.

        Only a hint: the caller tries again and the lease record decides.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Close connections; idempotent."""

    def watch(self, key: str) -> ChangeFeed:
        """Return a feed that wakes its reader when the holder of ``key`` may have changed.

        Backends with notifications (watches, pub/sub, LISTEN/NOTIFY) override this so that an
        observer learns of a change as it happens; this default polls.
        """
        return ChangeFeed(self.poll_interval[1])

    def announce(self, key: str) -> None:
        """Tell ``key``'s observers that its holder changed, if the lock steps do not already.

        Elections call it after a campaign is won and after a resignation: rare events, so a
        backend whose lock steps send no notification (to stay fast) can send one here.
        """
        return None  # most backends notify from the lock steps themselves, or not at all


@runtime_checkable
class Queueing(Protocol):
    """The Queueing capability: FIFO waiting, for stores that declare ``Capability.QUEUEING``.

    A lock built with ``fair=True`` (and, where ``plain_waiters_queue`` is set, a plain lock's
    blocking acquire) waits through these steps; a store without them is refused when the lock
    is built, with ``BackendIncapable``.
    """

    def try_acquire_queued(
        self, key: str, owner: Owner, ttl: float, *, patience: float, will_wait: bool = True
    ) -> int | None:
        """Join or stay in ``key``'s queue; take the lock only when free and first in line.

        The queue entry dies unless this is called again within ``patience`` seconds, so a
        waiter that crashed does not block the line for long. ``will_wait`` is False for a single
        attempt, which leaves the line if not served at once: a backend that may join its line
        without trying first (a wait that returns at once when the lock is free) must try then.
        """
        ...

    def wait_turn(self, key: str, owner: Owner, timeout: float) -> int | None:
        """Wait up to ``timeout`` for ``owner``'s turn; return the fence if the lock was handed over."""
        ...

    def leave_queue(self, key: str, owner: Owner) -> None:
        """Leave ``key``'s queue; pass the lock on if it was handed over meanwhile."""
        ...


class Permit(NamedTuple):
    """A permit a semaphore was granted: a lease on ``key`` (a slot), with the name's fence."""

    key: str
    """The slot's key (``permit_key``): renewed and released as a lock on that key."""
    fence: int


@runtime_checkable
class Counting(Protocol):
    """The Counting capability: semaphores, for stores that declare ``Capability.COUNTING``.

    A semaphore's permits are leases on its slot keys (``tenure._core.semaphore.permit_key``),
    renewed, released and lost through the lock steps; these steps only take and watch them.
    """

    def try_acquire_permit(self, key: str, limit: int, owner: Owner, ttl: float) -> Permit | None:
        """Take a free or expired slot of semaphore ``key`` for ``owner``; None if all ``limit`` are held.

        One atomic step where the backend allows (else the slots are tried one by one, each
        atomic, in ``slot_order``): the slot's lease is set as ``try_acquire`` would, and its
        fence grows per name, across slots. Raises ``ConfigurationError`` (``limit_mismatch``)
        when live permits of ``key`` were taken with another limit.
        """
        ...

    def wait_permit_released(self, key: str, limit: int, timeout: float) -> None:
        """Return when a permit of ``key`` held now may have been released, or after ``timeout`` s.

        Only a hint, as ``wait_released``: the caller looks again and the slots decide. Callers
        wait both when every slot is held (a semaphore's waiter) and when only some are (a
        read-write lock's writer waiting for readers to leave): a free slot is no reason to
        return at once, only the release of a held one (or none being held) is.
        """
        ...

    def permit_holders(self, key: str, limit: int) -> list[HolderInfo]:
        """Return the live permits of ``key``.

        Linearizable with ``try_acquire_permit``: once a permit with some fence was granted,
        every live permit with a lower fence is listed (a sequence's turn relies on it, and a
        store whose fences are drawn before its step commits must wait for those steps).
        """
        ...


@runtime_checkable
class Records(Protocol):
    """The Records capability: idempotency keys, for stores that declare ``Capability.RECORDS``.

    A run of an idempotency key is a lease on the key (renewed, released and lost through the
    lock steps; ``release`` gives a failed run's key up); these steps tie the lease to the
    record the run leaves, so a key runs once while its record lives.
    """

    record_limit: int
    """The largest record, in bytes, that this store keeps."""

    def begin_run(self, key: str, owner: Owner, ttl: float) -> Recorded | int | None:
        """Return ``key``'s record if it has a live one; else take its lease, as ``try_acquire``.

        One atomic step: the record if there is one, else the new fence if the lease was free
        or expired, else None (another run holds it).
        """
        ...

    def finish_run(self, key: str, owner: Owner, record: bytes, ttl: float) -> bool:
        """Store ``record`` for ``ttl`` seconds and end ``owner``'s lease on ``key``, in one step.

        Only while ``owner`` still holds the lease (else nothing is stored and it returns False:
        a run paused past its lease cannot overwrite a newer run's record). The lease's waiters
        are woken as ``release`` wakes them; the record keeps the run's fence.
        """
        ...

    def read_record(self, key: str) -> Recorded | None:
        """Return ``key``'s live record, or None (for ``tenure inspect``)."""
        ...


@runtime_checkable
class Counters(Protocol):
    """The Counters capability: rate limits and shared breakers (``Capability.COUNTERS``).

    One GCRA step (``tenure._core.ratelimit``) per decision, atomic and by the store's clock;
    and one generic read-modify-write of a small state (a shared circuit breaker's record).
    """

    def rate_step(
        self, key: str, rates: Sequence[Rate], cost: int, deadline: float | None = None
    ) -> RateStep:
        """Run ``gcra_step`` on ``key``'s stored TATs at the store's now, as one atomic step.

        When it admits ``cost`` > 0 permits, store the new TATs (the key may expire at their
        latest); else change nothing. ``cost`` 0 only looks. Keys are any text of up to
        ``MAX_NAME_BYTES`` * 2 + a few bytes, hashed by the store if it keeps shorter keys.
        Answer within ``deadline`` seconds of a connected store or raise TimeoutError (None:
        the backend's op_timeout); a step given up on may still take its permits.
        """
        ...

    def update_state(self, key: str, change: StateChange[T], ttl: float) -> T:
        """Run ``change`` on ``key``'s stored bytes at the store's now, as one atomic step.

        Reads the bytes (None if there are none or they expired) and the store's clock in
        seconds, calls ``change(current, now)``, stores the bytes it returns for ``ttl`` seconds
        (None: leaves the value and its expiry as they are) and returns its second item. No
        other update of ``key`` comes between the read and the write; a store that checks
        optimistically (Redis) calls ``change`` again on the newer value, a bounded number of
        times. Keys are as ``rate_step``'s; values are small (a breaker's record: under 1 KB).
        """
        ...


class SQLStep(NamedTuple):
    """One statement a caller's own connection runs to record a run in its transaction."""

    sql: str
    params: Sequence[object] | Mapping[str, object]
    proves_hold: bool = False
    """The statement returns a row only while the run still holds its key: none means lost."""


@runtime_checkable
class RecordsInTransaction(Protocol):
    """The caller's-transaction option of the SQL stores (Stripe's design).

    A run's record is written by the caller's own connection to the same database, inside its
    open transaction, so the caller's writes and the record commit together or not at all.
    """

    transaction_drivers: str
    """Whose DB-API connections these statements suit (their parameter style), for messages."""

    def record_steps(self, key: str, owner: Owner, fence: int, record: bytes, ttl: float) -> list[SQLStep]:
        """Return the statements that store ``record`` if ``owner`` still holds ``key``."""
        ...

    def end_after_commit(self, key: str, owner: Owner) -> bool:
        """End the run's lease once the caller's transaction committed its record."""
        ...


class ChangeFeed:
    """Wake an observer when a key's holder may have changed: only a hint, the caller re-reads.

    Opened before the observer's first read, so no change after that read is missed. This
    base feed has no notifications and just pauses for at most ``poll`` seconds.
    """

    def __init__(self, poll: float) -> None:
        self._poll = poll

    def wait(self, timeout: float) -> None:
        """Return when the holder may have changed, or after ``timeout`` seconds."""
        sleep(max(0.0, min(timeout, self._poll)))

    def close(self) -> None:
        """Stop listening; idempotent."""
