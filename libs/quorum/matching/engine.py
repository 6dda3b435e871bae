"""Paper matching engine for one symbol: pure, event-driven, reproducible.

Everything it knows arrives through its event methods (``on_book``, ``on_trade``, ``on_candle``, ``submit``,
``cancel``, ``advance``); each takes the event's time ``ts`` (epoch ms) and returns what happened as outputs.
No I/O, no clock, no global randomness: the same events give the same outputs, and ``to_dict`` /
``from_dict`` carry the whole state across a restart.

Timing. ``submit(ts, order)`` validates at once (a REJECTED output) and otherwise sends the order on its way:
it reaches the engine at ``due = ts + latency`` and matches against the market state in force at ``due``
(the last snapshot with ts <= due, our earlier takers' consumption included). The engine learns that no
newer state exists when an event later than ``due`` comes in (or ``advance``), so it matches pending orders
before applying that event; fills are stamped ``due``. At equal timestamps market data and cancels apply
before orders arriving at that instant.

Matching. A taker walks the book level by level, one fill per level at that level's price; what it takes is
consumed until the next snapshot. Market orders never rest: what depth cannot supply expires (IOC and GTC
alike); FOK takes all or nothing. A marketable limit takes up to its price, the rest rests (GTC) or expires
(IOC) or nothing happens at all (FOK). Stops arm on arrival and trigger on the traded price (trade price;
candle high for a buy, low for a sell), then match as market / limit orders against the book in force.

Resting limits (maker, filled at their own limit price) fill only when the market trades through them:
* a public trade at price <= buy limit (>= sell limit) supplies up to its quantity;
* a candle with low <= buy limit (high >= sell limit) supplies ``candle_fill_fraction`` of its volume.
Queue model: that supply goes to our resting orders on that side best price first, then oldest first; we are
assumed first in the queue at our price (optimistic at the touch). A new snapshot that crosses a resting limit
does not fill it: feed trades (or candles) alongside snapshots. Orders that start resting during an event
take no supply from that same event.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from decimal import Context, Decimal, getcontext, localcontext
from typing import Any

from quorum.matching.book import Book, SyntheticBookModel, round_to
from quorum.matching.fees import VenueFees
from quorum.matching.latency import LatencyModel
from quorum.types import Liquidity, OrderStatus, OrderType, Side, TimeInForce, split_symbol

S = OrderStatus
LIMIT_TYPES = (OrderType.LIMIT, OrderType.STOP_LIMIT)
STOP_TYPES = (OrderType.STOP, OrderType.STOP_LIMIT)
ZERO = Decimal(0)


@dataclass(frozen=True)
class Order:
    client_order_id: str
    side: Side
    quantity: Decimal
    type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    tif: TimeInForce = TimeInForce.GTC
    oco_group: str | None = None  # one-cancels-the-others: the first execution in a group cancels the rest
    oco_size: int | None = None  # legs in the group: none of them is live until all have arrived

    def to_dict(self) -> dict[str, Any]:
        return {k: None if v is None else str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Order:
        def dec(v: str | None) -> Decimal | None:
            return None if v is None else Decimal(v)

        size = d.get("oco_size")
        return cls(d["client_order_id"], Side(d["side"]), Decimal(d["quantity"]), OrderType(d["type"]),
                   dec(d["limit_price"]), dec(d["stop_price"]), TimeInForce(d["tif"]), d.get("oco_group"),
                   None if size is None else int(size))


# --- outputs ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fill:
    client_order_id: str
    fill_id: str  # f"{client_order_id}-{n}", n = 1, 2, ... per order
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: Liquidity
    ts: int
    is_final: bool  # no further fill will come for this order
    arrival_mid: Decimal | None = field(default=None, compare=False)  # the mid when it arrived: slippage is against it


@dataclass(frozen=True)
class StatusChange:
    client_order_id: str
    status: OrderStatus
    ts: int
    filled_quantity: Decimal
    reason: str | None = None  # REJECTED / EXPIRED: why


@dataclass(frozen=True)
class StopTriggered:
    client_order_id: str
    ts: int
    price: Decimal  # the traded price that crossed the stop


@dataclass(frozen=True)
class CancelRejected:
    client_order_id: str
    ts: int
    reason: str  # UNKNOWN_ORDER | ALREADY_FINAL


Output = Fill | StatusChange | StopTriggered | CancelRejected


@dataclass(frozen=True)
class EngineConfig:
    fees: VenueFees = VenueFees()
    latency: LatencyModel = LatencyModel()
    synthetic_book: SyntheticBookModel = SyntheticBookModel()
    candle_fill_fraction: Decimal = Decimal("0.1")  # share of a candle's volume our resting orders may get
    lot_step: Decimal | None = None  # quantities must be multiples of it; supplies are rounded down to it
    tick_size: Decimal | None = None  # synthetic book prices are put on it
    remember_final: int = 10_000  # finished order ids kept, to tell ALREADY_FINAL from UNKNOWN_ORDER


@dataclass
class _Live:
    """An order the engine still holds: on its way (pending), armed (stop) or resting."""

    order: Order
    due: int
    seq: int  # submission order while pending; queue position once armed or resting
    filled: Decimal = ZERO
    fills: int = 0
    arrival_mid: Decimal | None = None

    @property
    def remaining(self) -> Decimal:
        return self.order.quantity - self.filled


def _copied(pool: dict[str, _Live]) -> dict[str, _Live]:
    return {coid: replace(o) for coid, o in pool.items()} if pool else {}


# --- the engine ------------------------------------------------------------------------------------------

@dataclass(eq=False)
class MatchingEngine:
    symbol: str
    config: EngineConfig = EngineConfig()
    seed: int = 0
    rng: random.Random = field(init=False)
    now: int = field(init=False, default=0)
    market_ts: int = field(init=False, default=0)  # time of the latest market event applied (book, trade, candle)
    seq: int = field(init=False, default=0)
    pending: dict[str, _Live] = field(init=False, default_factory=dict)
    stops: dict[str, _Live] = field(init=False, default_factory=dict)
    resting: dict[str, _Live] = field(init=False, default_factory=dict)
    waiting: dict[str, _Live] = field(init=False, default_factory=dict)  # OCO legs whose group is incomplete
    final: dict[str, OrderStatus] = field(init=False, default_factory=dict)
    _book: Book | None = field(init=False, default=None, repr=False)
    # the candle whose synthetic book is in force but not built yet: (close time, close, volume, decimal context)
    _candle_book: tuple[int, Decimal, Decimal, Context] | None = field(init=False, default=None, repr=False)
    _final_shared: bool = field(init=False, default=False, repr=False)  # ``final`` is also a copy's: copy on write

    def __post_init__(self) -> None:
        self.base, self.quote = split_symbol(self.symbol)
        self.rng = random.Random(self.seed)

    @property
    def book(self) -> Book | None:
        """The book in force. A candle's synthetic book is built when something first reads it (an order that
        matches, ``to_dict``), in the decimal context of its candle: most candles meet no order at all."""
        if self._candle_book is not None:
            ts, close, volume, context = self._candle_book
            with localcontext(context):
                self._book = self.config.synthetic_book.build(ts, close, volume, self.config.tick_size,
                                                              self.config.lot_step)
            self._candle_book = None
        return self._book

    @book.setter
    def book(self, book: Book | None) -> None:
        self._book, self._candle_book = book, None

    # --- events ------------------------------------------------------------------------------------------

    def on_book(self, ts: int, bids: Iterable[Sequence[Decimal]], asks: Iterable[Sequence[Decimal]]) -> list[Output]:
        def apply(ts: int, out: list[Output]) -> None:
            self.book = Book.snapshot(ts, bids, asks)

        return self._market(ts, apply)

    def on_trade(self, ts: int, price: Decimal, qty: Decimal, side: Side | None = None) -> list[Output]:
        """A public trade. ``side`` (the taker's) is informational: only price and quantity matter here."""
        def apply(ts: int, out: list[Output]) -> None:
            self._supply(ts, out, qty, lambda o: price <= o.order.limit_price,
                         lambda o: price >= o.order.limit_price)
            self._trigger(ts, out, price, price)

        return self._market(ts, apply)

    def on_candle(self, ts: int, open_: Decimal, high: Decimal, low: Decimal, close: Decimal,
                  volume: Decimal) -> list[Output]:
        """A closed candle, ``ts`` = when it became known (its close). Replaces the book unless snapshots feed it."""
        def apply(ts: int, out: list[Output]) -> None:
            supply = round_to(volume * self.config.candle_fill_fraction, self.config.lot_step)
            self._supply(ts, out, supply, lambda o: low <= o.order.limit_price,
                         lambda o: high >= o.order.limit_price)
            if self._candle_book is not None or self._book is None or self._book.synthetic:
                self._book, self._candle_book = None, (ts, close, volume, getcontext().copy())
            self._trigger(ts, out, high, low)

        return self._market(ts, apply)

    def submit(self, ts: int, order: Order) -> list[Output]:
        """The order leaves for the venue at market time ``ts`` (its own time, not how far the engine got: an
        order is never placed against market data newer than ``ts`` unless that data is already applied) and
        arrives after a latency drawn from the seed and its own id, whatever else was submitted before it."""
        def apply(ts: int, out: list[Output]) -> None:
            reason = self._invalid(order)
            if reason:
                out.append(StatusChange(order.client_order_id, S.REJECTED, ts, ZERO, reason))
                if reason != "DUPLICATE_ORDER":
                    self._remember(order.client_order_id, S.REJECTED)
                    out.extend(self.abandon_group(ts, order.oco_group))
                return
            self.seq += 1
            live = _Live(order, ts + self.latency_of(order.client_order_id), self.seq)
            if order.oco_group is None or not order.oco_size or order.oco_size <= 1:
                self.pending[order.client_order_id] = live
                return
            self.waiting[order.client_order_id] = live
            legs = [o for o in self.waiting.values() if o.order.oco_group == order.oco_group]
            if len(legs) >= order.oco_size:  # the group is complete: its legs arrive together, with the last
                due = max(o.due for o in legs)
                for o in legs:
                    del self.waiting[o.order.client_order_id]
                    o.due = due
                    self.pending[o.order.client_order_id] = o

        return self._event(ts, apply, clamp=self.market_ts)

    def abandon_group(self, ts: int, oco_group: str | None) -> list[Output]:
        """A leg of this group was refused: the group can never complete, so its waiting legs are cancelled."""
        out: list[Output] = []
        for o in [o for o in self.waiting.values() if oco_group and o.order.oco_group == oco_group]:
            self._finish(self.waiting.pop(o.order.client_order_id), S.CANCELED, ts, out, "OCO_LEG_REJECTED")
        return out

    def latency_of(self, client_order_id: str) -> int:
        """The order's latency: a function of the seed and the order alone, so the order in which orders are
        submitted (or whether a late one is replayed in a separate engine) never changes anyone's delay."""
        return self.config.latency.draw(random.Random(f"{self.seed}:{client_order_id}"))

    def cancel(self, ts: int, client_order_id: str) -> list[Output]:
        """Takes effect at ``ts``, no latency: an order still on its way is cancelled before it arrives."""
        def apply(ts: int, out: list[Output]) -> None:
            for pool in (self.pending, self.waiting, self.stops, self.resting):
                if client_order_id in pool:
                    self._finish(pool.pop(client_order_id), S.CANCELED, ts, out)
                    return
            reason = "ALREADY_FINAL" if client_order_id in self.final else "UNKNOWN_ORDER"
            out.append(CancelRejected(client_order_id, ts, reason))

        return self._event(ts, apply, clamp=self.market_ts)

    def advance(self, ts: int) -> list[Output]:
        """Time passed with no market event: orders due by ``ts`` arrive."""
        return self._event(ts, lambda ts, out: None)

    # --- mechanics ---------------------------------------------------------------------------------------

    def _market(self, ts: int, apply: Callable[[int, list[Output]], None]) -> list[Output]:
        """Market data keeps its own time: an order stamped later (an operator's, at the wall clock, during a
        replay of history) must not move the fills of later candles to the wall clock too."""
        out = self._event(ts, apply, clamp=self.market_ts)
        self.market_ts = max(self.market_ts, ts)
        return out

    def _event(self, ts: int, apply: Callable[[int, list[Output]], None], clamp: int | None = None) -> list[Output]:
        """``clamp``: the earliest time the event may take effect (default: now, so the clock never runs
        backwards). Orders and cancels clamp to the last market event instead: two orders sent at the same
        market time are both placed at that time, whatever the engine did for the first one."""
        ts = max(ts, self.now if clamp is None else clamp)
        out: list[Output] = []
        if self.pending:
            self._arrive(out, lambda due: due < ts)
        self.now = max(self.now, ts)
        apply(ts, out)
        if self.pending:
            self._arrive(out, lambda due: due <= ts)
        return out

    def _arrive(self, out: list[Output], is_due: Callable[[int], bool]) -> None:
        for o in sorted((o for o in self.pending.values() if is_due(o.due)), key=lambda o: (o.due, o.seq)):
            if o.order.client_order_id not in self.pending:
                continue  # cancelled a moment ago by its OCO partner, which arrived with it and executed
            del self.pending[o.order.client_order_id]
            o.arrival_mid = self._mid()
            out.append(StatusChange(o.order.client_order_id, S.ACCEPTED, o.due, ZERO))
            if o.order.type in STOP_TYPES:
                self._queue(self.stops, o)
            else:
                self._take(o, o.due, out)

    def _invalid(self, order: Order) -> str | None:
        q, lot, coid = order.quantity, self.config.lot_step, order.client_order_id
        prices = (order.limit_price, order.stop_price)
        if coid in self.final or any(coid in pool for pool in self._pools().values()):
            return "DUPLICATE_ORDER"
        if not isinstance(q, Decimal) or not q.is_finite() or q <= 0:
            return "INVALID_QUANTITY"
        if lot is not None and q % lot != 0:
            return "LOT_SIZE"
        if order.type in LIMIT_TYPES and order.limit_price is None:
            return "MISSING_LIMIT_PRICE"
        if order.type in STOP_TYPES and order.stop_price is None:
            return "MISSING_STOP_PRICE"
        if any(p is not None and (not isinstance(p, Decimal) or not p.is_finite() or p <= 0) for p in prices):
            return "INVALID_PRICE"
        if order.type == OrderType.MARKET and self.book is None:
            return "NO_MARKET_DATA"
        return None

    def _take(self, o: _Live, ts: int, out: list[Output]) -> None:
        """The taker part of an order that has arrived (or triggered); the rest rests or expires."""
        order, want = o.order, o.remaining
        limit = order.limit_price if order.type in LIMIT_TYPES else None
        takes = self.book.plan(order.side, want, limit) if self.book else []
        got = sum((q for _, _, q in takes), ZERO)
        if order.tif == TimeInForce.FOK and got < want:
            takes, got = [], ZERO
        rests = limit is not None and order.tif == TimeInForce.GTC
        if takes:
            self.book.consume(order.side, takes)
        for n, (_, price, qty) in enumerate(takes, 1):
            self._fill(o, qty, price, Liquidity.TAKER, ts, out, n == len(takes) and (got == want or not rests))
        if o.remaining == 0:
            self._finish(o, S.FILLED, ts, out)
        elif not rests:
            reason = ("FOK_UNFILLABLE" if order.tif == TimeInForce.FOK else "NO_MARKET_DATA" if self.book is None
                      else "INSUFFICIENT_DEPTH" if limit is None else "IOC_REMAINDER")
            self._finish(o, S.EXPIRED, ts, out, reason)
        else:
            self._queue(self.resting, o)
            if got:
                out.append(StatusChange(order.client_order_id, S.PARTIALLY_FILLED, ts, o.filled))

    def _supply(self, ts: int, out: list[Output], qty: Decimal, buys: Callable[[_Live], bool],
                sells: Callable[[_Live], bool]) -> None:
        """The market traded ``qty`` through the prices ``buys`` / ``sells`` accept: resting orders on each
        side share it, best price first, then oldest first."""
        if not self.resting:
            return
        for side, crossed, sign in ((Side.BUY, buys, -1), (Side.SELL, sells, 1)):
            left = qty
            hit = [o for o in self.resting.values() if o.order.side == side and crossed(o)]
            for o in sorted(hit, key=lambda o: (sign * o.order.limit_price, o.seq)):
                if left <= 0:
                    break
                if o.order.client_order_id not in self.resting:
                    continue  # cancelled a moment ago by its OCO partner
                take = min(left, o.remaining)
                left -= take
                self._fill(o, take, o.order.limit_price, Liquidity.MAKER, ts, out, take == o.remaining)
                if o.remaining == 0:
                    self._finish(self.resting.pop(o.order.client_order_id), S.FILLED, ts, out)
                else:
                    out.append(StatusChange(o.order.client_order_id, S.PARTIALLY_FILLED, ts, o.filled))

    def _trigger(self, ts: int, out: list[Output], high: Decimal, low: Decimal) -> None:
        if not self.stops:
            return
        for o in sorted(self.stops.values(), key=lambda o: o.seq):
            if o.order.client_order_id not in self.stops:
                continue  # cancelled a moment ago by its OCO partner
            price = high if o.order.side == Side.BUY else low
            if price >= o.order.stop_price if o.order.side == Side.BUY else price <= o.order.stop_price:
                del self.stops[o.order.client_order_id]
                out.append(StopTriggered(o.order.client_order_id, ts, price))
                self._take(o, ts, out)

    def _fill(self, o: _Live, qty: Decimal, price: Decimal, liquidity: Liquidity, ts: int, out: list[Output],
              is_final: bool) -> None:
        o.filled += qty
        o.fills += 1
        fee, currency = self.config.fees.charge(o.order.side, qty, price, liquidity, self.base, self.quote)
        coid = o.order.client_order_id
        out.append(Fill(coid, f"{coid}-{o.fills}", o.order.side, qty, price, fee, currency, liquidity, ts, is_final,
                        o.arrival_mid))
        if o.order.oco_group is not None and o.fills == 1:
            self._cancel_partners(o, ts, out)

    def _mid(self) -> Decimal | None:
        book = self.book
        if book is None or not book.bids or not book.asks:
            return None
        return (book.bids[0][0] + book.asks[0][0]) / 2

    def _cancel_partners(self, o: _Live, ts: int, out: list[Output]) -> None:
        """As on Binance: once one order of an OCO group executes (even partly), the others are cancelled in
        the same instant, so the group can never sell the same coins twice."""
        for pool in (self.pending, self.waiting, self.stops, self.resting):
            for partner in [p for p in pool.values() if p.order.oco_group == o.order.oco_group and p is not o]:
                self._finish(pool.pop(partner.order.client_order_id), S.CANCELED, ts, out, "OCO")

    def _queue(self, pool: dict[str, _Live], o: _Live) -> None:
        self.seq += 1
        o.seq = self.seq
        pool[o.order.client_order_id] = o

    def _finish(self, o: _Live, status: OrderStatus, ts: int, out: list[Output], reason: str | None = None) -> None:
        out.append(StatusChange(o.order.client_order_id, status, ts, o.filled, reason))
        self._remember(o.order.client_order_id, status)

    def _remember(self, client_order_id: str, status: OrderStatus) -> None:
        if self._final_shared:
            self.final, self._final_shared = dict(self.final), False
        self.final[client_order_id] = status
        while len(self.final) > self.config.remember_final:
            del self.final[next(iter(self.final))]

    # --- persistence -------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state, JSON-able. The config is not in it: it comes from settings on restart."""
        version, internal, gauss = self.rng.getstate()
        return {
            "version": 1, "symbol": self.symbol, "seed": self.seed, "now": self.now, "seq": self.seq,
            "market_ts": self.market_ts,
            "rng": [version, list(internal), gauss],
            "book": self.book.to_dict() if self.book else None,
            "orders": [{"phase": phase, "order": o.order.to_dict(), "due": o.due, "seq": o.seq,
                        "filled": str(o.filled), "fills": o.fills,
                        "arrival_mid": None if o.arrival_mid is None else str(o.arrival_mid)}
                       for phase, pool in self._pools().items() for o in pool.values()],
            "final": [[coid, status.value] for coid, status in self.final.items()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: EngineConfig = EngineConfig()) -> MatchingEngine:
        if d.get("version") != 1:
            raise ValueError(f"unknown matching state version {d.get('version')}")
        engine = cls(d["symbol"], config, d["seed"])
        engine.now, engine.seq, engine.market_ts = d["now"], d["seq"], d.get("market_ts", d["now"])
        version, internal, gauss = d["rng"]
        engine.rng.setstate((version, tuple(internal), gauss))
        engine.book = Book.from_dict(d["book"]) if d["book"] else None
        pools = engine._pools()
        for r in d["orders"]:
            pools[r["phase"]][r["order"]["client_order_id"]] = _Live(
                Order.from_dict(r["order"]), r["due"], r["seq"], Decimal(r["filled"]), r["fills"],
                None if r.get("arrival_mid") is None else Decimal(r["arrival_mid"]))
        engine.final = {coid: OrderStatus(status) for coid, status in d["final"]}
        return engine

    def copy(self) -> MatchingEngine:
        """An engine in the same state that shares nothing mutable with this one (pure decisions copy the engine
        they change, so the state they started from stays as it was). ``rng`` is shared: the engine only
        persists it, latencies come from per-order generators (``latency_of``). A synthetic book not built yet
        is built by each from the same candle; ``final`` is shared until either remembers another order."""
        twin = object.__new__(type(self))  # what copy.copy makes of it, without the generic protocol's cost
        twin.__dict__.update(self.__dict__)
        if self._book is not None:
            b = self._book
            twin._book = Book(b.ts, b.bids, b.asks, b.synthetic, {side: list(q) for side, q in b.used.items()})
        twin.pending, twin.stops = _copied(self.pending), _copied(self.stops)
        twin.resting, twin.waiting = _copied(self.resting), _copied(self.waiting)
        self._final_shared = twin._final_shared = True
        return twin

    def _pools(self) -> dict[str, dict[str, _Live]]:
        return {"pending": self.pending, "waiting": self.waiting, "stops": self.stops, "resting": self.resting}

    # --- orders that arrive after the engine moved on -----------------------------------------------------

    @property
    def has_live_orders(self) -> bool:
        return bool(self.pending or self.waiting or self.stops or self.resting)

    def spawn(self) -> MatchingEngine:
        """An empty engine with the same configuration and seed: where a late order is replayed over the market
        data of its own time before it joins this one (``adopt``)."""
        return MatchingEngine(self.symbol, self.config, self.seed)

    def hand_over_group(self, oco_group: str | None, into: MatchingEngine) -> None:
        """Move this group's legs still waiting for their partners into ``into`` (a replay engine)."""
        for coid, o in [(c, o) for c, o in self.waiting.items() if oco_group and o.order.oco_group == oco_group]:
            del self.waiting[coid]
            into.waiting[coid] = o

    def adopt(self, other: MatchingEngine) -> None:
        """Take over the orders ``other`` still holds (resting, armed, pending or waiting), queued behind ours,
        and what it finished (so duplicates and cancels of them are recognized)."""
        for phase, pool in other._pools().items():
            for o in sorted(pool.values(), key=lambda o: o.seq):
                self._queue(self._pools()[phase], o)
        for coid, status in other.final.items():
            self._remember(coid, status)
