"""Rate limits when the store is down (issue 16): the chosen behaviour within the deadline.

For every server backend that keeps rate limits, with ``on_unavailable="deny"`` and
``"allow"``, ``deadline=0.05``, both colours: a port where nothing listens, a listener that
accepts and never answers, and the real server frozen (SIGSTOP) mid-run. Every decision must
return within the deadline and a margin with the chosen answer (``try_acquire`` False/True,
``acquire`` raising ``RateLimited(unavailable=True)`` or admitting), one WARNING per outage,
and once the frozen server thaws, real decisions again. Each test prints its slowest decision
with a ``RATELIMIT`` prefix (``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import pytest

import tenure
from tenure._core.guarantees import Capability, Guarantee
from tests.conftest import backends_able, declared
from tests.servers import ServerProcess, free_port

# The session fixture that runs each server backend's server (to freeze it).
SERVERS = {
    "redis": "redis_server",
    "postgresql": "postgres_server",
    "postgresql_table": "postgres_server",
    "mysql": "mariadb_server",
    "mysql_table": "mariadb_server",
}
SERVER_BACKENDS = [
    name for name in backends_able(Capability.COUNTERS) if Guarantee.CROSS_HOST in declared(name)
]
OnUnavailable = Literal["allow", "deny"]
DEADLINE = 0.05
MARGIN = 0.2  # what a loaded 2-CPU machine adds to a timer and a thread hand-off, at most
ROUNDS = 5  # each round: try_acquire, decide, acquire

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", SERVER_BACKENDS)]


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{backend}_url")
    return value


def test_every_server_backend_has_a_server_to_freeze(backend: str) -> None:
    assert backend in SERVERS, f"add {backend}'s server fixture to SERVERS"


def on_port(url: str, port: int) -> str:
    """Return ``url`` pointing at 127.0.0.1:``port`` (its user, database and options kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def blackhole() -> Iterator[int]:
    """Listen on a port, accept every connection and never answer; yield the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    acceptor = threading.Thread(target=accept, name="blackhole", daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(timeout=5)
        listener.close()
        for conn in accepted:
            conn.close()


class Outage:
    """How the store goes away for a run of decisions: never there, or ``frozen`` mid-run."""

    def __init__(self, frozen: ServerProcess | None = None) -> None:
        self.frozen = frozen
        self.comes_back = frozen is not None  # then decisions must be real before and after

    def begin(self) -> None:
        if self.frozen is not None:
            self.frozen.pause()

    def end(self) -> None:
        if self.frozen is not None:
            self.frozen.resume()


class Tally:
    """How long each decision took, and what the limiter logged."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.took: list[float] = []
        self.caplog = caplog
        self.warm = 0.0  # until the first real decision (connecting)
        self.recovered = 0.0  # from the thaw until the first real decision
        self.late = 0  # permits that calls given up on during the freeze took once it thawed

    def timed(self, started: float) -> None:
        self.took.append(time.monotonic() - started)

    def warnings(self, name: str, text: str) -> int:
        return sum(
            record.levelno == logging.WARNING
            and f"rate limiter {name!r}" in record.getMessage()
            and text in record.getMessage()
            for record in self.caplog.records
        )


def check_sync(url: str, mode: OnUnavailable, outage: Outage, tally: Tally) -> None:
    allow = mode == "allow"
    coord = tenure.Coordinator(url)  # not entered: entering connects, and the store may be down
    try:
        name = f"api-{mode}"
        limiter = coord.rate_limiter(name, rate="1/min", burst=3, on_unavailable=mode, deadline=DEADLINE)
        if outage.comes_back:  # mid-run: connected, deciding (the first call may connect past the deadline)
            started = time.monotonic()
            while (state := limiter.decide(key="before")).unavailable and time.monotonic() < started + 10:
                time.sleep(0.05)
            tally.warm = time.monotonic() - started
            assert not state.unavailable
            tally.caplog.clear()  # a slow first connection is not the outage under test
        outage.begin()
        try:
            for _ in range(ROUNDS):
                started = time.monotonic()
                assert limiter.try_acquire(key="k") is allow
                tally.timed(started)
                started = time.monotonic()
                state = limiter.decide(key="k")
                tally.timed(started)
                assert (state.allowed, state.unavailable) == (allow, True)
                started = time.monotonic()
                if allow:
                    state = limiter.acquire(key="k", timeout=5)
                    assert (state.allowed, state.unavailable) == (True, True)
                else:
                    with pytest.raises(tenure.RateLimited) as raised:
                        limiter.acquire(key="k", timeout=5)
                    assert raised.value.unavailable
                tally.timed(started)
        finally:
            outage.end()
        assert tally.warnings(name, "did not answer") == 1
        if outage.comes_back:
            thawed = time.monotonic()
            while (state := limiter.decide(key="after")).unavailable and time.monotonic() < thawed + 10:
                time.sleep(0.05)
            tally.recovered = time.monotonic() - thawed
            assert not state.unavailable
            # Real answers, on the same connections: exact. Not bounded by the deadline, so that a
            # busy machine does not make them "unavailable".
            patient = coord.rate_limiter(name, rate="1/min", burst=3, deadline=None)
            answers = [patient.decide(key="fresh") for _ in range(4)]
            tally.late = 3 - patient.peek(key="k").remaining
            assert [(s.allowed, s.unavailable) for s in answers] == [(True, False)] * 3 + [(False, False)]
            assert tally.warnings(name, "answers again") == 1
    finally:
        coord.close()


async def check_async(url: str, mode: OnUnavailable, outage: Outage, tally: Tally) -> None:
    allow = mode == "allow"
    coord = tenure.AsyncCoordinator(url)
    try:
        name = f"api-{mode}"
        limiter = coord.rate_limiter(name, rate="1/min", burst=3, on_unavailable=mode, deadline=DEADLINE)
        if outage.comes_back:
            started = time.monotonic()
            while (
                state := await limiter.decide(key="before")
            ).unavailable and time.monotonic() < started + 10:
                await asyncio.sleep(0.05)
            tally.warm = time.monotonic() - started
            assert not state.unavailable
            tally.caplog.clear()
        outage.begin()
        try:
            for _ in range(ROUNDS):
                started = time.monotonic()
                assert await limiter.try_acquire(key="k") is allow
                tally.timed(started)
                started = time.monotonic()
                state = await limiter.decide(key="k")
                tally.timed(started)
                assert (state.allowed, state.unavailable) == (allow, True)
                started = time.monotonic()
                if allow:
                    state = await limiter.acquire(key="k", timeout=5)
                    assert (state.allowed, state.unavailable) == (True, True)
                else:
                    with pytest.raises(tenure.RateLimited) as raised:
                        await limiter.acquire(key="k", timeout=5)
                    assert raised.value.unavailable
                tally.timed(started)
        finally:
            outage.end()
        assert tally.warnings(name, "did not answer") == 1
        if outage.comes_back:
            thawed = time.monotonic()
            while (state := await limiter.decide(key="after")).unavailable and time.monotonic() < thawed + 10:
                await asyncio.sleep(0.05)
            tally.recovered = time.monotonic() - thawed
            assert not state.unavailable
            patient = coord.rate_limiter(name, rate="1/min", burst=3, deadline=None)
            answers = [await patient.decide(key="fresh") for _ in range(4)]
            tally.late = 3 - (await patient.peek(key="k")).remaining
            assert [(s.allowed, s.unavailable) for s in answers] == [(True, False)] * 3 + [(False, False)]
            assert tally.warnings(name, "answers again") == 1
    finally:
        await coord.aclose()


def run(
    colour: str, url: str, mode: OnUnavailable, outage: Outage, caplog: pytest.LogCaptureFixture
) -> Tally:
    """Run the decisions of one colour through ``outage``; return what was measured."""
    tally = Tally(caplog)
    caplog.set_level(logging.WARNING, logger="tenure")
    if colour == "async":
        asyncio.run(check_async(url, mode, outage, tally))
    else:
        check_sync(url, mode, outage, tally)
    return tally


def report(what: str, backend: str, colour: str, mode: OnUnavailable, tally: Tally) -> None:
    took = tally.took
    print(
        f"RATELIMIT fault {what} {backend} {colour} {mode}: {len(took)} decisions, max {max(took):.3f} s"
        + (
            f"; first real decision after {tally.warm:.3f} s, again {tally.recovered:.3f} s after the thaw;"
            f" {tally.late} permit(s) taken late by calls given up on"
            if what == "frozen"
            else ""
        )
    )
    assert len(took) == 3 * ROUNDS
    assert max(took) <= DEADLINE + MARGIN


COLOURS = pytest.mark.parametrize("colour", ["async", "sync"])
MODES = pytest.mark.parametrize("mode", ["deny", "allow"])


@COLOURS
@MODES
def test_nothing_listens(
    url: str, backend: str, colour: str, mode: OnUnavailable, caplog: pytest.LogCaptureFixture
) -> None:
    tally = run(colour, on_port(url, free_port()), mode, Outage(), caplog)
    report("refused", backend, colour, mode, tally)


@COLOURS
@MODES
def test_a_listener_that_never_answers(
    url: str, backend: str, colour: str, mode: OnUnavailable, caplog: pytest.LogCaptureFixture
) -> None:
    with blackhole() as port:
        tally = run(colour, on_port(url, port), mode, Outage(), caplog)
    report("blackhole", backend, colour, mode, tally)


@COLOURS
@MODES
def test_the_server_frozen_mid_run(
    url: str,
    backend: str,
    colour: str,
    mode: OnUnavailable,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    server: ServerProcess = request.getfixturevalue(SERVERS[backend])
    try:
        tally = run(colour, url, mode, Outage(frozen=server), caplog)
    finally:
        server.resume()  # whatever failed, the session's server must run on
    report("frozen", backend, colour, mode, tally)
