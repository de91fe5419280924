"""The ``tenure`` command line: parse it, run one subcommand, turn errors into one line and a code."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

import tenure
from tenure._sync.coordinator import DEFAULT_TIMEOUT, DEFAULT_TTL
from tenure.cli import exitcodes
from tenure.cli.elect import run_elect
from tenure.cli.inspection import run_inspect
from tenure.cli.limit import run_limit
from tenure.cli.supervisor import Interrupted, report, run_lock
from tenure.cli.verify import add_verify_parser

DEFAULT_GRACE = 5.0
URL_HELP = "backend URL (default: $TENURE_URL, else an embedded SQLite file in the user's state directory)"

DESCRIPTION = """\
Distributed locks with leases and fencing tokens, and shared rate limits, from the shell.

examples:
  tenure lock nightly-backup -- ./backup.sh        run backup.sh only while holding the lock
  tenure lock gpu --limit 4 -- ./train.sh          run train.sh holding one of 4 permits
  tenure --url redis://127.0.0.1:6379/0 lock orders:42 --timeout 0 -- ./job
  tenure elect scheduler --ttl 10 -- ./scheduler   run the scheduler only on the elected leader
  tenure limit partner --rate 10/s -- ./sync.sh    run sync.sh once a permit of 10/s is had
  tenure inspect nightly-backup                    who holds it, with which fence, for how long
  tenure inspect payments --key req-123            an idempotency key: running, or done
  tenure inspect --watch orders scheduler          a live view: holders, fences, ttl, leaders
  tenure demo                                      the oversell demo, on the embedded SQLite file
  tenure --url redis://127.0.0.1:6379/0 verify     measure the lock's guarantees under faults
