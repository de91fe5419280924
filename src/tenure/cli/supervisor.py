"""Run a child command only while something is held: a lease (``tenure lock``) or a leadership.

``Supervision`` does the work for both commands; a ``Hold`` adapts what is held (``LeaseHold``,
``LeadershipHold``) to it: the environment CMD gets, how a loss is seen and told, how to let go.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Protocol

import tenure
from tenure.cli import exitcodes

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that ask tenure to stop: passed on to CMD, which tenure then waits for."""

BACKSTOP_INTERVAL = 0.1
"""Longest wait between checks; a signal or a loss the renewer did not report is seen this late."""


class Interrupted(Exception):
    """Report a stop signal that arrived before CMD was started."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class SignalInbox:
    """Receive the stop signals while ``tenure lock`` or ``elect`` runs; restore the old handlers after.

    Until CMD is started there is nobody to pass a signal on to, so the handler raises
    ``Interrupted`` (as Ctrl-C raises KeyboardInterrupt) to abandon the wait for the lock.
    Afterwards it only records the signal; the supervising loop passes it on. The handler never
    touches a lock or an Event: it runs between two bytecodes of the main thread, which may be
    holding that very lock.
    """

    def __init__(self) -> None:
        self.raise_at_once = True
        self._received: list[int] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> SignalInbox:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self.raise_at_once = False
        for signum, handler in self._previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(signum, handler)  # type: ignore[arg-type]

    def take(self) -> list[int]:
        """Return the signals received since the last call, oldest first."""
        taken = self._received[:]
        # Delete by count: the handler may append between the copy and the deletion.
        del self._received[: len(taken)]
        return taken

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._received.append(signum)
        if self.raise_at_once:
            raise Interrupted(signum)


def run_lock(args: argparse.Namespace) -> int:
    """Acquire the lock, run ``args.command`` while it is held, release it; return the exit code.

    Raises ``ConfigurationError`` for bad input (before any I/O), ``AcquireTimeout`` when the
    lock could not be had in time, ``BackendUnavailable`` when the backend cannot be reached and
    ``Interrupted`` when a stop signal came before the command was started.
    """
    coordinator = tenure.Coordinator(args.url)
    lock: tenure.Lock | tenure.Semaphore
    if args.limit is None:
        lock = coordinator.lock(args.name, ttl=args.ttl, timeout=args.timeout)
    else:  # one of N permits: the same lease, the same supervision
        lock = coordinator.semaphore(args.name, limit=args.limit, ttl=args.ttl, timeout=args.timeout)
    grace = check_grace(args.grace)
    try:
        with SignalInbox() as inbox:
            lease = lock.acquire()
            return Supervision(LeaseHold(lease), args.command, grace=grace, inbox=inbox).run()
    finally:
        coordinator.close()  # releases the lease if an error left it held


def check_grace(grace: float) -> float:
    """Return ``grace`` if it is a usable number of seconds, else raise ``ConfigurationError``."""
    if not 0 <= grace < math.inf:
        raise tenure.ConfigurationError(f"grace must be a finite number of seconds >= 0, got {grace!r}")
    return grace


class Hold(Protocol):
    """What CMD runs under, as ``Supervision`` sees it: a lease or a leadership.

    ``check()`` and ``release()`` raise ``LockLost`` (``LeadershipLost`` is one) once what is
    held was lost; ``release()`` may also raise ``BackendError``.
    """

    loss_level: str
    """The level of the line that reports a loss."""

    @property
    def lost(self) -> bool:
        """Return whether what is held was lost."""

    def check(self) -> None:
        """Raise ``LockLost`` if what is held was lost."""

    def on_lost(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when what is held is lost."""

    def release(self) -> None:
        """Let go (release or resign); raise ``LockLost`` if it had been lost before."""

    def environment(self) -> dict[str, str]:
        """Return the variables CMD gets in its environment, besides tenure's own."""

    def loss_fallback(self) -> str:
        """Return the line that reports a loss when ``check()`` has no message to give."""

    def release_warning(self, exc: tenure.BackendError) -> str:
        """Return the line that reports a release that failed with ``exc``."""


