"""Lock names, namespaced keys and stable key hashes."""

from __future__ import annotations

import hashlib

from tenure._exceptions import ConfigurationError

MAX_NAME_BYTES = 512
"""Longest lock name, in UTF-8 bytes; long enough for paths, short enough for every backend."""


def validate_name(name: object, *, what: str = "lock name") -> str:
    """Return ``name`` if it is a usable name, else raise ``ConfigurationError``."""
    if not isinstance(name, str):
        raise ConfigurationError(f"{what} must be a str, not {type(name).__name__}")
    if not name:
        raise ConfigurationError(f"{what} must not be empty")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, e.g. from undecodable bytes in argv
        raise ConfigurationError(f"{what} {name!r} is not valid text (it has a lone surrogate)") from None
    if size > MAX_NAME_BYTES:
        raise ConfigurationError(
            f"{what} is {size} bytes long; the limit is {MAX_NAME_BYTES} (hash long names yourself)"
        )
    if "\x00" in name:
        raise ConfigurationError(f"{what} must not contain NUL characters")
    return name


def namespaced_key(namespace: str, name: str) -> str:
    """Return the backend key for ``name`` inside ``namespace``."""
    return f"{namespace}:{name}" if namespace else name


def key_hash64(key: str) -> int:
    """Return a stable signed 64-bit hash of ``key`` (for advisory-lock ids and similar).

    BLAKE2b, not Python's ``hash()``, so every process and version agrees; 64 bits so distinct
    names practically never collide (tooz's 16-bit keys do).
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def key_digest(key: str, *, length: int = 40) -> str:
    """Return a stable hex digest of ``key`` of ``length`` characters (for length-capped names)."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=(length + 1) // 2).hexdigest()[:length]
