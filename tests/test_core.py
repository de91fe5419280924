"""Sans-I/O core: deadline, backoff, renewal timing, keys and tokens, on an injected clock."""

from __future__ import annotations

import math

import pytest

from tenure._core.backoff import Backoff
from tenure._core.deadline import Deadline
from tenure._core.keys import MAX_NAME_BYTES, key_digest, key_hash64, namespaced_key, validate_name
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
    assert namespaced_key("tenure", "a") == "tenure:a"
    assert namespaced_key("", "a") == "a"
    # Stable across processes, hosts and Python versions: these values must never change,
    # or two versions of tenure would lock different keys for the same name.
    assert key_hash64("tenure:orders:42") == -6182770752543040781
    assert key_digest("tenure:orders:42") == "92de63977e6746a724ebfd27e02299e6ed365d80"
    assert -(2**63) <= key_hash64("x") < 2**63
    assert key_hash64("a") != key_hash64("b")
    assert len(key_digest("x" * 1000, length=40)) == 40


def test_owner_tokens_are_unguessable_and_hidden_from_repr() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(t) >= 22 for t in tokens)  # 128 random bits
    owner = Owner()
    assert owner.token not in repr(owner)
    assert "pid" in owner.label
