"""The paper venue as pure decisions over a ``VenueBook``: a ``MatchingEngine`` per (exchange, symbol) driven by
candles, order-book snapshots and the OMS's commands, the venue's own order records (the command and its
status) and what its fills hold, turned into the events a venue answers with.

Clock. The venue's time is market time, and an order's time is its own: the market time of what caused it (the
decision's candle close, the fill that armed a protective leg), carried as the command's event time. It arrives
``latency`` later and meets the book in force then; a resting order sees only market data after its arrival.

* behind (the order is newer than the engine's last market event): the engine first catches up on the market
  data up to the order's time, and later skips that data when its own consumer delivers it;
* ahead (the engine already applied market data newer than the order): the order is replayed in a fresh engine
  over the market data from its own time up to the engine's, then joins the engine (``adopt``).

The market data a catch-up needs is an input: ``market_needed`` says which windows, the service reads them from
the stored candles and snapshots and passes them to ``decide`` as ``market``. The in-process runner applies
market data before the orders it causes, so it never has anything to catch up and passes none.

Candle-driven books change only once per candle, so an order is matched at once against the book in force; with
order-book snapshots it waits for the next snapshot, as on the exchange. The legs of an OCO group become live
together, once the last has arrived. Spot has no shorting: a sell beyond the free balance (what the venue's
fills hold, less what open sells lock) is refused, and so is the rest of its OCO group.

Engines are mutable objects: a decision works on a copy (``MatchingEngine.copy``) of the one it changes, so the
book it was given stays valid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from quorum.domain.position import held_after
from quorum.events.base import Envelope
from quorum.events.fills import OrderFilled
from quorum.events.market_data import CandleClosed, OrderBookSnapshotted
from quorum.events.orders import CancelOrder, OrderAccepted, OrderCanceled, OrderExpired, OrderRejected, SubmitOrder
from quorum.matching.book import Level
from quorum.matching.engine import EngineConfig, Fill, MatchingEngine, Order, Output, StatusChange
from quorum.outcome import Emit, Outcome
from quorum.times import from_ms, to_ms
from quorum.types import OrderStatus, Side, split_symbol, timeframe_seconds

Key = tuple[str, str]  # (exchange, symbol)
ZERO = Decimal(0)
DAY_MS = 86_400_000
OPEN = frozenset({OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})
REMEMBER_FINAL = 500  # the service saves the engine per event: keep its duplicate-id memory small


@dataclass(frozen=True)
class VenueParams:
    engine: EngineConfig = EngineConfig(remember_final=REMEMBER_FINAL)
    seed: int = 0  # latency RNG seed (per symbol: seed + a hash of the symbol)


@dataclass(frozen=True)
class VenueOrder:
    """An order the venue holds open, with what its fills executed so far."""

    command: SubmitOrder
    status: OrderStatus = OrderStatus.SUBMITTED
    filled: Decimal = ZERO


@dataclass(frozen=True)
class VenueBook:
    engines: Mapping[Key, MatchingEngine] = field(default_factory=dict)
    orders: Mapping[str, VenueOrder] = field(default_factory=dict)  # open ones, by client order id
    finished: Mapping[str, str] = field(default_factory=dict)  # client order id -> exchange, of those no longer open
    held: Mapping[Key, Decimal] = field(default_factory=dict)  # base asset the venue's fills hold

    def exchange_of(self, client_order_id: str) -> str | None:
        order = self.orders.get(client_order_id)
        return order.command.exchange if order is not None else self.finished.get(client_order_id)


# --- market data a catch-up applies ----------------------------------------------------------------------

@dataclass(frozen=True)
class StoredCandle:
    """A candle as market data stored it, known at its close."""

    close_ts: int  # epoch ms
    seconds: int  # its timeframe
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class StoredBook:
    ts: int  # epoch ms
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


MarketEvent = StoredCandle | StoredBook


@dataclass(frozen=True)
class MarketWindow:
    """Stored market data of (exchange, symbol) known in (after, until]: all of it when ``everything``, else only
    the latest candle and the latest snapshot (with nothing live, only the state in force at ``until`` matters)."""

    exchange: str
    symbol: str
    after: int
    until: int
    everything: bool


# --- records the store keeps beside the engines ----------------------------------------------------------

@dataclass(frozen=True)
class OrderOpened:
    """A new order (``paper_orders``, SUBMITTED): its command as received."""

    command: Envelope[SubmitOrder]


@dataclass(frozen=True)
class OrderStatusSet:
    client_order_id: str
    status: OrderStatus


@dataclass(frozen=True)
class FillRecorded:
    """One of the venue's trades (``paper_fills``), which the OMS reads to reconcile."""

    fill: OrderFilled


