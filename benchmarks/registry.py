"""The registry of suites and contenders the runner measures.

A *suite* groups the contenders that are fair to compare: they run on the same machine against
the same kind of coordination medium (a local file, one Redis server, an etcd cluster...). Each
*contender* is a named factory that, given a ``BenchContext`` and a lock name, returns a
``LockHandle`` with blocking ``acquire()``/``release()``. Its role says what it stands for:
tenure itself, a peer library people would otherwise use, or a floor (the fewest round trips the
same medium allows, written by hand) that shows how much the library layer costs.

Suites live in their own modules (``benchmarks/suites/``) and are imported only when asked for,
so a suite whose client library or server is missing never breaks the others. Worker processes
receive names, not objects: they look the contender up again here, so factories never need to
be picklable.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class Role(StrEnum):
    """What a contender stands for in the comparison."""

    TENURE = "tenure"
    PEER = "peer"
    FLOOR = "floor"


class LockHandle(Protocol):
    """One process's handle on one lock name; ``acquire()`` blocks until held."""

    def acquire(self) -> None:
        """Block until the lock is held (raise if it cannot be had within a generous timeout)."""

    def release(self) -> None:
        """Release the lock held by the last ``acquire()``."""

    def close(self) -> None:
        """Free connections and files; the handle is not used again."""


@dataclass(frozen=True)
class BenchContext:
    """Where a suite's contenders meet: picklable, because worker processes receive it.

    ``workdir`` is a private temporary directory for lock files and databases; ``params`` holds
    what a suite's environment set up, such as the URL of a server it started.
    """

    suite: str
    workdir: str
    params: Mapping[str, str] = field(default_factory=dict)

    def path(self, *parts: str) -> Path:
        """Return a path inside the work directory."""
        return Path(self.workdir, *parts)


class Unavailable(Exception):
    """Raised by a factory whose contender cannot run here; the runner reports it as skipped.

    Its message says why: e.g. tenure raised ``ConfigurationError`` for the suite's URL scheme
    because that backend is not built yet. A missing library raises ``ImportError`` instead.
    """


Factory = Callable[[BenchContext, str], LockHandle]
Environment = Callable[[Path], AbstractContextManager[dict[str, str]]]


@contextlib.contextmanager
def no_environment(workdir: Path) -> Iterator[dict[str, str]]:
    """Set nothing up: for suites that need only the work directory."""
    yield {}


@dataclass(frozen=True)
class Contender:
    """A lock implementation to measure, and how to read its figures.

    ``floor`` names the floor contender that uses the same mechanism (for ratios of library
    overhead); ``ttl`` and ``fence`` say whether a holder gets an expiring lease and a fencing
    token, the guarantees tenure adds over a plain mutex.
    """

    name: str
    role: Role
    factory: Factory
    summary: str
    floor: str | None = None
    ttl: bool = False
    fence: bool = False
    notes: str = ""


@dataclass(frozen=True)
class Target:
    """A goal of the issue behind a suite: computed and reported with the table, never asserted.

    ``metric`` is ``"<section>.<field>"`` of a contender record (``"uncontended.p50_us"``,
    ``"contended.gap_p50_us"``, ``"contended.fairness"``...). With ``reference`` the goal is on
    the ratio of the contender's figure to the reference contender's, else on the figure itself;
    it is met when that value is ``<= limit`` (``at_most``) or ``>= limit``. ``hold_ms`` limits
    the goal to contended runs with that hold time (``None``: any run).
    """

    contender: str
    metric: str
    limit: float
    reference: str | None = None
    at_most: bool = True
    hold_ms: float | None = None
    label: str = ""


@dataclass(frozen=True)
class Suite:
    """Contenders compared in one run; ratios are taken against ``baseline``.

    ``environment`` is entered once per run, in the parent process, with the work directory; it
    yields the ``params`` of the ``BenchContext`` (e.g. a server it started and will stop).
    ``targets`` are the suite's goals; ``None`` keeps the default one: each tenure contender at
    least as fast uncontended as the baseline while also giving a TTL and a fence.
    """

    name: str
    description: str
    baseline: str
    contenders: tuple[Contender, ...]
    environment: Environment = no_environment
    targets: tuple[Target, ...] | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.contenders]
        if len(set(names)) != len(names):
            raise ValueError(f"suite {self.name}: duplicate contender names {names}")
        referenced = [self.baseline, *(c.floor for c in self.contenders if c.floor)]
        for target in self.targets or ():
            referenced += [target.contender, *([target.reference] if target.reference else [])]
            if target.metric.count(".") != 1:
                raise ValueError(f"suite {self.name}: target metric {target.metric!r} is not section.field")
        for wanted in referenced:
            if wanted not in names:
                raise ValueError(f"suite {self.name}: {wanted!r} is not one of its contenders {names}")

    def contender(self, name: str) -> Contender:
        """Return the contender called ``name``."""
        for contender in self.contenders:
            if contender.name == name:
                return contender
        raise KeyError(f"suite {self.name} has no contender {name!r}")


# Suite name -> module defining ``SUITE``. A new backend adds one line here and one module.
SUITES: dict[str, str] = {
    "sqlite-local": "benchmarks.suites.sqlite_local",
    "redis-single": "benchmarks.suites.redis_single",
    "redlock5": "benchmarks.suites.redlock5",
    "etcd3": "benchmarks.suites.etcd3",
    "zookeeper3": "benchmarks.suites.zookeeper3",
    "postgresql": "benchmarks.suites.postgresql",
    "mysql": "benchmarks.suites.mysql",
}


def get_suite(name: str) -> Suite:
    """Import and return the suite called ``name``."""
    try:
        module_name = SUITES[name]
    except KeyError:
        raise KeyError(f"unknown suite {name!r}; known: {', '.join(sorted(SUITES))}") from None
    suite = importlib.import_module(module_name).SUITE
    if not isinstance(suite, Suite) or suite.name != name:
        raise TypeError(f"{module_name}.SUITE must be the Suite named {name!r}")
    return suite
