"""Check a recorded history: one sort by time, one pass over the events, one pass over the holds.

What is checked (docs/verify.md says why each rule reads as it does):

- overlapping holds whose leases were both surely valid. A hold is surely valid from its
  ``acquire`` until its ``release`` or ``lost``, cut short at the start of a fault that hits its
  process (a paused, cut-off or skewed process cannot renew) or, unless the backend declares
  ``SURVIVES_FAILOVER``, at the start of a server fault;
- writes the fenced store accepted out of fence order (always a violation);
- fences that do not strictly grow from one acquisition to the next (with ``FENCING``);
- lost updates in each store: an accepted write whose value is not above the highest value that
  store accepted before it (a violation in the fenced store with ``FENCING``);
- stale writes: a write in a hold after another process acquired, so without a ``lost`` before
  it. Excused only when a fault struck the writer during the hold and the loss was reported at
  the end of that hold (frozen between its check and its write), or after a server fault the
  backend does not claim to survive; any other one is a silent stale write, a violation;
- writes outside any hold;
- recovery time from each fault to the next acquisition;
- stuck waiters: a process waiting while nobody held the lock for longer than ``stuck_after``.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from operator import attrgetter
from typing import Any

from tenure._core.guarantees import Guarantee
from tenure.verify.history import CRASH, SERVER, Event, fault_kind, read_and_written
from tenure.verify.verdict import (
    FINDINGS_PER_KIND,
    NS,
    Ended,
    Fault,
    Finding,
    Hold,
    Options,
    Status,
    Verdict,
)

__all__ = ["Fault", "Finding", "Hold", "Options", "Verdict", "check"]


class _Pass:
    """The state of the one pass over the sorted events."""

    def __init__(self, declared: frozenset[Guarantee], options: Options) -> None:
        self.survives = Guarantee.SURVIVES_FAILOVER in declared
        self.fencing = Guarantee.FENCING in declared
        self.options = options
        self.holds: list[Hold] = []
        self.holding: dict[str, Hold] = {}
        self.faults: list[Fault] = []
        self.open_faults: dict[tuple[str, str], Event] = {}
        self.waits: dict[str, list[tuple[int, int]]] = {}  # process -> [(from, to)] in order
        self.waiting: dict[str, int] = {}  # process -> since when it waits
        self.findings: list[Finding] = []
        self.counts: Counter[str] = Counter()
        self.kept: Counter[str] = Counter()
        self.last_acquire = -1
        self.max_fence: int | None = None
        self.fenced_floor: int | None = None  # the highest fence the fenced store accepted
        self.value: dict[str, int] = {"fenced": 0, "unfenced": 0}  # each store's value, as written
        self.writes: Counter[str] = Counter()
        self.stale: list[tuple[Event, Hold]] = []
        self.pending_faults: list[int] = []  # start times waiting for the next acquisition
        self.recoveries: list[int] = []
        self.ttls: set[float] = set()
        self.processes: set[str] = set()

    def find(self, kind: str, event: Event, violation: bool, message: str) -> None:
        """Count a finding, and keep it while fewer than FINDINGS_PER_KIND of its kind are kept."""
        self.counts[kind] += 1
        if self.kept[kind] < FINDINGS_PER_KIND:
            self.kept[kind] += 1
            self.findings.append(Finding(kind, event.time, event.process, event.fence, violation, message))

    def run(self, events: list[Event]) -> None:
        """Fold every event, in time order."""
        for event in events:
            self.processes.add(event.process)
            kind = event.type
            if kind == "write":
                self.write(event)
            elif kind == "acquire":
                self.acquire(event)
            elif kind == "fault":
                self.fault(event)
            elif kind == "lost":
                hold = self.holding.get(event.process)
                if hold is not None and hold.lost_at is None:
                    hold.lost_at = event.time
            else:
                self.end_hold(event.process, event.time, "release" if event.ok else "refused")
                self.waiting[event.process] = event.time
        end = events[-1].time if events else 0
        for process in list(self.holding):
            self.end_hold(process, max(end, self.holding[process].start), "open")
        for process, since in self.waiting.items():
            self.waits.setdefault(process, []).append((since, end))
        for (target, fault), start in self.open_faults.items():
            self.faults.append(Fault(target, fault, start.time, end, start.ok))

    def acquire(self, event: Event) -> None:
        process, time = event.process, event.time
        since = self.waiting.pop(process, None)
        if since is not None:
            self.waits.setdefault(process, []).append((since, time))
        if not event.ok:
            self.waiting[process] = time
            self.counts["failed_acquisitions"] += 1
            return
        if process in self.holding:
            self.end_hold(process, time, "reacquire")
        self.counts["acquisitions"] += 1
        if event.ttl is not None:
            self.ttls.add(event.ttl)
        fence = event.fence
        if fence is None or (self.max_fence is not None and fence <= self.max_fence):
            self.find(
                "fence-regression",
                event,
                self.fencing,
                "acquired without a fence" if fence is None else f"fence {fence} after {self.max_fence}",
            )
        if fence is not None and (self.max_fence is None or fence > self.max_fence):
            self.max_fence = fence
        for other in self.holding.values():
            if other.superseded_at is None:
                other.superseded_at = time
        hold = Hold(process, fence, event.ttl, time)
        if any(self._strikes(process, key, start) for key, start in self.open_faults.items()):
            hold.fault_at = time  # acquired while already faulted: never surely valid
        self.holds.append(hold)
        self.holding[process] = hold
        self.last_acquire = time
        for start in self.pending_faults:
            self.recoveries.append(time - start)
        self.pending_faults.clear()

    def _strikes(self, process: str, key: tuple[str, str], start: Event) -> bool:
        """Whether the fault ``key`` (in progress) takes away the certainty of ``process``'s lease."""
        if not start.ok:
            return False
        return not self.survives if key[1] == SERVER else key[0] == process

    def end_hold(self, process: str, time: int, ended: Ended) -> None:
        hold = self.holding.pop(process, None)
        if hold is None:
            return
        hold.end, hold.ended = time, ended
        hold.valid_end = min(t for t in (time, hold.fault_at, hold.lost_at) if t is not None)
        if hold.superseded_at is not None:
            self.counts["superseded_holds"] += 1

    def write(self, event: Event) -> None:
        store = event.store or "unfenced"
        self.writes[f"{store}_{'accepted' if event.ok else 'rejected'}"] += 1
        hold = self.holding.get(event.process)
        if hold is None:
            self.find("unheld-write", event, True, f"wrote to the {store} store while holding no lease")
        elif hold.superseded_at is not None:
            self.stale.append((event, hold))
        if not event.ok:
            return
        if store == "fenced":
            fence = event.fence if event.fence is not None else -1
            if self.fenced_floor is not None and fence < self.fenced_floor:
                self.find(
                    "fence-order",
                    event,
                    True,
                    f"the fenced store accepted fence {fence} after fence {self.fenced_floor}",
                )
            else:
                self.fenced_floor = fence
        read, written = read_and_written(event)
        current = self.value[store]
        if read < current:
            self.find(
                f"lost-update-{store}",
                event,
                store == "fenced" and self.fencing,
                f"the {store} store held {current} when it accepted {written}, computed from {read}: "
                f"{current - read} increment{'s' * (current - read > 1)} lost",
            )
        elif read > current:
            self.counts["unrecorded_writes"] += 1  # a killed process wrote but did not record it
        self.value[store] = written

    def fault(self, event: Event) -> None:
        kind, phase, target = fault_kind(event)
        key = (target, kind)
        if phase == "end":
            start = self.open_faults.pop(key, None)
            if start is not None:
                self.faults.append(Fault(target, kind, start.time, event.time, start.ok))
            return
        if key in self.open_faults:  # started again without an end: close the first band here
            old = self.open_faults[key]
            self.faults.append(Fault(target, kind, old.time, event.time, old.ok))
        self.open_faults[key] = event
        if not event.ok:
            self.counts["faults_not_run"] += 1
            return
        self.counts[f"fault_{kind}"] += 1
        self.pending_faults.append(event.time)
        if kind == SERVER:
            struck = [] if self.survives else list(self.holding.values())
        else:
            struck = [self.holding[target]] if target in self.holding else []
        for hold in struck:
            if hold.fault_at is None:
                hold.fault_at = event.time
        if kind == CRASH:
            self.end_hold(target, event.time, "crash")
            self.waiting.pop(target, None)  # a killed process waits no more
            del self.open_faults[key]  # a crash is a moment, not a band
            self.faults.append(Fault(target, kind, event.time, event.time, True))


