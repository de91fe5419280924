"""Owner tokens: the unguessable secret every mutation of a lease carries."""

from __future__ import annotations

import functools
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field


def new_token() -> str:
    """Return a fresh owner token: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def holder_label() -> str:
    """Return a readable description of this process and thread, shown by ``tenure inspect``."""
    return f"{_process_label(os.getpid())}/{threading.current_thread().name}"


@functools.lru_cache(maxsize=1)
def _process_label(pid: int) -> str:
    # Keyed by pid so that a forked child does not reuse its parent's label.
    return f"{socket.gethostname()}/pid {pid}"


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds a lease: the secret ``token`` proves it, the ``label`` only describes it."""

    token: str = field(default_factory=new_token, repr=False)
    label: str = field(default_factory=holder_label)
