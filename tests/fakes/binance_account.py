"""Binance's private spot endpoints over the public fake: an account with balances and API-key permissions,
orders that fill against a price the test sets, open orders, cancels and trade history — enough for ccxt's
``binance`` to create, fetch and cancel orders, read balances and trades. Offline: never the real exchange.

Market orders fill at once at ``price``; a limit order fills at once when marketable, else rests until the test
moves ``price`` through it (``set_price``). A repeated ``newClientOrderId`` is refused as Binance does
(-2010 "Duplicate order sent."). Requests must carry an API key; signatures are not checked.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.fakes.binance_rest import FakeBinance, _error, _split


@dataclass
class _Order:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    fills: list[dict[str, str]] = field(default_factory=list)
    time: int = 0

    def raw(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "orderId": self.order_id, "clientOrderId": self.client_order_id,
                "price": f"{self.price or 0:f}", "origQty": f"{self.quantity:f}", "executedQty": f"{self.executed:f}",
                "cummulativeQuoteQty": f"{self.quote:f}", "status": self.status, "timeInForce": "GTC",
                "type": self.type, "side": self.side, "transactTime": self.time, "time": self.time,
                "updateTime": self.time, "fills": self.fills, "isWorking": self.status in ("NEW", "PARTIALLY_FILLED")}


class FakeBinanceAccount(FakeBinance):
    def __init__(self, *args: Any, balances: dict[str, str] | None = None, can_withdraw: bool = False,
                 fee_rate: str = "0.001", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.balances = {k: Decimal(v) for k, v in (balances or {"USDT": "10000"}).items()}
        self.can_withdraw = can_withdraw
        self.fee_rate = Decimal(fee_rate)
        self.prices: dict[str, Decimal] = {}
        self.orders: dict[str, _Order] = {}
        self.trades: list[dict[str, Any]] = []
        self._ids = itertools.count(1000)

    def set_price(self, symbol: str, price: str) -> None:
        """The market moves: resting limits the price reaches fill."""
        mid = symbol.replace("/", "")
        with self._lock:
            self.prices[mid] = Decimal(price)
            for o in self.orders.values():
                if o.symbol == mid and o.status == "NEW" and self._marketable(o):
                    self._fill(o, o.price or self.prices[mid])

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v3/account", self._account)
        app.router.add_post("/api/v3/order", self._create)
        app.router.add_get("/api/v3/order", self._get_order)
        app.router.add_delete("/api/v3/order", self._cancel)
        app.router.add_get("/api/v3/openOrders", self._open_orders)
        app.router.add_get("/api/v3/myTrades", self._my_trades)

    # ---- helpers -------------------------------------------------------------------------------------------------
    @staticmethod
    def _authorized(request: web.Request) -> bool:
        return bool(request.headers.get("X-MBX-APIKEY"))

    async def _params(self, request: web.Request) -> dict[str, str]:
        params = dict(request.query)
        if request.can_read_body:
            params.update({k: str(v) for k, v in (await request.post()).items()})
        return params

    def _marketable(self, o: _Order) -> bool:
        last = self.prices.get(o.symbol)
        if last is None:
            return False
        if o.type == "MARKET":
            return True
        return last <= o.price if o.side == "BUY" else last >= o.price  # type: ignore[operator]

    def _fill(self, o: _Order, price: Decimal) -> None:
        base, quote = _split(o.symbol)
        qty = o.quantity - o.executed
        fee = qty * price * self.fee_rate
        o.executed += qty
        o.quote += qty * price
        o.status = "FILLED"
        trade_id = next(self._ids)
        o.fills.append({"price": f"{price:f}", "qty": f"{qty:f}", "commission": f"{fee:f}",
                        "commissionAsset": quote, "tradeId": trade_id})
        sign = 1 if o.side == "BUY" else -1
        self.balances[base] = self.balances.get(base, Decimal(0)) + sign * qty
        self.balances[quote] = self.balances.get(quote, Decimal(0)) - sign * qty * price - fee
        self.trades.append({"symbol": o.symbol, "id": trade_id, "orderId": o.order_id, "price": f"{price:f}",
                            "qty": f"{qty:f}", "quoteQty": f"{qty * price:f}", "commission": f"{fee:f}",
                            "commissionAsset": quote, "time": int(time.time() * 1000), "isBuyer": o.side == "BUY",
                            "isMaker": o.type == "LIMIT", "isBestMatch": True})

    def _find(self, params: dict[str, str]) -> _Order | None:
        coid = params.get("origClientOrderId")
        if coid:
            return self.orders.get(coid)
        oid = params.get("orderId")
        return next((o for o in self.orders.values() if str(o.order_id) == oid), None)

    # ---- handlers ------------------------------------------------------------------------------------------------
    async def _account(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        if not self._authorized(request):
            return _error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        with self._lock:
            balances = [{"asset": a, "free": f"{v:f}", "locked": "0.00000000"}
                        for a, v in sorted(self.balances.items())]
        return web.json_response({"makerCommission": 10, "takerCommission": 10, "canTrade": True,
                                  "canWithdraw": self.can_withdraw, "canDeposit": True, "accountType": "SPOT",
                                  "balances": balances, "permissions": ["SPOT"]})

    async def _create(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        if not self._authorized(request):
            return _error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        p = await self._params(request)
        with self._lock:
            coid = p.get("newClientOrderId") or f"fake-{next(self._ids)}"
            if coid in self.orders:
                return _error(400, -2010, "Duplicate order sent.")
            if p.get("symbol", "").replace("/", "") not in self.prices:
                return _error(400, -1121, "Invalid symbol.")
            o = _Order(next(self._ids), coid, p["symbol"], p["side"], p["type"], Decimal(p["quantity"]),
                       Decimal(p["price"]) if "price" in p else None, time=int(time.time() * 1000))
            self.orders[coid] = o
            if self._marketable(o):
                self._fill(o, self.prices[o.symbol] if o.type == "MARKET" else min(o.price, self.prices[o.symbol])
                           if o.side == "BUY" else max(o.price, self.prices[o.symbol]))  # type: ignore[type-var]
            return web.json_response(o.raw())

    async def _get_order(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        with self._lock:
            o = self._find(dict(request.query))
            return web.json_response(o.raw()) if o else _error(400, -2013, "Order does not exist.")

    async def _cancel(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        p = await self._params(request)
        with self._lock:
            o = self._find(p)
            if o is None or o.status not in ("NEW", "PARTIALLY_FILLED"):
                return _error(400, -2011, "Unknown order sent.")
            o.status = "CANCELED"
            return web.json_response(o.raw())

    async def _open_orders(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        symbol = request.query.get("symbol")
        with self._lock:
            return web.json_response([o.raw() for o in self.orders.values() if o.status in ("NEW", "PARTIALLY_FILLED")
                                      and (symbol is None or o.symbol == symbol)])

    async def _my_trades(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        symbol = request.query.get("symbol")
        with self._lock:
            return web.json_response([t for t in self.trades if t["symbol"] == symbol])
