"""Candle time: epoch milliseconds and the timeframe grid (``quorum.times``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from quorum.times import (
    EPOCH,
    candle_close,
    ceil_open,
    floor_open,
    from_ms,
    last_closed_open,
    timeframe_step,
    to_ms,
)

T = datetime(2024, 3, 7, 13, 47, 12, 345000, tzinfo=UTC)  # a Thursday


@given(st.integers(min_value=to_ms(datetime(1, 1, 1, tzinfo=UTC)), max_value=to_ms(datetime(9999, 1, 1, tzinfo=UTC))))
def test_epoch_milliseconds_round_trip_exactly(ms: int) -> None:
    assert to_ms(from_ms(ms)) == ms
    assert from_ms(ms).tzinfo is UTC


def test_to_ms_floors_sub_millisecond_parts_and_reads_any_timezone() -> None:
    assert to_ms(EPOCH + timedelta(microseconds=1999)) == 1
    assert to_ms(datetime(1970, 1, 1, 1, tzinfo=UTC).astimezone()) == 3_600_000
    assert to_ms(datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)) == 1_704_067_200_123


def test_from_ms_refuses_a_time_no_datetime_has() -> None:
    with pytest.raises(ValueError, match="out of datetime's range"):
        from_ms(10**20)


def test_the_grid_floors_to_the_open_and_closes_one_step_later() -> None:
    assert timeframe_step("5m") == timedelta(minutes=5)
    assert floor_open(T, "1h") == datetime(2024, 3, 7, 13, tzinfo=UTC)
    assert ceil_open(T, "1h") == datetime(2024, 3, 7, 14, tzinfo=UTC)
    assert ceil_open(datetime(2024, 3, 7, 13, tzinfo=UTC), "1h") == datetime(2024, 3, 7, 13, tzinfo=UTC)
    assert candle_close(datetime(2024, 3, 7, 13, tzinfo=UTC), "1h") == datetime(2024, 3, 7, 14, tzinfo=UTC)
    assert last_closed_open(T, "1h") == datetime(2024, 3, 7, 12, tzinfo=UTC)


def test_weekly_candles_open_on_mondays() -> None:
    assert floor_open(T, "1w") == datetime(2024, 3, 4, tzinfo=UTC)
    assert floor_open(T, "1d") == datetime(2024, 3, 7, tzinfo=UTC)