class LeaseHold:
    """A lease on a lock: CMD gets ``TENURE_FENCE`` and ``TENURE_LOCK``."""

    loss_level = "error"

    def __init__(self, lease: tenure.Lease) -> None:
        self.lease = lease

    @property
    def lost(self) -> bool:
        return self.lease.lost

    def check(self) -> None:
        self.lease.check()

    def on_lost(self, callback: Callable[[], object]) -> None:
        self.lease.on_lost(lambda _lease: callback())

    def release(self) -> None:
        self.lease.release()

    def environment(self) -> dict[str, str]:
        return {"TENURE_FENCE": str(self.lease.fence), "TENURE_LOCK": self.lease.name}

    def loss_fallback(self) -> str:
        return f"lock {self.lease.name!r} (fence {self.lease.fence}) was lost"

    def release_warning(self, exc: tenure.BackendError) -> str:
        return f"could not release lock {self.lease.name!r}: {exc}; it expires within its TTL"


class LeadershipHold:
    """The leadership of an election: CMD gets ``TENURE_TERM``, ``TENURE_ELECTION``, ``TENURE_LEADER_VALUE``.

    Letting go resigns. A loss is part of the job (the candidate goes back to standby), so it
    is reported as a warning.
    """

    loss_level = "warning"

    def __init__(self, leadership: tenure.Leadership) -> None:
        self.leadership = leadership

    @property
    def lost(self) -> bool:
        return self.leadership.lost

    def check(self) -> None:
        self.leadership.check()

    def on_lost(self, callback: Callable[[], object]) -> None:
        self.leadership.on_lost(lambda _leadership: callback())

    def release(self) -> None:
        self.leadership.resign()

    def environment(self) -> dict[str, str]:
        return {
            "TENURE_TERM": str(self.leadership.term),
            "TENURE_ELECTION": self.leadership.name,
            "TENURE_LEADER_VALUE": self.leadership.value,
        }

    def loss_fallback(self) -> str:
        return f"election {self.leadership.name!r}: leadership of term {self.leadership.term} was lost"

    def release_warning(self, exc: tenure.BackendError) -> str:
        return (
            f"could not resign from election {self.leadership.name!r}: {exc}; "
            "the leadership ends within its TTL"
        )


