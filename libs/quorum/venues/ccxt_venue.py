"""The live venue adapter: one interface over a ccxt exchange for submitting, cancelling and reconciling.

Disabled unless explicitly enabled (``enabled=True``): constructing it by accident cannot reach an exchange.
Amounts are read from the exchange's raw answer (Binance sends decimal strings), so every digit reaches
Decimal; ccxt's unified floats are never used for money. A submit is idempotent: the client order id is the
exchange's ``newClientOrderId``, and a "duplicate order" answer is resolved by fetching that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from quorum.types import OrderStatus, OrderType, Side

_STATUS = {"NEW": OrderStatus.ACCEPTED, "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
           "FILLED": OrderStatus.FILLED, "CANCELED": OrderStatus.CANCELED, "PENDING_CANCEL": OrderStatus.ACCEPTED,
           "REJECTED": OrderStatus.REJECTED, "EXPIRED": OrderStatus.EXPIRED,
           "EXPIRED_IN_MATCH": OrderStatus.EXPIRED}


class VenueDisabled(RuntimeError):
    """Live trading is off: the adapter was not explicitly enabled."""


@dataclass(frozen=True)
class VenueTrade:
    trade_id: str
    client_order_id: str | None
    symbol: str
    side: Side | None
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    maker: bool | None


@dataclass(frozen=True)
class VenueOrder:
    client_order_id: str
    exchange_order_id: str
    symbol: str
    status: OrderStatus
    quantity: Decimal
    filled: Decimal
    quote_filled: Decimal
    trades: tuple[VenueTrade, ...] = ()


class CcxtVenue:
    def __init__(self, exchange: Any, *, enabled: bool = False) -> None:
        if not enabled:
            raise VenueDisabled("the live venue adapter is disabled; enable it explicitly (live trading)")
        self._ex = exchange

    async def submit(self, *, client_order_id: str, symbol: str, side: Side, order_type: OrderType,
                     quantity: Decimal, limit_price: Decimal | None = None) -> VenueOrder:
        import ccxt.async_support as ccxt

        if order_type not in (OrderType.MARKET, OrderType.LIMIT):
            raise ValueError(f"{order_type} is not supported by the live adapter yet")
        try:
            raw = await self._ex.create_order(symbol, order_type.value.lower(), side.value.lower(), str(quantity),
                                              str(limit_price) if limit_price is not None else None,
                                              {"newClientOrderId": client_order_id})
        except ccxt.InvalidOrder as exc:
            if "Duplicate order" not in str(exc):
                raise
            return await self.order(symbol, client_order_id)  # a retried submit: the exchange has it already
        return _order(raw["info"], symbol)

    async def cancel(self, symbol: str, client_order_id: str) -> VenueOrder:
        raw = await self._ex.cancel_order(None, symbol, {"origClientOrderId": client_order_id})
        return _order(raw["info"], symbol)

    async def order(self, symbol: str, client_order_id: str) -> VenueOrder:
        raw = await self._ex.fetch_order(None, symbol, {"origClientOrderId": client_order_id})
        return _order(raw["info"], symbol)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        return [_order(o["info"], o["symbol"]) for o in await self._ex.fetch_open_orders(symbol)]

    async def fetch_balance(self) -> dict[str, Decimal]:
        raw = await self._ex.fetch_balance()
        return {b["asset"]: Decimal(b["free"]) + Decimal(b["locked"]) for b in raw["info"]["balances"]
                if Decimal(b["free"]) + Decimal(b["locked"]) != 0}

    async def fetch_my_trades(self, symbol: str, since: int | None = None) -> list[VenueTrade]:
        rows = await self._ex.fetch_my_trades(symbol, since)
        return [VenueTrade(trade_id=str(t["info"]["id"]), client_order_id=t.get("clientOrderId"), symbol=symbol,
                           side=Side.BUY if t["info"].get("isBuyer") else Side.SELL,
                           quantity=Decimal(t["info"]["qty"]), price=Decimal(t["info"]["price"]),
                           fee=Decimal(t["info"]["commission"]), fee_currency=t["info"]["commissionAsset"],
                           maker=t["info"].get("isMaker")) for t in rows]

    async def can_withdraw(self) -> bool | None:
        """Whether the key may withdraw, where the exchange says (Binance's account ``canWithdraw``)."""
        raw = await self._ex.fetch_balance()
        value = raw["info"].get("canWithdraw")
        return None if value is None else bool(value)


def _order(info: dict[str, Any], symbol: str) -> VenueOrder:
    trades = tuple(VenueTrade(trade_id=str(f.get("tradeId")), client_order_id=info["clientOrderId"], symbol=symbol,
                              side=Side(info["side"]), quantity=Decimal(f["qty"]), price=Decimal(f["price"]),
                              fee=Decimal(f["commission"]), fee_currency=f["commissionAsset"], maker=None)
                   for f in info.get("fills") or ())
    return VenueOrder(client_order_id=info["clientOrderId"], exchange_order_id=str(info["orderId"]), symbol=symbol,
                      status=_STATUS[info["status"]], quantity=Decimal(info["origQty"]),
                      filled=Decimal(info["executedQty"]), quote_filled=Decimal(info["cummulativeQuoteQty"]),
                      trades=trades)


def live_exchange(exchange_id: str, *, api_key: str, secret: str, base_url: str | None = None) -> Any:
    """A spot ccxt exchange with trading credentials; it loads spot markets only (no wallet or margin
    metadata, which a trading key may not be allowed to read)."""
    from quorum.marketdata.exchanges import make_exchange

    return make_exchange(exchange_id, base_url=base_url, pro=False, config={
        "apiKey": api_key, "secret": secret, "options": {"fetchCurrencies": False, "fetchMargins": False}})
