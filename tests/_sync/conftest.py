# GENERATED from tests/_async/conftest.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Fixtures the contract suites share: a coordinator and a rival on the backend under test;
a keeper and another client on a backend that keeps idempotency records (``records_url``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tenure


@pytest.fixture
def coord(backend_url: str) -> Iterator[tenure.Coordinator]:
    with tenure.Coordinator(backend_url) as coordinator:
        yield coordinator


@pytest.fixture
def rival(backend_url: str) -> Iterator[tenure.Coordinator]:
    """A second coordinator on the same backend: another client or node, as far as it can tell."""
    with tenure.Coordinator(backend_url) as coordinator:
        yield coordinator


@pytest.fixture
def keeper(records_url: str) -> Iterator[tenure.Coordinator]:
    with tenure.Coordinator(records_url) as coordinator:
        yield coordinator


@pytest.fixture
def other(records_url: str) -> Iterator[tenure.Coordinator]:
    """A second client of the same backend."""
    with tenure.Coordinator(records_url) as coordinator:
        yield coordinator
