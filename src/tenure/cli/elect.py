"""The ``tenure elect`` command: run a child command only while this candidate leads an election."""

from __future__ import annotations

import argparse
import contextlib

import tenure
from tenure._core.durations import check_timeout
from tenure.cli.supervisor import (
    Interrupted,
    LeadershipHold,
    SignalInbox,
    Supervision,
    check_grace,
    report,
)


def run_elect(args: argparse.Namespace) -> int:
    """Campaign, run ``args.command`` while leader, campaign again after a loss; return the exit code.

    A loss of leadership stops CMD (SIGTERM, then SIGKILL after ``args.grace``) and sends this
    candidate back to standby: it campaigns again, and runs CMD anew with the new term when it
    leads again. The command ends when CMD exits by itself (tenure resigns and exits with CMD's
    code, or ``LEASE_LOST`` if the leadership turns out to have been lost meanwhile) or when a
    stop signal arrives (passed on to CMD; tenure resigns and exits 128+N).

    Raises ``ConfigurationError`` for bad input (before any I/O), ``AcquireTimeout`` when a
    campaign did not win within ``args.timeout``, ``BackendUnavailable`` when the backend cannot
    be reached and ``Interrupted`` when a stop signal came while campaigning.
    """
    coordinator = tenure.Coordinator(args.url)
    election = coordinator.election(args.name, value=args.value, ttl=args.ttl)
    timeout = check_timeout(args.timeout)
    grace = check_grace(args.grace)
    program = args.command[0]
    try:
        with SignalInbox() as inbox:
            report(f"campaigning in election {args.name!r} as {election.value!r}", level="info")
            while True:
                leadership = election.campaign(timeout=timeout)
                report(
                    f"leader of election {args.name!r} with term {leadership.term}; running {program!r}",
                    level="info",
                )
                supervision = Supervision(LeadershipHold(leadership), args.command, grace=grace, inbox=inbox)
                try:
                    code = supervision.run()
                except tenure.LeadershipLost as exc:  # lost before CMD was started: it never ran
                    report(str(exc), level="warning")
                    with contextlib.suppress(tenure.LockLost, tenure.BackendError):
                        leadership.resign()
                else:
                    if not supervision.stopped_for_loss or supervision.stop_signal is not None:
                        if not supervision.lost:
                            report(
                                f"resigned from election {args.name!r} (term {leadership.term})", level="info"
                            )
                        return code
                # Back to standby. A stop signal from now on abandons the campaign; one that came
                # while CMD was being stopped but after the last look at the inbox is seen here.
                inbox.raise_at_once = True
                pending = inbox.take()
                if pending:
                    raise Interrupted(pending[0])
                report(f"back to standby; campaigning again in election {args.name!r}", level="info")
    finally:
        coordinator.close()  # resigns if an error left this candidate leading
