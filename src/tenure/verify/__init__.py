"""``tenure verify``: record what worker processes did under faults, check it, and draw it.

The history format and the checker are public so that other libraries' histories can be checked
too (docs/verify.md).
"""

from __future__ import annotations

from tenure.verify.checker import Fault, Finding, Hold, Options, Verdict, check
from tenure.verify.history import Event, read_history, write_history

__all__ = [
    "Event",
    "Fault",
    "Finding",
    "Hold",
    "Options",
    "Verdict",
    "check",
    "read_history",
    "write_history",
]
