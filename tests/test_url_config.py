"""URL parsing, option validation, redaction and the default URL: all before any I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

import tenure
from tenure._config import default_url
from tenure._url import Host, parse_url

SECRET = "s3cr3t-pa55"


def test_parses_multi_host_urls_with_options() -> None:
    url = parse_url(f"redis://bob:{SECRET}@h1:7000,[::1]:7001,h3/0?namespace=app&op_timeout=2")
    assert url.scheme == "redis"
    assert url.hosts == (Host("h1", 7000), Host("::1", 7001), Host("h3", None))
    assert url.path == "/0"
    assert url.username == "bob" and url.password == SECRET
    assert url.options == {"namespace": "app", "op_timeout": "2"}


def test_password_never_appears_in_repr_str_or_errors() -> None:
    url = parse_url(f"redis://bob:{SECRET}@h1:7000/0")
    for text in (repr(url), str(url), url.redacted):
        assert SECRET not in text and "***" in text
    for bad in (f"nope://bob:{SECRET}@h/0", f"sqlite://bob:{SECRET}@h/x.db?bogus=1", f"x:{SECRET}"):
        with pytest.raises(tenure.ConfigurationError) as info:
            tenure.Coordinator(bad)
        assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "option", ["password", "passwd", "pass", "sslpassword", "secret", "token", "api_key", "PassWord"]
)
def test_secret_options_are_redacted_everywhere(tmp_path: Path, option: str) -> None:
    raw = f"sqlite://{tmp_path}/x.db?namespace=app&{option}={SECRET}"
    with pytest.raises(tenure.ConfigurationError, match=f"unknown option '{option}'") as info:
        tenure.Coordinator(raw)
    assert SECRET not in str(info.value) and f"{option}=***" in str(info.value)
    assert "namespace=app" in str(info.value), "only secrets are hidden"
    url = parse_url(raw)
    for text in (repr(url), str(url), url.redacted):
        assert SECRET not in text and f"{option}=***" in text
    for broken in (f"{raw}&{option}=again", f"{raw}&novalue&x", f"{raw}&{option}={SECRET}2"):
        with pytest.raises(tenure.ConfigurationError) as info:  # errors from a URL that fails to parse
            parse_url(broken)
        assert SECRET not in str(info.value)


def test_a_bad_value_of_a_secret_option_is_not_echoed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tenure import _registry
    from tenure._config import positive_float

    entry = _registry.BACKENDS["sqlite"]
    options = {**entry.options, "token_timeout": positive_float("token_timeout")}
    monkeypatch.setitem(
        _registry.BACKENDS, "sqlite", _registry.BackendEntry(entry.module, entry.cls, options=options)
    )
    with pytest.raises(tenure.ConfigurationError, match="token_timeout") as info:
        tenure.Coordinator(f"sqlite://{tmp_path}/x.db?token_timeout={SECRET}")
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None and SECRET not in repr(info.value.__context__), "nor chained"


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_url_is_refused_rather_than_meaning_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, empty: str
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    for make in (tenure.Coordinator, tenure.AsyncCoordinator):
        with pytest.raises(tenure.ConfigurationError, match="URL is empty"):
            make(empty)
    assert not (tmp_path / "tenure").exists(), "refused before any I/O"


def test_unknown_scheme_names_the_valid_ones() -> None:
    with pytest.raises(tenure.ConfigurationError, match=r"valid schemes: .*memory://.*sqlite://"):
        tenure.Coordinator("nope://localhost")


def test_unknown_option_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(
        tenure.ConfigurationError, match=r"valid options: .*connect_timeout.*namespace.*op_timeout"
    ):
        tenure.Coordinator(f"sqlite://{tmp_path}/x.db?bogus=1")
    assert not (tmp_path / "x.db").exists(), "a rejected URL must not touch the backend"


@pytest.mark.parametrize(
    "query",
    ["op_timeout=0", "op_timeout=-1", "connect_timeout=abc", "op_timeout=inf", "op_timeout=1&op_timeout=2"],
)
def test_bad_option_values_are_rejected(tmp_path: Path, query: str) -> None:
    with pytest.raises(tenure.ConfigurationError):
        tenure.Coordinator(f"sqlite://{tmp_path}/x.db?{query}")


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        tenure.Coordinator("not a url")


def test_common_options_apply(tmp_path: Path) -> None:
    coord = tenure.Coordinator(f"sqlite://{tmp_path}/x.db?namespace=app&connect_timeout=1.5&op_timeout=0.5")
    assert coord.namespace == "app"
    coord.close()


def test_default_url_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENURE_URL", "memory://from-env")
    assert default_url("memory://explicit") == "memory://explicit"
    assert default_url() == "memory://from-env"
    monkeypatch.delenv("TENURE_URL")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_url() == f"sqlite://{tmp_path}/tenure/tenure.db"
    with tenure.Coordinator() as coord, coord.lock("default-url-check", ttl=5):
        pass
    assert (tmp_path / "tenure" / "tenure.db").exists()


def test_error_tree_relations() -> None:
    assert issubclass(tenure.ConfigurationError, ValueError)
    assert issubclass(tenure.BackendIncapable, tenure.ConfigurationError)
    assert issubclass(tenure.AcquireTimeout, TimeoutError)
    assert issubclass(tenure.AcquireTimeout, tenure.NotAcquired)
    assert issubclass(tenure.BackendTimeout, TimeoutError)
    assert issubclass(tenure.BackendTimeout, tenure.BackendUnavailable)
    assert not issubclass(tenure.LockLost, tenure.NotAcquired)
    assert issubclass(tenure.LeadershipLost, tenure.LockLost)
    for name in tenure.__all__:
        obj = getattr(tenure, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, tenure.TenureError), name


def test_sqlite_in_an_unusable_place_fails_fast() -> None:
    coord = tenure.Coordinator("sqlite:///proc/no-such-dir/locks.db")
    with pytest.raises(tenure.BackendUnavailable):
        coord.connect()
    coord.close()


def test_paths_are_percent_decoded(tmp_path: Path) -> None:
    url = parse_url("sqlite:///tmp/a%20b%3Fc.db?op_timeout=1")
    assert url.path == "/tmp/a b?c.db" and url.options == {"op_timeout": "1"}
    assert parse_url(url.redacted).path == url.path
    with tenure.Coordinator(f"sqlite://{tmp_path}/with%20space.db") as coord, coord.lock("x"):
        pass
    assert (tmp_path / "with space.db").exists()
