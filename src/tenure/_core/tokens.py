"""Owner tokens: the unguessable secret every mutation of a lease carries."""

from __future__ import annotations

import os
import socket
import threading

from tenure._core.leader import MAX_VALUE_BYTES

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
        cached = (pid, name, _printable(f"{socket.gethostname()}/pid {pid}/{name}"))
        _labels.value = cached
    label: str = cached[2]
    return label


def _printable(text: str) -> str:
    """Return ``text`` as one printable line of at most ``MAX_VALUE_BYTES``: a valid election value.

    Nobody chose a thread's name for a label, so it is made valid rather than refused: newlines,
    NULs, other control characters and lone surrogates are escaped, and the end is cut.
    """
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text.encode("utf-8")[:MAX_VALUE_BYTES].decode("utf-8", "ignore")


class Owner:
    """Who holds a lease: the secret ``token`` proves it, the ``label`` only describes it."""

    __slots__ = ("label", "token")

    def __init__(self, token: str | None = None, label: str | None = None) -> None:
        self.token = new_token() if token is None else token
        self.label = holder_label() if label is None else label

    def __repr__(self) -> str:
        return f"Owner(label={self.label!r})"  # never the token
