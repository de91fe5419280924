"""Sans-I/O core: deadline, backoff, renewal timing, keys and tokens, on an injected clock."""

from __future__ import annotations

import math
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenure import Coordinator
from tenure._async.backends.etcd.proto import entry_key, lock_prefix
from tenure._async.backends.redis.scripts import key_prefix
from tenure._async.backends.zookeeper.nodes import node_component
from tenure._core.backoff import Backoff
from tenure._core.deadline import Deadline
from tenure._core.keys import (
    KINDS,
    MAX_NAME_BYTES,
    MAX_NAMESPACE_BYTES,
    key_digest,
    key_hash64,
    namespaced_key,
    validate_name,
    validate_namespace,
)
from tenure._core.leader import election_key
from tenure._core.renewal import Validity, drift_margin
from tenure._core.tokens import Owner, new_token
from tenure._exceptions import ConfigurationError


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_deadline_counts_down_on_the_injected_clock() -> None:
    clock = FakeClock()
    deadline = Deadline(2.0, clock=clock)
    assert deadline.remaining() == 2.0
    clock.now += 1.5
    assert deadline.remaining() == pytest.approx(0.5)
    assert deadline.cap(10.0) == pytest.approx(0.5)
    assert not deadline.expired()
    clock.now += 1.0
    assert deadline.expired() and deadline.remaining() == 0.0


def test_deadline_none_is_unbounded_and_zero_is_expired() -> None:
    assert Deadline(None, clock=FakeClock()).remaining() == math.inf
    assert Deadline(0, clock=FakeClock()).expired()


def test_backoff_grows_geometrically_with_jitter_and_caps() -> None:
    backoff = Backoff(initial=0.002, maximum=0.05, factor=2.0, random_source=lambda: 1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays[:4] == pytest.approx([0.002, 0.004, 0.008, 0.016])
    assert max(delays) == pytest.approx(0.05)
    low = Backoff(initial=0.002, maximum=0.05, factor=2.0, random_source=lambda: 0.0)
    assert low.next_delay() == pytest.approx(0.001)  # jitter never goes below half the ceiling
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.002)


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(initial=0.1, maximum=0.01)
    with pytest.raises(ValueError):
        Backoff(factor=0.5)


def test_validity_charges_flight_time_and_drift() -> None:
    validity = Validity.starting(started=10.0, ttl=3.0)
    assert drift_margin(3.0) == pytest.approx(0.032)
    assert validity.valid_until == pytest.approx(10.0 + 3.0 - 0.032)
    assert validity.renew_at == pytest.approx(11.0)
    assert validity.remaining(12.0) == pytest.approx(0.968)
    assert not validity.expired(12.9)
    assert validity.expired(12.97)


def test_validity_renewal_sets_the_ttl_rather_than_adding() -> None:
    validity = Validity.starting(started=0.0, ttl=3.0).renewed(started=1.0, ttl=10.0)
    assert validity.ttl == 10.0
    assert validity.valid_until == pytest.approx(1.0 + 10.0 - drift_margin(10.0))
    assert validity.renewed(started=2.0).ttl == 10.0


def test_failed_renewal_is_retried_before_expiry() -> None:
    validity = Validity.starting(started=0.0, ttl=3.0)
    retry = validity.retry_at(now=1.0)
    assert 1.0 < retry < validity.valid_until


