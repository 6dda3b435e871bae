"""OrderBookSnapshotted accepts only well-formed books: bids descending, asks ascending, not crossed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError
from quorum.events.market_data import BookLevel, OrderBookSnapshotted

T = datetime(2024, 8, 9, tzinfo=UTC)


def book(bids: list[str], asks: list[str]) -> OrderBookSnapshotted:
    def levels(prices: list[str]) -> tuple[BookLevel, ...]:
        return tuple(BookLevel(price=Decimal(p), quantity=Decimal("1")) for p in prices)

    return OrderBookSnapshotted(exchange="binance", symbol="BTC/USDT", ts=T, depth=3, bids=levels(bids),
                                asks=levels(asks))


def test_a_well_ordered_book_is_accepted() -> None:
    b = book(["100", "99", "98"], ["101", "102", "103"])
    assert [lv.price for lv in b.bids] == [Decimal("100"), Decimal("99"), Decimal("98")]


@pytest.mark.parametrize(
    ("bids", "asks", "why"),
    [
        (["99", "100"], ["101"], "bids must be strictly descending"),
        (["100", "100"], ["101"], "bids must be strictly descending"),
        (["100"], ["102", "101"], "asks must be strictly ascending"),
        (["101"], ["101"], "crossed book"),
    ],
)
def test_a_malformed_book_is_rejected_with_the_reason(bids: list[str], asks: list[str], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        book(bids, asks)
