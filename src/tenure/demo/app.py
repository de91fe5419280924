"""``tenure demo``: its options, the checks before anything starts, and the run of all scenarios."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import tenure
from tenure.demo.report import Progress, table, verdicts
from tenure.demo.scenarios import SCENARIOS, Outcome, Settings, run_scenario
from tenure.demo.timeline import write_timeline

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _number(kind: Callable[[str], float], minimum: float, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not value >= minimum or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's own options to ``parser`` (the backend comes from the global ``--url``)."""
    parser.description = parser.description or (
        "The flash-sale oversell demo: worker processes buy a stock of N units by read-decrement-write, "
        "(a) without a lock, (b) with a tenure lock, (c) with a lock and fenced writes while a holder is "
        "frozen (SIGSTOP) past its ttl. Prints a table and writes a timeline picture (SVG). "
        "The backend is --url, else $TENURE_URL, else a fresh SQLite file in the output folder."
    )
    parser.add_argument(
        "--stock",
        type=_number(int, 1, "a whole number >= 1"),
        default=20,
        metavar="N",
        help="units on sale (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=_number(int, 2, "a whole number >= 2"),
        default=5,
        metavar="N",
        help="buyer processes per scenario (default: %(default)s)",
    )
    parser.add_argument(
        "--ttl",
        type=_number(float, 0.05, "a number of seconds >= 0.05"),
        default=0.8,
        metavar="SECONDS",
        help="lease ttl in scenario (c), where a holder is frozen past it (default: %(default)s)",
    )
    parser.add_argument(
        "--think",
        type=_number(float, 0.0, "a number of seconds >= 0"),
        default=0.01,
        metavar="SECONDS",
        help="time between reading the stock and writing it back: the race window (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for the shop and lock databases, worker logs, results.json and "
        "timeline.svg (default: a new temporary folder)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the three scenarios, print the table and the timeline's path; return the exit code.

    0: (a) shown, (b) and (c) exact and (c) rejected the paused holder's stale write;
    1: the demo failed to show that, or the backend could not be reached;
    2: bad options or a backend the demo cannot use; 130: interrupted.
    """
    url = getattr(args, "url", None) or os.environ.get("TENURE_URL")
    try:
        if not hasattr(signal, "SIGSTOP"):
            raise tenure.ConfigurationError("the demo freezes a worker with SIGSTOP, which this OS lacks")
        if url:
            _check_url(url)  # before creating any folder
        settings = _settings(args, url)
    except (tenure.ConfigurationError, OSError) as exc:
        print(f"tenure demo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        note = _connect(settings.url)
    except tenure.TenureError as exc:
        print(f"tenure demo: error: cannot use the backend: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"tenure demo: {settings.stock} units, {settings.workers} buyer processes per scenario, "
        f"backend {tenure.parse_url(settings.url)}; files in {settings.out}{note}",
        file=sys.stderr,
    )
    progress = Progress(sys.stderr)
    outcomes: list[Outcome] = []
    try:
        for scenario in SCENARIOS:
            outcomes.append(run_scenario(scenario, settings, progress))
    except KeyboardInterrupt:
        print("\ntenure demo: interrupted; the worker processes were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    return _report(outcomes, settings)


def _check_url(url: str) -> None:
    """Raise ``ConfigurationError`` unless separate processes can share locks through ``url`` (no I/O)."""
    coord = tenure.Coordinator(url)
    guarantees = coord.guarantees
    coord.close()  # never connected: nothing to release
    if not {tenure.Guarantee.CROSS_PROCESS, tenure.Guarantee.CROSS_HOST} & guarantees:
        raise tenure.ConfigurationError(
            f"{tenure.parse_url(url).scheme}:// keeps its locks inside one process, but the demo's "
            "buyers are separate processes; use sqlite:///PATH.db (the default) or a server URL"
        )


def _connect(url: str) -> str:
    """Connect once, so an unreachable backend fails here rather than in every worker.

    Return a note for the header line if the backend's fences are only best-effort.
    """
    with tenure.Coordinator(url) as coord:
        if tenure.Guarantee.FENCING not in coord.guarantees:
            return " (note: this backend's fences are best-effort, it does not guarantee FENCING)"
    return ""


def _settings(args: argparse.Namespace, url: str | None) -> Settings:
    if args.out is None:
        out = Path(tempfile.mkdtemp(prefix="tenure-demo-"))
    else:
        out = Path(args.out).expanduser().resolve()
        out.mkdir(parents=True, exist_ok=True)
    if not url:
        if "?" in str(out) or "#" in str(out):
            raise tenure.ConfigurationError(f"the output folder {out} cannot be part of a sqlite:// URL")
        for stale in out.glob("locks.db*"):  # a fresh lock file, so earlier runs cannot interfere
            stale.unlink()
        url = f"sqlite://{out / 'locks.db'}"
    for stale in out.glob("shop.db*"):
        stale.unlink()
    return Settings(
        url=url,
        out=out,
        run_id=secrets.token_hex(4),
        stock=int(args.stock),
        workers=int(args.workers),
        ttl=float(args.ttl),
        think=float(args.think),
        max_run=30.0 + 0.2 * args.stock,
    )


def _report(outcomes: Sequence[Outcome], settings: Settings) -> int:
    """Print the table and verdicts, write the timeline and results.json; return the exit code."""
    print()
    print(table(outcomes))
    print()
    failed = False
    for good, sentence in verdicts(outcomes):
        failed |= not good
        print(textwrap.fill(sentence, 100, initial_indent="  " if good else "! ", subsequent_indent="    "))
    for outcome in outcomes:
        for problem in outcome.problems:
            failed = True
            print(f"! ({outcome.scenario.key}) {problem}")
    subtitle = (
        f"{settings.stock} units, {settings.workers} buyer processes, read→write gap "
        f"{settings.think * 1000:g} ms, backend {tenure.parse_url(settings.url)}"
    )
    svg = write_timeline(settings.out / "timeline.svg", outcomes, workers=settings.workers, subtitle=subtitle)
    (settings.out / "results.json").write_text(json.dumps([_summary(o) for o in outcomes], indent=2))
    print()
    print(f"timeline: {svg}")
    print(f"details:  {settings.out / 'results.json'}")
    if failed:
        print("tenure demo: FAILED: see the lines marked '!' above", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _summary(o: Outcome) -> dict[str, object]:
    return {
        "scenario": o.scenario.key,
        "title": o.scenario.title,
        "stock": o.stock,
        "orders_accepted": o.orders,
        "stock_left": o.stock_left,
        "units_oversold": o.oversold,
        "stale_writes_rejected": o.rejected,
        "lock_lost": o.history.lost,
        "exact": o.exact,
        "ttl": o.ttl,
        "duration": round(o.duration, 3),
        "pause": asdict(o.pause) if o.pause else None,
        "paused_write_rejected": o.paused_write_rejected,
        "problems": o.problems,
    }
