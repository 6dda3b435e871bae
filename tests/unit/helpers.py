"""Sample payloads shared by the unit tests (valid unless a test overrides a field)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from quorum.events.fills import OrderFilled
from quorum.events.market_data import CandleClosed
from quorum.types import Liquidity, Side, TradingMode

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def candle(**overrides: Any) -> CandleClosed:
    fields: dict[str, Any] = dict(
        exchange="binance", symbol="BTC/USDT", timeframe="1h", ts=T0,
        open=Decimal("60000.10"), high=Decimal("60100.00"), low=Decimal("59999.99"), close=Decimal("60050.5"),
        volume=Decimal("1.234567890123456789"),
    )
    fields.update(overrides)
    return CandleClosed(**fields)


def fill(**overrides: Any) -> OrderFilled:
    fields: dict[str, Any] = dict(
        fill_id="f-1", venue="paper", mode=TradingMode.PAPER, client_order_id="Qabc", exchange="binance",
        symbol="BTC/USDT", side=Side.BUY, quantity=Decimal("0.01657"), price=Decimal("60643.8"),
        fee=Decimal("1.004867766"), fee_currency="USDT", liquidity=Liquidity.TAKER, ts=T0,
    )
    fields.update(overrides)
    return OrderFilled(**fields)