def test_names_are_validated() -> None:
    assert validate_name("orders:42") == "orders:42"
    for bad in ["", "x" * (MAX_NAME_BYTES + 1), "a\x00b", 42, None]:
        with pytest.raises(ConfigurationError):
            validate_name(bad)
    assert validate_name("é" * (MAX_NAME_BYTES // 2))  # the limit counts UTF-8 bytes


def test_keys_are_namespaced_and_hashes_stable() -> None:
    assert namespaced_key("tenure", "orders:42") == "tenure:lock:orders:42"  # readable by operators
    assert election_key("tenure", "a") == namespaced_key("tenure", "a", kind="election")
    assert election_key("tenure", "a") == "tenure:election:a"
    assert namespaced_key("", "a") == ":lock:a"
    assert namespaced_key("a:b%{}", "c") == "a%3Ab%25%7B%7D:lock:c"
    # The two collisions of issue 12: each pair was one key.
    assert namespaced_key("a", "b:c") != namespaced_key("a:b", "c")
    assert namespaced_key("tenure.election", "boss") != election_key("tenure", "boss")
    with pytest.raises(ValueError, match="kind"):
        namespaced_key("tenure", "a", kind="lock:x")
    # Stable across processes, hosts and Python versions: these values must never change,
    # or two versions of tenure would lock different keys for the same name.
    assert key_hash64("tenure:orders:42") == -6182770752543040781
    assert key_digest("tenure:orders:42") == "92de63977e6746a724ebfd27e02299e6ed365d80"
    assert -(2**63) <= key_hash64("x") < 2**63
    assert key_hash64("a") != key_hash64("b")
    assert len(key_digest("x" * 1000, length=40)) == 40


# Few characters, the separators and escapes among them, so that near-collisions are common.
_KEY_TEXT = st.sampled_from([":", "%", "3", "A", "a", ".", "{", "}", "/", "é", "lock", "election"])
_NAMESPACES = st.lists(_KEY_TEXT, max_size=8).map("".join)
_NAMES = st.lists(_KEY_TEXT, min_size=1, max_size=8).map("".join)
_TRIPLES = st.tuples(_NAMESPACES, st.sampled_from(sorted(KINDS)), _NAMES)


def _split_key(key: str) -> tuple[str, str, str]:
    """Recover (namespace, kind, name) from a key: the inverse that makes the encoding one-to-one."""
    namespace, _, rest = key.partition(":")
    kind, _, name = rest.partition(":")
    return unquote(namespace), kind, name


@given(_TRIPLES)
def test_a_key_names_one_namespace_kind_and_name(triple: tuple[str, str, str]) -> None:
    namespace, kind, name = triple
    assert _split_key(namespaced_key(namespace, name, kind=kind)) == triple


@given(_TRIPLES, _TRIPLES)
def test_distinct_names_never_meet_on_any_backend(
    first: tuple[str, str, str], second: tuple[str, str, str]
) -> None:
    a, b = (namespaced_key(ns, name, kind=kind) for ns, kind, name in (first, second))
    assert (a == b) == (first == second)
    # Redis: "{key}:<suffix>"; no suffix holds a '}', so the last '}' ends the key.
    for key in (a, b):
        for suffix in ("lock", "fence", "queue:alive", f"wake:{new_token()}"):
            redis_key = f"{key_prefix(key)}:{suffix}"
            assert redis_key[1 : redis_key.rindex("}")] == key
            assert redis_key.index("}") > 1, "the hash tag must not be empty (one cluster slot per lock)"
    # ZooKeeper: one node name per key, never a path.
    assert all("/" not in node_component(key) and unquote(node_component(key)) == key for key in (a, b))
    # etcd: lock a's range holds lock b's entries only if a is b.
    assert entry_key(b, new_token()).startswith(lock_prefix(a)) == (a == b)


def test_namespaces_are_validated() -> None:
    for bad in [42, None, "a\x00b", "x" * (MAX_NAMESPACE_BYTES + 1), "\ud800"]:
        with pytest.raises(ConfigurationError, match="namespace"):
            validate_namespace(bad)
    assert validate_namespace("") == ""
    assert validate_namespace("app:prod/é") == "app:prod/é"
    with pytest.raises(ConfigurationError, match="namespace"):
        Coordinator(f"memory://?namespace={'x' * (MAX_NAMESPACE_BYTES + 1)}")
    assert Coordinator("memory://?namespace=a%3Ab").namespace == "a:b"


def test_owner_tokens_are_unguessable_and_hidden_from_repr() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) >= 22 for t in tokens)  # 128 random bits
    owner = Owner()
    assert owner.token not in repr(owner)
    assert "pid" in owner.label