# --- decisions -------------------------------------------------------------------------------------------

def new_engine(exchange: str, symbol: str, params: VenueParams) -> MatchingEngine:
    seed = params.seed + int.from_bytes(f"{exchange}:{symbol}".encode()[:8].ljust(8, b"\0"), "big")
    return MatchingEngine(symbol, params.engine, seed % 2**63)


def decide(book: VenueBook, message: Envelope[Any], params: VenueParams, now: datetime,
           market: Sequence[MarketEvent] = ()) -> Outcome[VenueBook]:
    """``market``: the stored market data of the windows ``market_needed`` named (none in lock-step)."""
    p = message.payload
    if isinstance(p, SubmitOrder):
        return on_submit(book, message, params, market)
    if isinstance(p, CancelOrder):
        return on_cancel(book, p, to_ms(message.event_time), params, market)
    if isinstance(p, CandleClosed):
        return on_candle(book, p, params)
    if isinstance(p, OrderBookSnapshotted):
        return on_book(book, p, params)
    return Outcome(book)


def market_needed(book: VenueBook, message: Envelope[Any]) -> tuple[MarketWindow, ...]:
    """The stored market data ``decide`` may apply for this message: up to the order's time when the engine is
    behind it; when it is ahead, the state in force at the order's time and everything after it, up to the
    engine's (the replay's windows: the order's market and what followed)."""
    p = message.payload
    if isinstance(p, SubmitOrder):
        if p.client_order_id in book.orders or p.client_order_id in book.finished:
            return ()
        exchange: str | None = p.exchange
    elif isinstance(p, CancelOrder):
        exchange = book.exchange_of(p.client_order_id)
    else:
        return ()
    if exchange is None:
        return ()
    at, engine = to_ms(message.event_time), book.engines.get((exchange, p.symbol))
    reached = engine.market_ts if engine is not None else 0
    if isinstance(p, SubmitOrder) and reached > at:
        return (MarketWindow(exchange, p.symbol, 0, at, False), MarketWindow(exchange, p.symbol, at, reached, True))
    if at <= reached:
        return ()
    live = engine is not None and bool(reached) and engine.has_live_orders
    return (MarketWindow(exchange, p.symbol, reached, at, live),)


def on_submit(book: VenueBook, message: Envelope[SubmitOrder], params: VenueParams,
              market: Sequence[MarketEvent] = ()) -> Outcome[VenueBook]:
    cmd = message.payload
    coid = cmd.client_order_id
    if coid in book.orders or coid in book.finished:
        return Outcome(book)  # the venue has this order already
    at = to_ms(message.event_time)  # the command's own market time
    draft = _Draft(book, (cmd.exchange, cmd.symbol), params)
    draft.open(message)
    engine = draft.engine
    ahead = engine.market_ts > at
    if not ahead:  # market data up to the order's time comes first, and counts in the balance check
        draft.report(_catch_up(engine, market, at))
    short = oversold(draft.orders, draft.held, cmd) if cmd.side is Side.SELL else None
    if short is not None:
        draft.set_status(coid, OrderStatus.REJECTED)
        draft.events.append(Emit(OrderRejected(venue=cmd.venue, client_order_id=coid, symbol=cmd.symbol,
                                               reason_code="INSUFFICIENT_BALANCE", detail=short)))
        outputs = engine.abandon_group(at, cmd.oco_group)
    elif ahead:  # the engine is past the order's time: replay the order over its own market, then adopt it
        order = _order(cmd)
        replay = engine.spawn()
        engine.hand_over_group(order.oco_group, replay)
        outputs = _catch_up(replay, market, at)
        outputs += _place(replay, at, order)
        outputs += _catch_up(replay, market, engine.market_ts)
        engine.adopt(replay)
    else:
        outputs = _place(engine, at, _order(cmd))
    draft.report(outputs)
    return draft.outcome()


def on_cancel(book: VenueBook, cmd: CancelOrder, at: int, params: VenueParams,
              market: Sequence[MarketEvent] = ()) -> Outcome[VenueBook]:
    """Takes effect at ``at`` (the command's market time); an order this venue never had: nothing to say."""
    exchange = book.exchange_of(cmd.client_order_id)
    if exchange is None:
        return Outcome(book)
    draft = _Draft(book, (exchange, cmd.symbol), params)
    outputs = _catch_up(draft.engine, market, at)
    outputs += draft.engine.cancel(at, cmd.client_order_id)
    draft.report(outputs)
    return draft.outcome()