"""

LOCK_DESCRIPTION = f"""\
Acquire the lock NAME, run CMD while the lease is held (renewing it in the background), then
release it. With --limit N, hold one of N permits of the semaphore NAME instead: at most N
commands run at once, each with its own lease. CMD gets TENURE_LOCK (the lock name) and
TENURE_FENCE (the lease's fencing token, an integer that grows with every acquisition) in its
environment: pass the fence to the resource you protect so it can reject writes from a holder
that lost the lock.

If the lease is lost while CMD runs (a renewal is refused, or this process was paused or cut off
from the backend past the TTL), CMD gets SIGTERM, then SIGKILL after --grace seconds, and tenure
exits {exitcodes.LEASE_LOST}. Only CMD is signalled: a shell script should `exec` its last command.

SIGINT, SIGTERM and SIGHUP sent to tenure are passed on to CMD (a Ctrl-C that the terminal has
already delivered to CMD is not sent twice); tenure waits for CMD, releases the lock and exits
128+N. Otherwise tenure exits with CMD's exit code, or 128+N if a signal N killed CMD.
"""

ELECT_DESCRIPTION = f"""\
Campaign in the election NAME and run CMD only while this candidate is the leader; the others
wait on standby and one of them takes over when the leader dies, resigns or is cut off. CMD gets
TENURE_TERM (the leadership's term: a fence that grows with every new leader), TENURE_ELECTION
(the election's name) and TENURE_LEADER_VALUE (the value proclaimed, --value) in its
environment: pass the term to the resource you protect so it can reject a deposed leader.

If the leadership is lost while CMD runs (a renewal is refused, or this process was paused or
cut off from the backend past the TTL), CMD gets SIGTERM, then SIGKILL after --grace seconds,
and tenure goes back to standby: it campaigns again and runs CMD anew when it leads again.
Each campaign waits at most --timeout seconds (default: without end), then tenure exits {exitcodes.TEMPFAIL}.
Status lines (campaigning, leader with term N, lost, campaigning again) go to stderr.

When CMD exits by itself, tenure resigns and exits with CMD's exit code (128+N if a signal N
killed it), or {exitcodes.LEASE_LOST} if the leadership turns out to have been lost meanwhile. SIGINT,
SIGTERM and SIGHUP sent to tenure are passed on to CMD; tenure waits for CMD, resigns and exits
128+N.
"""

LIMIT_DESCRIPTION = f"""\
Take a permit of the rate limit NAME, waiting until one is due, then run CMD: every command
started with the same NAME, URL and KEY shares one budget of --rate (and --burst at once after
an idle spell), whichever host or process starts it. For cron jobs and scripts that call a
shared API. The wait ends as soon as the permit is due (the backend says when; no polling).

--rate is COUNT/PERIOD: "10/s", "600/min", "5/10s", or several that must all admit a call,
"10/s;1000/hour". --burst is how many permits may be taken at once after an idle spell
(default: one second of the rate, at least 1). --cost takes several permits at once. The
permits are decided by the backend's clock, in one atomic step.

If no permit is due within --timeout seconds, CMD is not run: tenure exits {exitcodes.TEMPFAIL} at once (it
does not wait to fail) with a line on stderr that says when one is due (retry after S seconds).
CMD gets TENURE_LIMIT (the name) in its environment. SIGINT, SIGTERM and SIGHUP sent to tenure
are passed on to CMD, as for "lock"; tenure exits with CMD's exit code, or 128+N.
"""

INSPECT_DESCRIPTION = """\
Show who holds the lock NAME: the holder's label (host/pid/thread), the fence, and the seconds
of TTL left; the permits of the semaphore NAME and the readers and writer of the read-write lock
NAME (each with its label, fence and TTL left); and who leads the election NAME: the leader's
value and term. Prints "free" when nobody holds any of them. Exits 0 either way.
"""


COMMANDS_WITH_CMD = ("lock", "elect", "limit")
"""The commands that run a child command, given after "--"."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other tenure error."""

    def error(self, message: str) -> NoReturn:
        """Report ``message`` on one line, pointing at ``--help``, and exit with the usage code."""
        report(f"{self.prog}: {message} (see: {self.prog} --help)")
        sys.exit(exitcodes.USAGE)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """Return the ``tenure`` parser and its subcommand parsers by name."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = Parser(prog="tenure", description=DESCRIPTION, epilog=exitcodes.HELP, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"tenure {tenure.__version__}")
    parser.add_argument("--url", default=None, help=URL_HELP)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print the library's log (renewals, losses)"
    )
    # --url may also follow the subcommand; SUPPRESS keeps the subparser from resetting it to None.
    late_url = Parser(add_help=False)
    late_url.add_argument("--url", default=argparse.SUPPRESS, help=URL_HELP)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    lock = commands.add_parser(
        "lock",
        parents=[late_url],
        help="run CMD only while holding a lock",
        usage="tenure [--url URL] lock NAME [--limit N] [--ttl S] [--timeout S] [--grace S] -- CMD...",
        description=LOCK_DESCRIPTION,
        epilog=exitcodes.HELP,
        formatter_class=formatter,
    )
    lock.add_argument("name", metavar="NAME", help="the lock's name")
    lock.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="hold one of N permits of the semaphore NAME instead of the lock (N holders at once)",
    )
    lock.add_argument(
        "--ttl",
        type=float,
        default=DEFAULT_TTL,
        metavar="S",
        help=f"lease length in seconds, renewed while CMD runs (default: {DEFAULT_TTL:g})",
    )
    lock.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"longest wait for the lock in seconds; 0 makes a single try (default: {DEFAULT_TIMEOUT:g})",
    )
    lock.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="S",
        help=f"seconds between SIGTERM and SIGKILL when the lease is lost (default: {DEFAULT_GRACE:g})",
    )
    lock.set_defaults(handler=run_lock, command_name="lock")

    elect = commands.add_parser(
        "elect",
        parents=[late_url],
        help="run CMD only while elected leader",
        usage="tenure [--url URL] elect NAME [--ttl S] [--value V] [--timeout S] [--grace S] -- CMD...",
        description=ELECT_DESCRIPTION,
        epilog=exitcodes.HELP,
        formatter_class=formatter,
    )
    elect.add_argument("name", metavar="NAME", help="the election's name")
    elect.add_argument(
        "--ttl",
        type=float,
        default=DEFAULT_TTL,
        metavar="S",
        help=f"how long a leader that stopped renewing keeps the leadership (default: {DEFAULT_TTL:g})",
    )
    elect.add_argument(
        "--value",
        default=None,
        metavar="V",
        help="the value this candidate proclaims while it leads (default: host/pid/thread)",
    )
    elect.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="longest wait to become leader in seconds, for each campaign (default: without end)",
    )
    elect.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="S",
        help=f"seconds between SIGTERM and SIGKILL when leadership is lost (default: {DEFAULT_GRACE:g})",
    )
    elect.set_defaults(handler=run_elect, command_name="elect")

    limit = commands.add_parser(
        "limit",
        parents=[late_url],
        help="run CMD once a permit of a shared rate limit is had",
        usage=(
            "tenure [--url URL] limit NAME --rate R [--burst N] [--key K] [--cost C] [--timeout S] -- CMD..."
        ),
        description=LIMIT_DESCRIPTION,
        epilog=exitcodes.HELP,
        formatter_class=formatter,
    )
    limit.add_argument("name", metavar="NAME", help="the rate limit's name")
    limit.add_argument(
        "--rate", required=True, metavar="R", help='permits per period: "10/s", "600/min", "10/s;1000/hour"'
    )
    limit.add_argument(
        "--burst",
        type=int,
        default=None,
        metavar="N",
        help="permits that may be taken at once after an idle spell (default: one second of the rate)",
    )
    limit.add_argument(
        "--key",
        default="",
        metavar="K",
        help="the budget within NAME, e.g. one per customer or token (default: one for NAME)",
    )
    limit.add_argument("--cost", type=int, default=1, metavar="C", help="permits to take (default: 1)")
    limit.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"longest wait for the permit in seconds; 0 makes a single try (default: {DEFAULT_TIMEOUT:g})",
    )
    limit.set_defaults(handler=run_limit, command_name="limit")

    inspect = commands.add_parser(
        "inspect",
        parents=[late_url],
        help="show who holds a lock (fence, remaining TTL) and who leads an election (value, term)",
        description=INSPECT_DESCRIPTION,
        epilog=exitcodes.HELP,
        formatter_class=formatter,
    )
    inspect.add_argument("name", metavar="NAME", help="the lock's name")
    inspect.add_argument(
        "--key",
        metavar="KEY",
        help="show the idempotency key KEY of the space NAME instead: running (fence, lease left) or done",
    )
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    inspect.add_argument("more", nargs="*", metavar="NAME", help="with --watch: more names to show")
    inspect.add_argument(
        "--watch", action="store_true", help="a live view of the NAMEs, redrawn as they change (needs rich)"
    )
    inspect.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="S",
        help="with --watch: read again at least every S seconds, changes or not (default: 1)",
    )
    inspect.set_defaults(handler=run_inspect, command_name="inspect")

    # The demo declares its own options; they are parsed in run_demo, once it is imported.
    demo = commands.add_parser(
        "demo",
        add_help=False,
        help="run the oversell demo (see: tenure demo --help)",
        description="Run the oversell demo.",
    )
    demo.set_defaults(handler=run_demo, command_name="demo")
    verify = add_verify_parser(commands, late_url, formatter)
    return parser, {
        "lock": lock,
        "elect": elect,
        "limit": limit,
        "inspect": inspect,
        "demo": demo,
        "verify": verify,
    }


def run_demo(args: argparse.Namespace) -> int:
    """Import ``tenure.demo``, parse ``args.demo_argv`` with its options and run it.

    The import happens only here, so the rest of the command works whatever state the demo is in.
    """
    try:
        demo = importlib.import_module("tenure.demo")
        add_arguments, run = demo.add_arguments, demo.run
    except (ImportError, AttributeError) as exc:
        raise tenure.ConfigurationError(f"the demo is not available in this installation ({exc})") from exc
    parser = Parser(prog="tenure demo")  # the demo describes itself
    add_arguments(parser)
    with contextlib.suppress(argparse.ArgumentError):  # unless the demo declares --url itself
        parser.add_argument("--url", default=argparse.SUPPRESS, help="backend URL, as tenure --url")
    demo_args = parser.parse_args(args.demo_argv)
    if getattr(demo_args, "url", None) is None:
        demo_args.url = args.url
    return int(run(demo_args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tenure`` command with ``argv`` (default: ``sys.argv[1:]``); return its exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is CMD, verbatim: argparse must not read its options.
    after: list[str] | None = None
    if "--" in words:
        cut = words.index("--")
        words, after = words[:cut], words[cut + 1 :]
    parser, subparsers = build_parser()
    try:
        args, extra = parser.parse_known_args(words)
        name = getattr(args, "command_name", None)
        if name is None:
            parser.error("a command is required: lock, elect, limit, inspect, demo or verify")
        if name == "demo":
            args.demo_argv = extra + ([] if after is None else ["--", *after])
        elif extra or (after is not None and name not in COMMANDS_WITH_CMD):
            unexpected = extra + ([] if after is None else ["--", *after])
            subparsers[name].error(f"unrecognized arguments: {' '.join(unexpected)}")
        elif name in COMMANDS_WITH_CMD:
            if not after:
                example = {"lock": "make deploy", "elect": "./scheduler", "limit": "./sync.sh"}[name]
                subparsers[name].error(
                    f"missing CMD: give the command to run after --, e.g. tenure {name} NAME -- {example}"
                )
            args.command = after
        configure_logging(verbose=args.verbose)
        return int(args.handler(args))
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else exitcodes.USAGE
    except Interrupted as exc:
        return exitcodes.from_signal(exc.signum)
    except KeyboardInterrupt:
        return exitcodes.from_signal(signal.SIGINT)
    except tenure.TenureError as exc:
        report(str(exc))
        return exit_code_for(exc)
    except Exception as exc:  # a bug: still one line, the traceback only with --verbose
        logging.getLogger("tenure").debug("tenure: unexpected error", exc_info=True)
        report(f"unexpected {type(exc).__name__}: {exc} (a bug in tenure; --verbose shows where)")
        return exitcodes.FAILURE


def exit_code_for(exc: tenure.TenureError) -> int:
    """Return the exit code that reports ``exc``."""
    if isinstance(exc, tenure.ConfigurationError):
        return exitcodes.USAGE
    if isinstance(exc, tenure.AcquireTimeout | tenure.RateLimited):
        return exitcodes.TEMPFAIL
    if isinstance(exc, tenure.BackendUnavailable):
        return exitcodes.UNAVAILABLE
    if isinstance(exc, tenure.LockLost):
        return exitcodes.LEASE_LOST
    return exitcodes.FAILURE


def configure_logging(*, verbose: bool) -> None:
    """Show the library's log with ``--verbose``; otherwise the command's own lines say it all."""
    if verbose:
        logging.basicConfig(format="%(message)s", stream=sys.stderr)
        logging.getLogger("tenure").setLevel(logging.DEBUG)
    else:
        # Without a handler, Python would print the library's warnings a second time.
        logging.getLogger("tenure").addHandler(logging.NullHandler())


if __name__ == "__main__":
    sys.exit(main())
