"""Idempotency keys without I/O: key checks, payload fingerprints and the record's bytes.

A record is what a finished run leaves under its key: the fingerprint of the payload it ran with
and its outcome (a result, or an error the caller marked final). Backends store it as opaque
bytes, so its layout lives here, once:

    b"T1" | kind (b"R" result, b"E" error) | 32-byte SHA-256 fingerprint | body

A result's body is what the serializer made of it; an error's is JSON: its type's qualified name,
its message and its arguments (when they are JSON).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from tenure._core.keys import MAX_NAME_BYTES, key_digest
from tenure._exceptions import ConfigurationError, IdempotencyError

if TYPE_CHECKING:
    from tenure._core.holder import HolderInfo

MAX_KEY_CHARS = 255
"""Longest idempotency key (Stripe's limit): room for a UUID with a prefix, not for data."""

MAGIC = b"T1"
RESULT, ERROR = b"R", b"E"
FINGERPRINT_BYTES = 32
HEADER_BYTES = len(MAGIC) + 1 + FINGERPRINT_BYTES


class Serializer(Protocol):
    """Turns a result into bytes and back; ``JSONSerializer`` is the default."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JSONSerializer:
    """Results as compact UTF-8 JSON: what JSON can hold comes back equal (tuples as lists)."""

    def dumps(self, value: Any) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise IdempotencyError(
                f"the result cannot be recorded as JSON ({exc}); return JSON values or pass serializer="
            ) from exc

    def loads(self, data: bytes) -> Any:
        # dumps wrote UTF-8; decoded as json.loads(bytes) would, without its sniffing for UTF-16/32.
        return json.loads(data.decode("utf-8", "surrogatepass"))


def check_key(key: object) -> str:
    """Return ``key`` if it is a usable idempotency key, else raise ``ConfigurationError``.

    1 to 255 characters of printable text: what a client can send in a header.
    """
    if not isinstance(key, str):
        raise ConfigurationError(f"idempotency key must be a str, not {type(key).__name__}")
    if not 0 < len(key) <= MAX_KEY_CHARS:
        raise ConfigurationError(f"idempotency key must be 1 to {MAX_KEY_CHARS} characters, got {len(key)}")
    if not key.isprintable():
        raise ConfigurationError(f"idempotency key {key!r} must be printable text (no control characters)")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(f"idempotency key {key!r} is not valid text (a lone surrogate)") from None
    return key


def run_name(name: str, key: str) -> str:
    """Return the name under which ``key`` of the idempotency space ``name`` is held.

    ``%`` and ``:`` of the space's name are escaped, so the first ``:`` ends it and no two
    (space, key) pairs meet. A pair too long for a lock name keeps the key's digest instead
    (``#`` and 64 hex digits of BLAKE2b: meeting another key would take a preimage).
    """
    return run_name_in(space_prefix(name), key)


def space_prefix(name: str) -> str:
    """Return what every run name of the space ``name`` starts with: the name escaped, and ``:``."""
    return name.replace("%", "%25").replace(":", "%3A") + ":"


def run_name_in(prefix: str, key: str) -> str:
    """Return ``run_name`` of ``key`` from its space's ``space_prefix`` (computed once per space)."""
    whole = prefix + key
    if len(whole.encode("utf-8")) <= MAX_NAME_BYTES:
        return whole
    return f"{prefix}#{key_digest(key, length=64)}"


def fingerprint(payload: object, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
    """Return the SHA-256 of ``payload`` (bytes or str), else of the call's arguments as JSON.

    Arguments are made canonical (sorted keys; dataclasses, sets, bytes and objects with
    ``model_dump`` turned into plain values), so equal calls give one fingerprint in every
    process. Raises ``ConfigurationError`` when they cannot be: pass ``payload=`` then.
    """
    if payload is not None:
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise ConfigurationError(f"payload must be bytes or str, not {type(payload).__name__}")
        digest = hashlib.sha256(b"payload\x00")
        digest.update(payload)  # no copy of a large request body
        return digest.digest()
    if not args and not kwargs:
        return _NO_ARGUMENTS
    try:
        text = _ARGUMENTS_JSON.encode([list(args), dict(kwargs)])
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot fingerprint the call's arguments ({exc}); pass payload= (the request's bytes)"
        ) from exc
    return _arguments_print(text)


def _arguments_print(text: str) -> bytes:
    return hashlib.sha256(b"arguments\x00" + text.encode("utf-8")).digest()


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": type(value).__qualname__, **dataclasses.asdict(value)}
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return {"__model__": type(value).__qualname__, **dump(mode="json")}
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": bytes(value).hex()}
    raise TypeError(f"{type(value).__name__} is not plain data")


# What ``json.dumps(..., sort_keys=True, default=_plain, allow_nan=False)`` builds on every call,
# built once: an encoder keeps no state between calls, and building one costs as much as a
# small encoding.
_ARGUMENTS_JSON = json.JSONEncoder(sort_keys=True, default=_plain, allow_nan=False)
_NO_ARGUMENTS = _arguments_print(_ARGUMENTS_JSON.encode([[], {}]))  # a call without arguments


class Recorded(NamedTuple):
    """A finished run's record, as ``begin_run`` finds it."""

    record: bytes
    """What ``finish_run`` stored (``tenure._core.idempotency.encode``): opaque to the store."""
    fence: int
    """The fence of the run that stored it."""
    remaining: float | None
    """Seconds the record still lives; None where the store did not read it: a hit of
    ``begin_run``, whose replay does not need it, may leave it out (``read_record`` reads it)."""


class Outcome(NamedTuple):
    """A record read back: the fingerprint it was run with, and its result or error."""

    fingerprint: bytes
    is_error: bool
    body: bytes


def encode(fingerprint: bytes, body: bytes, *, error: bool = False) -> bytes:
    """Return the record of a run with ``fingerprint`` that ended with ``body``."""
    assert len(fingerprint) == FINGERPRINT_BYTES
    return MAGIC + (ERROR if error else RESULT) + fingerprint + body


def decode(record: bytes) -> Outcome:
    """Return what ``record`` holds; raise ``IdempotencyError`` if it is not a tenure record."""
    kind = record[2:3]
    if len(record) < HEADER_BYTES or record[:2] != MAGIC or kind not in (RESULT, ERROR):
        raise IdempotencyError("the stored record is not one tenure wrote (another version or program?)")
    return Outcome(record[3:HEADER_BYTES], kind == ERROR, record[HEADER_BYTES:])


def encode_error(exc: BaseException) -> bytes:
    """Return the body of a final error's record: its type, message and JSON arguments."""
    kind = type(exc)
    args: list[Any] | None
    try:
        args = json.loads(json.dumps(list(exc.args), allow_nan=False))
    except (TypeError, ValueError):
        args = None  # replayed with the message alone
    return json.dumps(
        {"type": f"{kind.__module__}.{kind.__qualname__}", "message": str(exc), "args": args}
    ).encode()


def decode_error(body: bytes, final: tuple[type[BaseException], ...]) -> BaseException:
    """Return the error a record holds, rebuilt as the type of ``final`` it names.

    An error of a type the caller does not list (another deployment's list) comes back as an
    ``IdempotencyError`` that names it, rather than as something the caller cannot catch.
    """
    data = json.loads(body)
    for kind in final:
        if f"{kind.__module__}.{kind.__qualname__}" == data["type"]:
            if data["args"] is not None:
                try:
                    return kind(*data["args"])
                except Exception:  # its constructor wants something else: the message will do
                    pass
            try:
                return kind(data["message"])
            except Exception:
                break
    return IdempotencyError(f"the key's first run failed with {data['type']}: {data['message']}")


def final_errors(store_errors: object) -> tuple[type[BaseException], ...]:
    """Return ``store_errors`` as a tuple of exception types, else raise ``ConfigurationError``."""
    kinds = (store_errors,) if isinstance(store_errors, type) else store_errors
    if not isinstance(kinds, tuple | list) or not all(
        isinstance(kind, type) and issubclass(kind, BaseException) for kind in kinds
    ):
        raise ConfigurationError(f"store_errors must be exception types, got {store_errors!r}")
    return tuple(kinds)


@dataclasses.dataclass(frozen=True, slots=True)
class KeyState:
    """What ``state(key)`` finds: a run in progress, a record, both, or neither.

    Both: a new run of a key whose record is about to expire; neither: an unused key.
    """

    running: HolderInfo | None
    """The run holding the key now: its label, fence and seconds of lease left."""
    done: Recorded | None
    """The record a finished run left: its fence and seconds it still lives."""
