"""The oversell demo (``tenure demo``): a flash sale without a lock, with one, and with fencing.

Worker processes buy from a stock of N units by read-decrement-write on a shared SQLite "shop":
(a) without a lock they oversell, (b) under a tenure lock the count is exact, and (c) with the
lease's fence passed to the shop, a holder frozen by SIGSTOP past its ttl has its late write
rejected. The CLI wires ``add_arguments`` and ``run``; ``python -m tenure.demo`` runs it alone.
"""

from tenure.demo.app import add_arguments, run

__all__ = ["add_arguments", "run"]
