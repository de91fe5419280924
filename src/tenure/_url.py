"""Parse backend URLs; never let a password reach a repr, a log line or an error."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote

from tenure._exceptions import ConfigurationError

REDACTED = "***"
SECRET_HINTS = ("pass", "pwd", "secret", "token", "key", "auth", "credential")
"""Parts of an option name that mark its value as secret (password, sslpassword, api_key, ...)."""


def is_secret_option(name: str) -> bool:
    """Return whether the value of the URL option ``name`` may be a secret, never to be shown."""
    lowered = name.lower()
    return any(hint in lowered for hint in SECRET_HINTS)


@dataclass(frozen=True, slots=True)
class Host:
    """One ``host[:port]`` of a URL; ``port`` is None when the URL names none."""

    host: str
    port: int | None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BackendURL:
    """A parsed ``scheme://[user[:password]@]host[:port][,host:port...][/path][?options]``.

    ``repr()`` and ``str()`` show the URL with the password, and the value of every option whose
    name suggests a secret (``password``, ``token``, ``sslkey``, ...), replaced by ``***``.
    """

    scheme: str
    hosts: tuple[Host, ...] = ()
    path: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def redacted(self) -> str:
        """Return the URL as text, password and secret options replaced by ``***``."""
        auth = ""
        if self.username is not None or self.password is not None:
            auth = quote(self.username or "", safe="")
            if self.password is not None:
                auth += ":" + REDACTED
            auth += "@"
        hosts = ",".join(str(h) for h in self.hosts)
        query = "&".join(
            f"{k}={REDACTED if is_secret_option(k) else quote(v, safe='')}" for k, v in self.options.items()
        )
        path = quote(self.path, safe="/:@!$&'()*+,;=~")
        return f"{self.scheme}://{auth}{hosts}{path}" + (f"?{query}" if query else "")

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"BackendURL({self.redacted!r})"


def parse_url(url: str) -> BackendURL:
    """Parse ``url`` into a ``BackendURL``; raise ``ConfigurationError`` if it is malformed.

    Errors quote the URL with its password redacted.
    """
    if not isinstance(url, str) or "://" not in url:
        # Not echoed: without a scheme we cannot tell which part might be a password.
        raise ConfigurationError("not a backend URL (expected scheme://..., e.g. sqlite:///path.db)")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if not scheme or not scheme.replace("+", "").isalnum():
        raise ConfigurationError(f"bad URL scheme in {_redact_raw(url)!r}")
    rest, _, query = rest.partition("?")
    rest = rest.split("#", 1)[0]
    netloc, slash, path = rest.partition("/")
    path = unquote(slash + path)  # %20, %3F, %23 name spaces, ? and # in file paths
    username = password = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) if user else None
        password = unquote(secret) if colon else None
    hosts = tuple(_parse_host(part, url) for part in netloc.split(",") if part)
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigurationError(f"bad query string in {_redact_raw(url)!r}") from exc
    for key, value in pairs:
        if key in options:
            raise ConfigurationError(f"option {key!r} given twice in {_redact_raw(url)!r}")
        options[key] = value
    return BackendURL(scheme, hosts, path, username, password, options)


def _parse_host(part: str, url: str) -> Host:
    if part.startswith("["):
        host, _, tail = part[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
        if tail and not tail.startswith(":"):
            raise ConfigurationError(f"bad host {part!r} in {_redact_raw(url)!r}")
    else:
        host, _, port_text = part.partition(":")
    if not port_text:
        return Host(host, None)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigurationError(f"bad port {port_text!r} in {_redact_raw(url)!r}")
    return Host(host, int(port_text))


def _redact_raw(url: object) -> str:
    """Redact the password and secret options of a URL that may not even parse."""
    text = str(url)
    if "://" not in text:
        return text
    scheme, rest = text.split("://", 1)
    rest, question, query = rest.partition("?")
    netloc, sep, tail = rest.partition("/")
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + REDACTED
        netloc = f"{userinfo}@{host}"
    fields = []
    for part in query.split("&") if question else []:
        key, equals, _ = part.partition("=")
        fields.append(f"{key}={REDACTED}" if equals and is_secret_option(unquote(key)) else part)
    return f"{scheme}://{netloc}{sep}{tail}{question}{'&'.join(fields)}"