class Supervision:
    """Run one child command under a held lease or leadership and stop it if that is lost.

    **Guarantees.** CMD starts only after the hold was acquired and checked, and it is released
    only after CMD has exited. When it is lost (a renewal refused, or validity run out because
    this process was paused or the backend was unreachable), CMD gets SIGTERM at once and
    SIGKILL ``grace`` seconds later; tenure notices within the renewer's report or
    ``BACKSTOP_INTERVAL``. Only CMD itself is signalled, not processes it started. If tenure is
    killed with SIGKILL, CMD keeps running unprotected while the hold runs out after its TTL:
    pass the fence (``TENURE_FENCE``, ``TENURE_TERM``) to the resource so it can reject CMD's
    late writes.

    After ``run()``: ``lost`` says whether the hold was lost (seen while CMD ran or on release),
    ``stopped_for_loss`` whether CMD was signalled because of it, and ``stop_signal`` the first
    stop signal tenure received (passed on to CMD), if any.
    """

    def __init__(self, hold: Hold, command: Sequence[str], *, grace: float, inbox: SignalInbox) -> None:
        self.hold = hold
        self.command = list(command)
        self.grace = grace
        self.inbox = inbox
        self.lost = False
        self.stopped_for_loss = False
        self.stop_signal: int | None = None
        self._wake = threading.Event()  # set by the child waiter and the on_lost callback
        self._sigints = 0

    def run(self) -> int:
        """Start the command, supervise it to its end, release the hold; return the exit code.

        The code is ``LEASE_LOST`` if the hold was lost, else 128+N after stop signal N, else
        the command's own exit code (128+N if signal N killed it).
        """
        self.hold.on_lost(self._wake.set)
        self.hold.check()  # never start the command on a hold that is already gone
        env = {**os.environ, **self.hold.environment()}
        # From here a signal is passed on to the child rather than raised.
        self.inbox.raise_at_once = False
        try:
            child = subprocess.Popen(dies_with_us(self.command), env=env)
        except OSError as exc:
            self._release()
            code = exitcodes.NOT_FOUND if isinstance(exc, FileNotFoundError) else exitcodes.CANNOT_EXECUTE
            report(f"cannot run {self.command[0]!r}: {exc.strerror or exc}")
            return exitcodes.LEASE_LOST if self.lost else code
        threading.Thread(target=self._wait_for, args=(child,), name="tenure-child", daemon=True).start()
        self._supervise(child)
        self._release()
        if self.lost:
            return exitcodes.LEASE_LOST
        if self.stop_signal is not None:
            return exitcodes.from_signal(self.stop_signal)
        returncode = child.returncode
        return exitcodes.from_signal(-returncode) if returncode < 0 else returncode

    def _wait_for(self, child: subprocess.Popen[bytes]) -> None:
        child.wait()
        self._wake.set()

    def _supervise(self, child: subprocess.Popen[bytes]) -> None:
        kill_at: float | None = None
        while True:
            self._wake.clear()  # before the checks, so a wake-up during them is not lost
            if child.returncode is not None:
                return
            for signum in self.inbox.take():
                self._pass_on(child, signum)
            if not self.lost and self.hold.lost:
                self.lost = self.stopped_for_loss = True
                kill_at = time.monotonic() + self.grace
                report(
                    f"{self._loss_message()}; stopping {self.command[0]!r} (pid {child.pid}) with "
                    f"SIGTERM, then SIGKILL after {self.grace:g} s",
                    level=self.hold.loss_level,
                )
                child.terminate()
            pause = BACKSTOP_INTERVAL
            if kill_at is not None:
                left = kill_at - time.monotonic()
                if left <= 0:
                    child.kill()
                    kill_at = None
                else:
                    pause = min(pause, left)
            self._wake.wait(pause)

    def _pass_on(self, child: subprocess.Popen[bytes], signum: int) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        if signum == signal.SIGINT:
            self._sigints += 1
            # Ctrl-C reaches every process of the terminal's foreground group, the child too;
            # a second SIGINT from us could break its clean-up. A repeated one always goes on.
            if self._sigints == 1 and terminal_delivered_sigint(child.pid):
                return
        child.send_signal(signum)

    def _release(self) -> None:
        try:
            self.hold.release()
        except tenure.LockLost as exc:
            if not self.lost:  # lost unnoticed, e.g. just before the child exited
                self.lost = True
                report(str(exc), level=self.hold.loss_level)
        except tenure.BackendError as exc:
            report(self.hold.release_warning(exc), level="warning")

    def _loss_message(self) -> str:
        try:
            self.hold.check()
        except tenure.LockLost as exc:
            return str(exc)
        return self.hold.loss_fallback()


def terminal_delivered_sigint(child_pid: int) -> bool:
    """Return whether a SIGINT came from the terminal, which then sent it to the child too.

    That is the case when the child is in our process group and that group is the foreground
    group of our controlling terminal. Without a controlling terminal (CI, services, a test's
    new session) every SIGINT was sent to tenure alone and must be passed on.
    """
    try:
        if os.getpgid(child_pid) != os.getpgrp():
            return False
        tty = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(tty) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(tty)


def report(message: str, *, level: str = "error") -> None:
    """Print ``message`` to stderr as one line, prefixed like every tenure diagnostic."""
    print(f"tenure: {level}: {' '.join(message.split())}", file=sys.stderr, flush=True)


def dies_with_us(command: list[str]) -> list[str]:
    """Return ``command`` made to be killed by the kernel if tenure itself dies, even by kill -9.

    Otherwise the command would go on without the hold that no one renews any more, its only
    protection the fence. Linux's parent-death signal does it, set by util-linux ``setpriv``
    (which then execs the command, so the child's pid stays the command's). SIGKILL, because the
    supervisor that would escalate from SIGTERM is gone. Where ``setpriv`` is missing the
    command runs as given; a command not found is left for Popen to report.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    program = shutil.which(command[0])
    if setpriv is None or program is None:
        return command
    return [setpriv, "--pdeathsig", "KILL", "--", program, *command[1:]]