def check(
    events: Iterable[Event], *, declared: frozenset[Guarantee], options: Options | None = None
) -> Verdict:
    """Check a history against the guarantees the backend ``declared``; see the module docstring."""
    ordered = sorted(events, key=attrgetter("time"))  # stable: ties keep the file's order
    state = _Pass(declared, options or Options())
    state.run(ordered)
    _stale_writes(state)
    overlap_ns = _overlaps(state)
    stuck_after = state.options.stuck_after
    if stuck_after is None:
        stuck_after = 2 * max(state.ttls, default=1.0) + 1
    _stuck_waiters(state, int(stuck_after * NS), ordered[-1].time if ordered else 0)
    summary = _summary(state, ordered, overlap_ns, stuck_after, declared)
    reasons = [f.message for f in state.findings if f.violation]
    status: Status = "violation" if any(f.violation for f in state.findings) else "ok"
    if status == "ok":
        if state.counts["acquisitions"] < state.options.min_acquisitions:
            reasons.append(
                f"only {state.counts['acquisitions']} acquisitions "
                f"(at least {state.options.min_acquisitions} are needed to judge)"
            )
        if state.counts["faults_not_run"]:
            not_run = sorted({f.kind for f in state.faults if not f.ran})
            reasons.append(f"a nemesis could not run: {', '.join(not_run)}")
        status = "inconclusive" if reasons else "ok"
    summary["status"] = status
    summary["reasons"] = reasons[:20]
    findings = sorted(state.findings, key=attrgetter("time"))
    return Verdict(status, summary, tuple(findings), tuple(state.holds), tuple(state.faults), tuple(reasons))


