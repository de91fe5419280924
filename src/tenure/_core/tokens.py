"""Owner tokens: the unguessable secret every mutation of a lease carries."""

from __future__ import annotations

import os
import socket
import threading

_labels = threading.local()


def new_token() -> str:
    """Return a fresh owner token: 128 random bits, as 32 hex digits."""
    return os.urandom(16).hex()  # what secrets.token_hex does, minus two calls on a hot path


def holder_label() -> str:
    """Return a readable description of this process and thread, shown by ``tenure inspect``."""
    pid, name = os.getpid(), threading.current_thread().name
    cached = getattr(_labels, "value", None)
    # Cached per thread (acquisitions are hot); checked against pid and name, which can change.
    if cached is None or cached[0] != pid or cached[1] != name:
        cached = (pid, name, f"{socket.gethostname()}/pid {pid}/{name}")
        _labels.value = cached
    label: str = cached[2]
    return label


class Owner:
    """Who holds a lease: the secret ``token`` proves it, the ``label`` only describes it."""

    __slots__ = ("label", "token")

    def __init__(self, token: str | None = None, label: str | None = None) -> None:
        self.token = new_token() if token is None else token
        self.label = holder_label() if label is None else label

    def __repr__(self) -> str:
        return f"Owner(label={self.label!r})"  # never the token
