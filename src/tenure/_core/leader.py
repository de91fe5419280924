"""Who leads an election: its proclaimed value and its term."""

from __future__ import annotations

from dataclasses import dataclass

from tenure._core.keys import namespaced_key
from tenure._exceptions import ConfigurationError

MAX_VALUE_BYTES = 255
"""Longest value a candidate may proclaim, in UTF-8 bytes: what every backend stores whole."""


@dataclass(frozen=True, slots=True)
class Leader:
    """The current leader of an election.

    ``value`` is what the leader proclaimed when it campaigned (by default its host, pid and
    thread); ``term`` is its fence: it grows with every new leader, so a resource that remembers
    the highest term it has seen can reject the writes of a deposed leader.
    """

    value: str
    term: int


def election_key(namespace: str, name: str) -> str:
    """Return the backend key of election ``name``: apart from every lock's key, in any namespace."""
    return namespaced_key(namespace, name, kind="election")


def check_value(value: object) -> str:
    """Return ``value`` if a candidate may proclaim it, else raise ``ConfigurationError``."""
    if not isinstance(value, str):
        raise ConfigurationError(f"election value must be a str, not {type(value).__name__}")
    if not value:
        raise ConfigurationError("election value must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, e.g. from undecodable bytes in argv
        raise ConfigurationError(
            f"election value {value!r} is not valid text (it has a lone surrogate)"
        ) from None
    if size > MAX_VALUE_BYTES:
        raise ConfigurationError(f"election value is {size} bytes long; the limit is {MAX_VALUE_BYTES}")
    if any(ch in value for ch in "\x00\r\n"):
        raise ConfigurationError("election value must be one line without NUL characters")
    return value