def _stale_writes(state: _Pass) -> None:
    """Classify the writes made after another process acquired: excused, or silent (a violation)."""
    for event, hold in state.stale:
        state.counts["stale_writes"] += 1
        if hold.lost_at is not None and hold.lost_at <= event.time:
            state.counts["stale_writes_told"] += 1  # told first: the write was its own mistake
            continue
        # Frozen between its check and its write, a correct holder is told when the hold ends.
        struck = hold.fault_at is not None and hold.fault_at <= event.time
        if struck and (hold.told or hold.ended in ("crash", "open")):
            state.counts["stale_writes_excused"] += 1
            continue
        late = (event.time - (hold.superseded_at or hold.start)) / NS
        state.find(
            "silent-stale-write",
            event,
            True,
            f"{event.process} wrote to the {event.store} store with fence {event.fence} {late:.3f} s "
            "after another process acquired, and was never told it had lost the lease",
        )


def _overlaps(state: _Pass) -> int:
    """Find holds that began while another process's lease was surely valid; return the overlap in ns."""
    reach, owner, total = -1, None, 0
    for hold in state.holds:  # in order of start
        if hold.valid_end <= hold.start:
            continue
        if hold.start < reach and owner is not None and owner.process != hold.process:
            total += min(reach, hold.valid_end) - hold.start
            event = Event(hold.process, hold.start, "acquire", hold.fence)
            state.find(
                "overlap",
                event,
                True,
                f"{hold.process} acquired (fence {hold.fence}) while {owner.process}'s lease "
                f"(fence {owner.fence}) was still valid for {(reach - hold.start) / NS:.3f} s",
            )
        if hold.valid_end > reach:
            reach, owner = hold.valid_end, hold
    return total


def _stuck_waiters(state: _Pass, stuck_ns: int, end: int) -> None:
    """Find processes that waited while the lock was free (and no server fault) for over ``stuck_ns``."""
    busy = sorted([(h.start, h.end) for h in state.holds])
    busy += [(f.start, f.end) for f in state.faults if f.kind == SERVER]
    busy.sort()
    gaps: list[tuple[int, int]] = []
    reach = busy[0][0] if busy else end
    for start, stop in busy:
        if start - reach > stuck_ns:
            gaps.append((reach, start))
        reach = max(reach, stop)
    if end - reach > stuck_ns:
        gaps.append((reach, end))
    for process, waits in state.waits.items():
        starts = [w[0] for w in waits]
        for g0, g1 in gaps:
            i = bisect.bisect_right(starts, g1) - 1
            while i >= 0 and waits[i][1] > g0:  # waits are disjoint: only the last few can meet the gap
                w0, w1 = waits[i]
                if min(w1, g1) - max(w0, g0) > stuck_ns:
                    waited = (min(w1, g1) - max(w0, g0)) / NS
                    event = Event(process, max(w0, g0), "acquire")
                    state.find("stuck-waiter", event, True, f"{process} waited {waited:.3f} s, lock free")
                    break
                i -= 1


def _summary(
    state: _Pass, events: list[Event], overlap_ns: int, stuck_after: float, declared: frozenset[Guarantee]
) -> dict[str, Any]:
    counts = state.counts
    recoveries = sorted(state.recoveries)
    superseded = counts["superseded_holds"]
    untold = {id(hold) for event, hold in state.stale if hold.lost_at is None or hold.lost_at > event.time}
    faults = {k.removeprefix("fault_"): v for k, v in sorted(counts.items()) if k.startswith("fault_")}
    return {
        "declared": sorted(g.name for g in declared),
        "events": len(events),
        "seconds": round((events[-1].time - events[0].time) / NS, 3) if events else 0.0,
        "processes": len(state.processes),
        "acquisitions": counts["acquisitions"],
        "failed_acquisitions": counts["failed_acquisitions"],
        "faults": faults,
        "faults_not_run": counts["faults_not_run"],
        "overlaps": counts["overlap"],
        "overlap_seconds": round(overlap_ns / NS, 6),
        "fence_regressions": counts["fence-regression"],
        "fence_order_violations": counts["fence-order"],
        "writes": dict(sorted(state.writes.items())),
        "lost_updates": {"fenced": counts["lost-update-fenced"], "unfenced": counts["lost-update-unfenced"]},
        "superseded_holds": superseded,
        "told_before_write": superseded - len(untold),
        "stale_writes": counts["stale_writes"],
        "stale_writes_told": counts["stale_writes_told"],
        "stale_writes_excused": counts["stale_writes_excused"],
        "silent_stale_writes": counts["silent-stale-write"],
        "unheld_writes": counts["unheld-write"],
        "recovery_seconds": {
            "count": len(recoveries),
            "p50": round(recoveries[len(recoveries) // 2] / NS, 3) if recoveries else None,
            "max": round(recoveries[-1] / NS, 3) if recoveries else None,
        },
        "unrecovered_faults": len(state.pending_faults),
        "unrecorded_writes": counts["unrecorded_writes"],
        "stuck_waiters": counts["stuck-waiter"],
        "stuck_after_seconds": stuck_after,
    }
