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


MAX_NAMESPACE_BYTES = 128
"""Longest namespace, in UTF-8 bytes: a key prefix, not a place for data."""

KINDS = frozenset(
    {
        "lock",
        "election",
        "semaphore",
        "permit",
        "reader",
        "ticket",
        "rwlock",
        "sequence",
        "idempotency",
        "ratelimit",
        "breaker",
    }
)
"""What a name can name; each kind is its own space of names, so a lock and an election never meet.

Not "create": PostgreSQL's table creators take turns on the key ``tenure:create:<table>``.
"""

# Escaped in a namespace: '%' (the escape), ':' (so the first ':' of a key ends the namespace)
# and the braces (a namespace starting with '}' would empty the Redis hash tag of the lock's keys).
_NAMESPACE_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})


def validate_namespace(namespace: object) -> str:
    """Return ``namespace`` if it is a usable key prefix, else raise ``ConfigurationError``.

    Any text (empty included) up to ``MAX_NAMESPACE_BYTES``, without NUL or lone surrogates:
    ``namespaced_key`` escapes what would make two keys meet.
    """
    if not isinstance(namespace, str):
        raise ConfigurationError(f"namespace must be a str, not {type(namespace).__name__}")
    if "\x00" in namespace:
        raise ConfigurationError("namespace must not contain NUL characters")
    try:
        size = len(namespace.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigurationError(f"namespace {namespace!r} is not valid text (a lone surrogate)") from None
    if size > MAX_NAMESPACE_BYTES:
        raise ConfigurationError(f"namespace is {size} bytes long; the limit is {MAX_NAMESPACE_BYTES}")
    return namespace


def namespaced_key(namespace: str, name: str, *, kind: str = "lock") -> str:
    """Return the backend key of the ``kind`` (lock, election, ...) called ``name`` in ``namespace``.

    The key is ``<namespace>:<kind>:<name>`` with ``%``, ``:`` and the braces of the namespace
    percent-escaped: the first ``:`` ends the namespace, the second the kind, and the rest is the
    name, so no two (namespace, kind, name) triples give one key (``a`` + ``b:c`` and ``a:b`` +
    ``c`` do not meet, nor a lock and an election of one name). Readable: ``tenure:lock:orders:42``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of key {kind!r}; one of {sorted(KINDS)}")
    return f"{namespace.translate(_NAMESPACE_ESCAPES)}:{kind}:{name}"


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


_PRIMITIVE_OF_KIND = {"permit": "semaphore", "reader": "rwlock", "ticket": "sequence"}


def key_kind(key: str) -> str:
    """Return the primitive a backend key belongs to (a permit slot's is "semaphore"), for metrics.

    The namespace is escaped, so its first ``:`` ends it and the second ends the kind.
    """
    parts = key.split(":", 2)
    kind = parts[1] if len(parts) == 3 else "lock"
    return _PRIMITIVE_OF_KIND.get(kind, kind)