def on_candle(book: VenueBook, c: CandleClosed, params: VenueParams) -> Outcome[VenueBook]:
    close = to_ms(c.ts) + timeframe_seconds(c.timeframe) * 1000
    engine = book.engines.get((c.exchange, c.symbol))
    if engine is not None and close <= engine.market_ts:
        return Outcome(book)  # applied already, by an order that caught the engine up to its own time
    draft = _Draft(book, (c.exchange, c.symbol), params)
    draft.report(draft.engine.on_candle(close, c.open, c.high, c.low, c.close, c.volume))
    return draft.outcome()


def on_book(book: VenueBook, b: OrderBookSnapshotted, params: VenueParams) -> Outcome[VenueBook]:
    ts = to_ms(b.ts)
    engine = book.engines.get((b.exchange, b.symbol))
    if engine is not None and ts <= engine.market_ts:
        return Outcome(book)  # applied already (see on_candle)
    draft = _Draft(book, (b.exchange, b.symbol), params)
    draft.report(draft.engine.on_book(ts, [(lv.price, lv.quantity) for lv in b.bids],
                                      [(lv.price, lv.quantity) for lv in b.asks]))
    return draft.outcome()


def oversold(orders: Mapping[str, VenueOrder], held: Mapping[Key, Decimal], cmd: SubmitOrder) -> str | None:
    """Spot has no shorting: like the exchange, refuse a sell beyond the free balance — what the venue's own
    fills hold, less what open sells already lock (an OCO group locks once, as on Binance)."""
    key = (cmd.exchange, cmd.symbol)
    have = held.get(key, ZERO)
    locked: dict[str, Decimal] = {}
    for coid, o in orders.items():
        other = o.command
        if coid == cmd.client_order_id or (other.exchange, other.symbol) != key:
            continue
        if other.side is not Side.SELL or (cmd.oco_group and other.oco_group == cmd.oco_group):
            continue  # buys lock quote, not base; the legs of one OCO share one lock
        group = other.oco_group or coid
        locked[group] = max(locked.get(group, ZERO), other.quantity - o.filled)
    free = have - sum(locked.values(), ZERO)
    return None if cmd.quantity <= free else f"sell {cmd.quantity} > free {free} (held {have})"


# --- mechanics -------------------------------------------------------------------------------------------

def _order(cmd: SubmitOrder) -> Order:
    return Order(cmd.client_order_id, cmd.side, cmd.quantity, cmd.order_type, cmd.limit_price, cmd.stop_price,
                 cmd.time_in_force, cmd.oco_group, cmd.oco_size)


def _place(engine: MatchingEngine, at: int, order: Order) -> list[Output]:
    outputs = engine.submit(at, order)
    if engine.book is None or engine.book.synthetic:  # nothing changes before the next candle: arrive now
        outputs += engine.advance(at + engine.config.latency.high_ms + 1)
    return outputs


def _catch_up(engine: MatchingEngine, market: Sequence[MarketEvent], until: int) -> list[Output]:
    """Apply the market data (candles by their close, snapshots) newer than the engine's and known at ``until``.
    With nothing live, only the state in force at ``until`` matters: the latest of each."""
    since = engine.market_ts
    if until <= since or not market:
        return []
    everything = bool(since) and engine.has_live_orders
    # keyed by (time, -timeframe) for candles and (time, 1) for snapshots: one event each, however often given
    candles = {(e.close_ts, -e.seconds): e for e in market
               if isinstance(e, StoredCandle) and since < e.close_ts <= until}
    books = {(e.ts, 1): e for e in market if isinstance(e, StoredBook) and since < e.ts <= until}
    if not everything:
        candles = {k: candles[k] for k in ([max(candles)] if candles else [])}
        books = {k: books[k] for k in ([max(books)] if books else [])}
    due: list[tuple[tuple[int, int], MarketEvent]] = [*candles.items(), *books.items()]
    outputs: list[Output] = []
    for (ts, _), event in sorted(due, key=lambda e: e[0]):
        if isinstance(event, StoredBook):
            outputs += engine.on_book(ts, event.bids, event.asks)
        else:
            outputs += engine.on_candle(ts, event.open, event.high, event.low, event.close, event.volume)
    return outputs


