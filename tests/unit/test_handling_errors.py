"""How a consumer treats database errors it did not cause: lock races are re-run a bounded number of times,
everything else is left to the delivery machinery. (Real-server behaviour: tests/integration/test_outages.py.)"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from quorum.runtime.handling import CONFLICT_RETRIES, Failure, classify, retry_conflicts
from sqlalchemy.exc import DBAPIError


def wrapped(driver_error: Exception) -> DBAPIError:
    """As SQLAlchemy raises it: the driver's error as ``orig``."""
    return DBAPIError("UPDATE contested SET n = n + 1", None, driver_error)


def test_a_persistent_conflict_is_retried_a_few_times_then_left_to_the_message_path() -> None:
    calls = []

    async def attempt() -> None:
        calls.append(1)
        raise wrapped(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))

    with pytest.raises(DBAPIError):
        asyncio.run(retry_conflicts(attempt))
    assert len(calls) == CONFLICT_RETRIES + 1


def test_a_conflict_then_success_returns_the_result() -> None:
    calls = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise wrapped(asyncpg.exceptions.SerializationError("could not serialize access"))
        return "done"

    assert asyncio.run(retry_conflicts(attempt)) == "done" and len(calls) == 3


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.UniqueViolationError("duplicate key"),
])
def test_other_errors_are_not_retried_in_process(error: Exception) -> None:
    calls = []

    async def attempt() -> None:
        calls.append(1)
        raise wrapped(error)

    with pytest.raises(DBAPIError):
        asyncio.run(retry_conflicts(attempt))
    assert calls == [1]


def test_driver_errors_without_a_sqlstate_that_lost_the_connection_are_outages() -> None:
    lost = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    assert classify(wrapped(lost)) is Failure.CONNECTIVITY
    assert classify(wrapped(RuntimeError("bug in a handler"))) is Failure.MESSAGE


def test_a_pooled_connection_found_closed_is_retried_once_at_once() -> None:
    """What a pre-ping per checkout caught: the server restarted since the connection was last used."""
    calls = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise DBAPIError("SELECT 1", None, asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
                             connection_invalidated=True)
        return "done"

    assert asyncio.run(retry_conflicts(attempt)) == "done" and len(calls) == 2

    async def always_closed() -> None:
        calls.append(1)
        raise DBAPIError("SELECT 1", None, asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
                         connection_invalidated=True)

    calls.clear()
    with pytest.raises(DBAPIError):  # still closed: an outage, left to the caller (a consumer holds the message)
        asyncio.run(retry_conflicts(always_closed))
    assert len(calls) == 2
