"""The live venue adapter (real ccxt) against a local fake of Binance's private spot API: never the internet."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from quorum.types import OrderStatus, OrderType, Side
from quorum.venues.ccxt_venue import CcxtVenue, VenueDisabled, live_exchange

from tests.fakes.binance_account import FakeBinanceAccount
from tests.support import data_file

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[FakeBinanceAccount]:
    data = data_file("ohlcv", "binance_BTCUSDT_1h.csv").parent
    with FakeBinanceAccount(data, symbols=["BTC/USDT"], balances={"USDT": "10000"}) as f:
        f.set_price("BTC/USDT", "30000.50")
        yield f


async def venue(fake: FakeBinanceAccount) -> tuple[CcxtVenue, Any]:
    ex = live_exchange("binance", api_key="test-key-not-real", secret="test-secret-not-real", base_url=fake.url)
    await ex.load_markets()
    return CcxtVenue(ex, enabled=True), ex


def test_the_adapter_refuses_to_exist_unless_explicitly_enabled(fake: FakeBinanceAccount) -> None:
    with pytest.raises(VenueDisabled):
        CcxtVenue(fake.exchange())


async def test_a_market_order_fills_with_exact_decimal_trades_and_balances(fake: FakeBinanceAccount) -> None:
    v, ex = await venue(fake)
    try:
        order = await v.submit(client_order_id="Qabc", symbol="BTC/USDT", side=Side.BUY,
                               order_type=OrderType.MARKET, quantity=Decimal("0.01"))
        balance = await v.fetch_balance()
        trades = await v.fetch_my_trades("BTC/USDT")
    finally:
        await ex.close()

    assert (order.status, order.filled, order.quote_filled) == (OrderStatus.FILLED, Decimal("0.01"), Decimal("300.005"))
    assert [(t.quantity, t.price, t.fee, t.fee_currency) for t in order.trades] == [
        (Decimal("0.01"), Decimal("30000.50"), Decimal("0.300005"), "USDT")]
    assert balance == {"BTC": Decimal("0.01"), "USDT": Decimal("10000") - Decimal("300.005") - Decimal("0.300005")}
    assert [t.trade_id for t in trades] == [order.trades[0].trade_id]


async def test_a_retried_submit_returns_the_same_order_instead_of_a_second_one(fake: FakeBinanceAccount) -> None:
    v, ex = await venue(fake)
    try:
        first = await v.submit(client_order_id="Qsame", symbol="BTC/USDT", side=Side.BUY,
                               order_type=OrderType.MARKET, quantity=Decimal("0.01"))
        again = await v.submit(client_order_id="Qsame", symbol="BTC/USDT", side=Side.BUY,
                               order_type=OrderType.MARKET, quantity=Decimal("0.01"))
    finally:
        await ex.close()

    assert again.exchange_order_id == first.exchange_order_id
    assert len(fake.orders) == 1 and len(fake.trades) == 1


async def test_a_resting_limit_is_listed_open_then_cancelled(fake: FakeBinanceAccount) -> None:
    v, ex = await venue(fake)
    try:
        placed = await v.submit(client_order_id="Qlimit", symbol="BTC/USDT", side=Side.BUY,
                                order_type=OrderType.LIMIT, quantity=Decimal("0.02"), limit_price=Decimal("29000"))
        open_orders = await v.fetch_open_orders("BTC/USDT")
        cancelled = await v.cancel("BTC/USDT", "Qlimit")
        after = await v.fetch_open_orders("BTC/USDT")
    finally:
        await ex.close()

    assert placed.status is OrderStatus.ACCEPTED and placed.filled == 0
    assert [o.client_order_id for o in open_orders] == ["Qlimit"]
    assert cancelled.status is OrderStatus.CANCELED and after == []


async def test_withdrawal_permission_is_reported(fake: FakeBinanceAccount) -> None:
    v, ex = await venue(fake)
    try:
        assert await v.can_withdraw() is False
        fake.can_withdraw = True
        assert await v.can_withdraw() is True
    finally:
        await ex.close()