class _Draft:
    """One decision's changes, made on copies of what it touches: the engine of its (exchange, symbol), and the
    order and holding maps only once something changes them (a candle with nothing open copies one engine)."""

    def __init__(self, book: VenueBook, key: Key, params: VenueParams) -> None:
        self.book, self.key = book, key
        current = book.engines.get(key)
        self.engine = current.copy() if current is not None else new_engine(*key, params)
        self.events: list[Emit] = []
        self.records: list[Any] = []
        self._orders: dict[str, VenueOrder] | None = None
        self._finished: dict[str, str] | None = None
        self._held: dict[Key, Decimal] | None = None

    @property
    def orders(self) -> Mapping[str, VenueOrder]:
        return self.book.orders if self._orders is None else self._orders

    @property
    def held(self) -> Mapping[Key, Decimal]:
        return self.book.held if self._held is None else self._held

    def _writable_orders(self) -> dict[str, VenueOrder]:
        if self._orders is None:
            self._orders = dict(self.book.orders)
        return self._orders

    def open(self, message: Envelope[SubmitOrder]) -> None:
        self._writable_orders()[message.payload.client_order_id] = VenueOrder(message.payload)
        self.records.append(OrderOpened(message))

    def set_status(self, coid: str, status: OrderStatus) -> None:
        self.records.append(OrderStatusSet(coid, status))
        orders = self._writable_orders()
        order = orders.get(coid)
        if order is None:
            return  # ended earlier in this decision
        if status in OPEN:
            orders[coid] = replace(order, status=status)
            return
        del orders[coid]
        if self._finished is None:
            self._finished = dict(self.book.finished)
        self._finished[coid] = order.command.exchange

    def report(self, outputs: list[Output]) -> None:
        """Record and announce what the venue did, in the order it happened."""
        commands: dict[str, SubmitOrder] = {}
        for out in outputs:
            coid = out.client_order_id
            if coid not in commands:
                order = self.orders.get(coid)
                if order is None:
                    continue  # not an order this venue holds (a cancel for an unknown id): nothing to tell
                commands[coid] = order.command
            cmd = commands[coid]
            if isinstance(out, Fill):
                self._fill(cmd, out)
            elif isinstance(out, StatusChange):
                self.set_status(coid, out.status)
                event = _announcement(cmd, out)
                if event is not None:  # PARTIALLY_FILLED / FILLED travel as fills
                    self.events.append(Emit(event, key=f"{coid}:{out.status.value}", event_time=from_ms(out.ts)))

    def _fill(self, cmd: SubmitOrder, out: Fill) -> None:
        fill = OrderFilled(
            fill_id=out.fill_id, venue=cmd.venue, mode=cmd.mode, client_order_id=out.client_order_id,
            exchange=cmd.exchange, symbol=cmd.symbol, side=out.side, quantity=out.quantity, price=out.price,
            fee=out.fee, fee_currency=out.fee_currency, liquidity=out.liquidity, ts=from_ms(out.ts),
            is_final=out.is_final, arrival_mid=out.arrival_mid)
        self.records.append(FillRecorded(fill))
        self.events.append(Emit(fill, key=out.fill_id, event_time=fill.ts))
        orders = self._writable_orders()
        order = orders.get(out.client_order_id)
        if order is not None:
            orders[out.client_order_id] = replace(order, filled=order.filled + out.quantity)
        if self._held is None:
            self._held = dict(self.book.held)
        key = (cmd.exchange, cmd.symbol)
        self._held[key] = held_after(self._held.get(key, ZERO), out.side, out.quantity, out.fee, out.fee_currency,
                                     split_symbol(cmd.symbol)[0])

    def outcome(self) -> Outcome[VenueBook]:
        book = VenueBook({**self.book.engines, self.key: self.engine}, self.orders,
                         self.book.finished if self._finished is None else self._finished, self.held)
        return Outcome(book, tuple(self.events), tuple(self.records))


def _announcement(cmd: SubmitOrder, out: StatusChange) -> Any:
    common = {"venue": cmd.venue, "client_order_id": cmd.client_order_id, "symbol": cmd.symbol}
    ts = from_ms(out.ts)
    if out.status is OrderStatus.ACCEPTED:
        return OrderAccepted(**common, ts=ts)
    if out.status is OrderStatus.CANCELED:
        return OrderCanceled(**common, reason_code=out.reason or "CANCELED", filled_quantity=out.filled_quantity,
                             ts=ts)
    if out.status is OrderStatus.EXPIRED:
        return OrderExpired(**common, reason_code=out.reason or "EXPIRED", filled_quantity=out.filled_quantity, ts=ts)
    if out.status is OrderStatus.REJECTED:
        return OrderRejected(**common, reason_code=out.reason or "REJECTED")
    return None
