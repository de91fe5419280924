"""Fixtures the contract suites share: a coordinator and a rival on the backend under test;
a keeper and another client on a backend that keeps idempotency records (``records_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import tenure


@pytest.fixture
async def coord(backend_url: str) -> AsyncIterator[tenure.AsyncCoordinator]:
    async with tenure.AsyncCoordinator(backend_url) as coordinator:
        yield coordinator


@pytest.fixture
async def rival(backend_url: str) -> AsyncIterator[tenure.AsyncCoordinator]:
    """A second coordinator on the same backend: another client or node, as far as it can tell."""
    async with tenure.AsyncCoordinator(backend_url) as coordinator:
        yield coordinator


@pytest.fixture
async def keeper(records_url: str) -> AsyncIterator[tenure.AsyncCoordinator]:
    async with tenure.AsyncCoordinator(records_url) as coordinator:
        yield coordinator


@pytest.fixture
async def other(records_url: str) -> AsyncIterator[tenure.AsyncCoordinator]:
    """A second client of the same backend."""
    async with tenure.AsyncCoordinator(records_url) as coordinator:
        yield coordinator
