"""``tenure verify``: run workers against a lock under faults, check the history, report."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tenure._config import default_url
from tenure._core.guarantees import Guarantee
from tenure.cli.supervisor import report

if TYPE_CHECKING:
    from tenure.verify.runner import Settings

VERIFY_DESCRIPTION = """\
Measure what a lock on URL guarantees on your deployment: start --workers worker processes that
loop (acquire with --ttl, read a shared counter from a fenced store and from an unfenced one,
work a random short time, check the lease, write counter + 1 with the fence, release) while
the nemeses inject faults, record every step in a history, check it and report.

nemeses (each bounded in time and count, healed when it ends, at the end and on Ctrl-C):
  pause       SIGSTOP a holder past its ttl, then SIGCONT
  crash       SIGKILL a holder and start a replacement
  server      kill -9 a server and restart it: only with --servers CMD, a command that does it
              for your deployment (tenure kills only servers it started itself)
  partition   cut a holder off the servers through a local TCP proxy, then heal (no root needed)
  skew        run an extra worker whose clock runs slow or fast (needs libfaketime)

The report folder gets history.jsonl (the format is in docs/verify.md), a JSON summary and an
SVG timeline. `tenure verify --check history.jsonl` checks a recorded history (also one
written by another library) without running anything.

exit codes: 0 every guarantee the backend declares held, 1 a violation, 2 inconclusive (too few
acquisitions, a nemesis that could not run; 2 is also a usage error, as for every tenure
command), 69 the backend cannot be reached, 130 interrupted (every fault healed first).
"""


def add_verify_parser(
    commands: Any, late_url: argparse.ArgumentParser, formatter: type[argparse.HelpFormatter]
) -> argparse.ArgumentParser:
    """Add the ``verify`` subcommand to ``commands`` (the subparsers of ``tenure``); return it."""
    verify: argparse.ArgumentParser = commands.add_parser(
        "verify",
        parents=[late_url],
        help="measure a lock's guarantees under injected faults (pause, crash, server, partition, skew)",
        usage=(
            "tenure [--url URL] verify [--nemesis pause,crash,server,partition,skew] [--duration S] "
            "[--workers N] [--ttl S] [--seed N] [--report DIR] [--servers CMD]\n"
            "       tenure verify --check HISTORY.jsonl"
        ),
        description=VERIFY_DESCRIPTION,
        formatter_class=formatter,
    )
    verify.add_argument(
        "--nemesis",
        default="pause,crash",
        metavar="LIST",
        help="faults to inject, comma-separated (default: pause,crash)",
    )
    verify.add_argument(
        "--duration", type=float, default=30.0, metavar="S", help="seconds to run (default: 30)"
    )
    verify.add_argument("--workers", type=int, default=5, metavar="N", help="worker processes (default: 5)")
    verify.add_argument(
        "--ttl", type=float, default=1.0, metavar="S", help="the lease's ttl in seconds (default: 1)"
    )
    verify.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the fault schedule and the work times (default: random, printed)",
    )
    verify.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="the report folder (default: ./tenure-verify; with --check, the history's folder)",
    )
    verify.add_argument(
        "--servers",
        default=None,
        metavar="CMD",
        help="a shell command that kills and restarts a server (allows the server nemesis)",
    )
    verify.add_argument(
        "--check",
        type=Path,
        default=None,
        metavar="HISTORY",
        help="check a recorded history instead of running workers",
    )
    verify.set_defaults(handler=run_verify, command_name="verify")
    return verify


def run_verify(args: argparse.Namespace) -> int:
    """Run ``tenure verify`` (or ``--check``); return the exit code."""
    # Imported here: the other commands do not need the verify package.
    from tenure.verify.nemesis import CommandServers, parse_nemeses
    from tenure.verify.report import declared_by, run_check

    if args.check is not None:
        return run_check(args)  # the declarations are those of --url's backend, if given
    from tenure.verify.runner import Settings

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    url = default_url(args.url)
    directory = args.report or Path("tenure-verify")
    settings = Settings(
        url=url,
        nemeses=parse_nemeses(args.nemesis),
        duration=args.duration,
        workers=args.workers,
        ttl=args.ttl,
        seed=seed,
        report=directory,
        servers=None if args.servers is None else CommandServers(args.servers),
        progress=True,
    )
    settings.validate()
    report(f"seed {seed} (--seed {seed} replays the fault schedule); report in {directory}/", level="info")
    return run_and_report(settings, declared_by(url), sys.stdout)


def run_and_report(settings: Settings, declared: frozenset[Guarantee], stream: TextIO) -> int:
    """Run the workload under the nemeses, check the history, write the report; return the exit code.

    A worker that died of something else than the nemesis makes an otherwise clean run inconclusive.
    """
    from tenure.verify.checker import check
    from tenure.verify.history import read_history
    from tenure.verify.report import write_report
    from tenure.verify.runner import Runner

    outcome = Runner(settings).run()
    events = read_history(outcome.history)
    verdict = check(events, declared=declared)
    subtitle = f"{len(outcome.events)} events, {outcome.faults} faults, seed {settings.seed}"
    print(write_report(verdict, events, settings.report, subtitle=subtitle), file=stream)
    for problem in outcome.problems:
        report(problem, level="warning")
    if verdict.exit_code == 0 and outcome.problems:
        return 2
    return verdict.exit_code
