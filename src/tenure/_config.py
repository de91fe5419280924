"""Options common to every backend, and where the default URL comes from."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tenure._core.keys import validate_namespace
from tenure._exceptions import ConfigurationError
from tenure._url import BackendURL, is_secret_option

ENV_URL = "TENURE_URL"


def default_url(explicit: str | None = None) -> str:
    """Return the URL to use: the argument, then ``$TENURE_URL``, then the embedded SQLite file.

    Only None asks for the default: an empty URL is refused, as it is more likely a missing
    setting than a wish for the embedded file.
    """
    if explicit is not None:
        if isinstance(explicit, str) and not explicit.strip():
            raise ConfigurationError(
                "the backend URL is empty: give one (e.g. redis://host:6379/0), or none for the default"
            )
        return explicit
    from_env = os.environ.get(ENV_URL)
    if from_env:
        return from_env
    return f"sqlite://{state_dir() / 'tenure.db'}"


def state_dir() -> Path:
    """Return the user's state directory for tenure (XDG_STATE_HOME, else ~/.local/state)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tenure"


def positive_float(name: str) -> Callable[[str], float]:
    """Return a parser of an option that must be a positive number of seconds."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigurationError(f"option {name}={text!r} is not a number") from None
        if not value > 0 or value == float("inf"):
            raise ConfigurationError(f"option {name}={text!r} must be a positive, finite number")
        return value

    return parse


def whole_number(name: str, *, least: int = 0) -> Callable[[str], int]:
    """Return a parser of an option that must be a whole number >= ``least``."""

    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or int(text) < least:
            raise ConfigurationError(f"option {name}={text!r} must be a whole number >= {least}")
        return int(text)

    return parse


def file_mode(name: str) -> Callable[[str], int]:
    """Return a parser of an octal file mode that lets the owner read and write (0600, 0640, 0660)."""

    def parse(text: str) -> int:
        if not 3 <= len(text) <= 4 or any(c not in "01234567" for c in text):
            raise ConfigurationError(
                f"option {name}={text!r} must be an octal file mode such as 0600 or 0640"
            )
        mode = int(text, 8)
        if mode & 0o600 != 0o600 or mode & ~0o666:
            raise ConfigurationError(
                f"option {name}={text!r} must let the owner read and write, and grant no more than "
                "read and write (e.g. 0600, 0640, 0660)"
            )
        return mode

    return parse


def one_of(name: str, *choices: str) -> Callable[[str], str]:
    """Return a parser of an option that must be one of ``choices``."""

    def parse(text: str) -> str:
        if text not in choices:
            raise ConfigurationError(f"option {name}={text!r} must be one of: {', '.join(choices)}")
        return text

    return parse


def plain_text(name: str) -> Callable[[str], str]:
    """Return a parser of a free-text option."""

    def parse(text: str) -> str:
        if "\x00" in text:
            raise ConfigurationError(f"option {name} must not contain NUL characters")
        return text

    return parse


COMMON_OPTIONS: Mapping[str, Callable[[str], object]] = {
    "namespace": validate_namespace,
    "connect_timeout": positive_float("connect_timeout"),
    "op_timeout": positive_float("op_timeout"),
}


@dataclass(frozen=True, slots=True)
class CommonOptions:
    """The options every backend understands."""

    namespace: str = "tenure"
    connect_timeout: float = 5.0
    op_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """A validated URL: its common options plus the backend's own, already parsed."""

    url: BackendURL
    common: CommonOptions
    extra: Mapping[str, object]


def _parse_secret(key: str, parser: Callable[[str], object], text: str) -> object:
    """Parse the value of a secret option; an error names the option, never the value."""
    try:
        return parser(text)
    except ConfigurationError:
        pass  # raised below, so that the error that shows the value is not even chained
    raise ConfigurationError(f"option {key!r} has a bad value (not shown: it may be a secret)")


def validate_options(
    url: BackendURL, backend_options: Mapping[str, Callable[[str], object]]
) -> BackendConfig:
    """Parse every option of ``url``; raise ``ConfigurationError`` naming the valid ones."""
    valid = {**COMMON_OPTIONS, **backend_options}
    parsed: dict[str, object] = {}
    for key, text in url.options.items():
        parser = valid.get(key)
        if parser is None:
            names = ", ".join(sorted(valid))
            raise ConfigurationError(
                f"unknown option {key!r} for {url.scheme}:// in {url.redacted}; valid options: {names}"
            )
        parsed[key] = _parse_secret(key, parser, text) if is_secret_option(key) else parser(text)
    defaults = CommonOptions()
    common = CommonOptions(
        namespace=str(parsed.pop("namespace", defaults.namespace)),
        connect_timeout=float(parsed.pop("connect_timeout", defaults.connect_timeout)),  # type: ignore[arg-type]
        op_timeout=float(parsed.pop("op_timeout", defaults.op_timeout)),  # type: ignore[arg-type]
    )
    return BackendConfig(url=url, common=common, extra=parsed)
