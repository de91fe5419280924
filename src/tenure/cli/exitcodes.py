"""Exit codes of the ``tenure`` command, shared by its subcommands and their ``--help``."""

from __future__ import annotations

OK = 0
FAILURE = 1
"""A tenure error with no code of its own below."""
USAGE = 2
"""Bad arguments, lock name, TTL, timeout, URL or URL option (argparse uses 2 as well)."""
UNAVAILABLE = 69
"""EX_UNAVAILABLE from sysexits.h: the backend cannot be reached."""
TEMPFAIL = 75
"""EX_TEMPFAIL from sysexits.h: the lock, leadership or rate permit could not be had within the timeout."""
LEASE_LOST = 79
"""The lease was lost while CMD ran, so CMD was stopped; its work may overlap another holder's.

For ``tenure elect``, only when CMD exited by itself and the leadership turned out to have been
lost meanwhile: a leadership lost while CMD runs sends tenure back to campaigning instead.

79 is the first code after the sysexits.h range (64-78), so it never reads as one of those
meanings, and it is not 124, which GNU timeout uses and which people read as "timed out"
(that is 75 here).
"""
CANNOT_EXECUTE = 126
"""CMD exists but could not be executed (as in the shell)."""
NOT_FOUND = 127
"""CMD was not found (as in the shell)."""
SIGNAL_BASE = 128
"""128 + N: tenure was stopped by signal N, or CMD was killed by signal N (as in the shell)."""


def from_signal(signum: int) -> int:
    """Return the exit code of a process stopped by ``signum``, as a shell reports it."""
    return SIGNAL_BASE + signum


HELP = f"""\
exit codes:
  {OK:<6} success; for "lock", "elect" and "limit", CMD's own exit code is passed through
  {FAILURE:<6} a tenure error not listed here
  {USAGE:<6} usage error: bad arguments, name, TTL, timeout, value, URL or URL option
  {UNAVAILABLE:<6} the backend cannot be reached (EX_UNAVAILABLE)
  {TEMPFAIL:<6} lock: the lock could not be had within --timeout (EX_TEMPFAIL);
         elect: not leader within --timeout; limit: no permit due within --timeout
  {LEASE_LOST:<6} lock: the lease was lost while CMD ran, and CMD was stopped;
         elect: CMD exited, but the leadership had been lost meanwhile
  {CANNOT_EXECUTE:<6} lock, elect, limit: CMD could not be executed
  {NOT_FOUND:<6} lock, elect, limit: CMD was not found
  128+N  tenure got signal N (SIGINT, SIGTERM or SIGHUP), or CMD was killed by signal N
"""
