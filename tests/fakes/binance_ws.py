"""A local stand-in for Binance's public spot websocket streams, for ccxt.pro's ``binance`` class: kline streams
(``btcusdt@kline_1m``) and diff-depth streams (``btcusdt@depth@100ms``), plus the REST endpoints ccxt calls
around them: ``exchangeInfo`` (load_markets), ``klines`` (REST fallback and confirmation) and ``depth`` (the
snapshot ccxt.pro syncs its local book from). Self-contained; served on 127.0.0.1 in the test's event loop.

The market moves only when a test says so (``advance_klines``, ``advance_book``): each step publishes one event
to every socket subscribed to its stream, like a live venue (a client not connected at that moment misses it),
and REST always answers with the venue's current state, so both paths stay consistent.

Data is real: candles from ``shared/data/ohlcv`` and the recorded top-20 book from ``shared/data/orderbook``.
Knobs: in-progress updates per candle, a bad record (``corrupt``), a late revision of a closed candle
(``revisions``), dropping every socket (``drop_connections``), and refusing sockets and REST (``go_down``).
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from quorum.types import timeframe_seconds

from tests.fakes.binance_common import exchange_info, spot_market

ZERO = "0.00000000"
_FILTERS = {  # (tickSize, stepSize) as Binance lists them for these spot markets
    "BTCUSDT": ("0.01000000", "0.00001000"),
    "ETHUSDT": ("0.01000000", "0.00010000"),
}


def binance_text(value: str) -> str:
    """Binance sends prices and quantities as text with 8 decimals (``"0.01913200"``); bad values pass as given."""
    number = Decimal(value)
    return f"{number:.8f}" if number.is_finite() else value


@dataclass(frozen=True)
class Kline:
    """One candle as text, exactly as the data file has it."""

    open_ms: int
    open: str
    high: str
    low: str
    close: str
    volume: str


def read_klines(path: Path, *, start: int = 0, count: int | None = None) -> list[Kline]:
    with path.open(newline="") as f:
        rows = itertools.islice(csv.DictReader(f), start, None if count is None else start + count)
        return [Kline(int(r["ts"]), r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in rows]


@dataclass(frozen=True)
class BookRow:
    """The top of the recorded book after one depth update: levels best first, (price, quantity) as text."""

    ts_ms: int
    update_id: int
    bids: tuple[tuple[str, str], ...]
    asks: tuple[tuple[str, str], ...]


def read_book(path: Path, *, count: int | None = None, levels: int = 20) -> list[BookRow]:
    with path.open(newline="") as f:
        rows = itertools.islice(csv.DictReader(f), count)
        return [
            BookRow(
                int(r["ts"]),
                int(r["update_id"]),
                tuple((r[f"bid_px_{i}"], r[f"bid_qty_{i}"]) for i in range(1, levels + 1)),
                tuple((r[f"ask_px_{i}"], r[f"ask_qty_{i}"]) for i in range(1, levels + 1)),
            )
            for r in rows
        ]


@dataclass(frozen=True)
class Revision:
    """After candle ``after`` closes, the venue re-publishes candle ``candle`` (already closed) with ``changes``."""

    candle: int
    after: int
    changes: Mapping[str, str]


@dataclass
class _KlineTape:
    symbol: str
    interval: str
    events: list[dict[str, Any]]
    cursor: int = 0
    record: dict[int, dict[str, Any]] = field(default_factory=dict)  # open ms -> latest "k" published


@dataclass
class _BookTape:
    symbol: str
    rows: list[BookRow]
    cursor: int = 0  # rows[cursor] is the venue's book now


def _kline_payloads(candle: Kline, updates: int) -> list[dict[str, str]]:
    """Values of a candle's updates: ``updates - 1`` in-progress ones swinging to the extremes, then the final."""
    o, h, lo, c, v = (Decimal(x) for x in (candle.open, candle.high, candle.low, candle.close, candle.volume))
    out = []
    seen = [o]
    for j in range(1, updates):
        last = lo if j % 2 else h
        seen.append(last)
        out.append({"o": o, "h": max(seen), "l": min(seen), "c": last, "v": v * j / updates})
    out.append({"o": o, "h": h, "l": lo, "c": c, "v": v})
    return [{k: binance_text(str(x)) for k, x in p.items()} for p in out]


_FIELD = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"}


def _apply(values: dict[str, str], changes: Mapping[str, str]) -> dict[str, str]:
    return {**values, **{_FIELD[k]: binance_text(v) for k, v in changes.items()}}


def build_kline_events(
    symbol: str,
    interval: str,
    candles: Sequence[Kline],
    *,
    updates_per_candle: int = 4,
    corrupt: Mapping[int, Mapping[str, str]] | None = None,
    revisions: Sequence[Revision] = (),
) -> list[dict[str, Any]]:
    """The kline events a venue publishes for ``candles``, in order, Binance's shape (``x`` marks the close)."""
    step = timeframe_seconds(interval) * 1000
    finals: dict[int, dict[str, str]] = {}
    events: list[dict[str, Any]] = []

    def event(index: int, values: dict[str, str], at: int, closed: bool) -> dict[str, Any]:
        t = candles[index].open_ms
        k = {"t": t, "T": t + step - 1, "s": symbol, "i": interval, "f": 100 * index, "L": 100 * index + 99,
             **values, "n": 100, "x": closed, "q": ZERO, "V": ZERO, "Q": ZERO, "B": "0"}
        return {"e": "kline", "E": at, "s": symbol, "k": k}

    for i, candle in enumerate(candles):
        payloads = _kline_payloads(candle, updates_per_candle)
        payloads = [_apply(p, (corrupt or {}).get(i, {})) for p in payloads]
        for j, values in enumerate(payloads, start=1):
            closed = j == len(payloads)
            events.append(event(i, values, candle.open_ms + step * j // len(payloads), closed))
        finals[i] = payloads[-1]
        for rev in (r for r in revisions if r.after == i):
            finals[rev.candle] = _apply(finals[rev.candle], rev.changes)
            events.append(event(rev.candle, finals[rev.candle], events[-1]["E"] + 1, True))
    return events


def _book_diff(old: Sequence[tuple[str, str]], new: Sequence[tuple[str, str]]) -> list[list[str]]:
    """Levels that changed from ``old`` to ``new``; a level that left the book is sent with quantity zero."""
    before = {Decimal(p): Decimal(q) for p, q in old}
    after = {Decimal(p): Decimal(q) for p, q in new}
    changed = [[binance_text(str(p)), binance_text(str(q))] for p, q in after.items() if before.get(p) != q]
    gone = [[binance_text(str(p)), ZERO] for p in before if p not in after]
    return changed + gone


class _Connection:
    """One client socket: what it subscribed to, and an outbox so messages leave in publishing order."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.streams: set[str] = set()
        self.outbox: asyncio.Queue[str] = asyncio.Queue()

    async def pump(self) -> None:
        while True:
            text = await self.outbox.get()
            await self.ws.send_str(text)

    def kill(self) -> None:
        """The socket dies without a closing handshake, as when a network path fails."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class FakeBinance:
    """The fake venue. Use ``async with FakeBinance() as venue`` and point ccxt at ``venue.ccxt_urls()``."""

    def __init__(self, symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT")) -> None:
        unknown = [s for s in symbols if s not in _FILTERS]
        if unknown:
            raise ValueError(f"no exchange filters known for {unknown}")
        self.symbols = tuple(symbols)
        self.down = False
        self.requests: Counter[str] = Counter()  # REST path -> calls
        self.subscriptions: Counter[str] = Counter()  # stream -> SUBSCRIBE requests
        self.depth_snapshots: list[int] = []  # lastUpdateId of each REST depth snapshot served
        self._klines: dict[tuple[str, str], _KlineTape] = {}
        self._books: dict[str, _BookTape] = {}
        self._connections: set[_Connection] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> FakeBinance:
        app = web.Application(middlewares=[self._outage])
        app.router.add_get("/stream/ws{tail:.*}", self._websocket)
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/klines", self._rest_klines)
        app.router.add_get("/api/v3/depth", self._rest_depth)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        for conn in list(self._connections):
            conn.kill()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBinance:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v3"

    @property
    def ws_url(self) -> str:
        # ccxt.pro tells spot from futures sockets by "/stream" in the URL, as in wss://stream.binance.com/ws
        return f"ws://127.0.0.1:{self.port}/stream/ws"

    def ccxt_urls(self) -> dict[str, Any]:
        """What ``make_exchange("binance", urls=...)`` needs to talk to this venue only."""
        return {"public": self.rest_url, "ws": {"spot": self.ws_url, "margin": self.ws_url}}

    # --- the market --------------------------------------------------------------------------------------------

    def load_klines(self, symbol: str, interval: str, candles: Sequence[Kline], **knobs: Any) -> None:
        """Queue the candles to publish (see ``build_kline_events`` for the knobs); nothing is sent yet."""
        events = build_kline_events(symbol, interval, candles, **knobs)
        self._klines[(symbol, interval)] = _KlineTape(symbol, interval, events)

    def advance_klines(self, symbol: str, interval: str, n: int = 1) -> int | None:
        """Publish the next ``n`` kline events; the event time of the last one, or None when none was left."""
        tape = self._klines[(symbol, interval)]
        at = None
        for event in tape.events[tape.cursor : tape.cursor + n]:
            tape.cursor += 1
            tape.record[event["k"]["t"]] = event["k"]
            self._publish(f"{symbol.lower()}@kline_{interval}", event)
            at = event["E"]
        return at

    def klines_left(self, symbol: str, interval: str) -> int:
        tape = self._klines[(symbol, interval)]
        return len(tape.events) - tape.cursor

    def candles_started(self, symbol: str, interval: str) -> int:
        """How many candles have had at least one update published (the last may still be forming)."""
        return len(self._klines[(symbol, interval)].record)

    def load_book(self, symbol: str, rows: Sequence[BookRow]) -> None:
        """The book starts at ``rows[0]`` (what a REST snapshot returns); each advance moves to the next row."""
        self._books[symbol] = _BookTape(symbol, list(rows))

    def advance_book(self, symbol: str, n: int = 1) -> int | None:
        """Publish the diffs to the next ``n`` rows; the last row's event time, or None when none was left."""
        tape = self._books[symbol]
        at = None
        for _ in range(n):
            if tape.cursor + 1 >= len(tape.rows):
                break
            old, new = tape.rows[tape.cursor], tape.rows[tape.cursor + 1]
            tape.cursor += 1
            event = {"e": "depthUpdate", "E": new.ts_ms, "s": symbol, "U": old.update_id + 1, "u": new.update_id,
                     "b": _book_diff(old.bids, new.bids), "a": _book_diff(old.asks, new.asks)}
            self._publish(f"{symbol.lower()}@depth@100ms", event)
            self._publish(f"{symbol.lower()}@depth", event)
            at = new.ts_ms
        return at

    def _publish(self, stream: str, event: dict[str, Any]) -> None:
        text = json.dumps(event)
        for conn in self._connections:
            if stream in conn.streams:
                conn.outbox.put_nowait(text)

    # --- faults ------------------------------------------------------------------------------------------------

    def drop_connections(self) -> None:
        """Every open socket dies; new ones are accepted."""
        for conn in list(self._connections):
            conn.kill()

    def go_down(self) -> None:
        """Outage: sockets die, new sockets and REST calls get 503 until ``come_up``. The market moves on."""
        self.down = True
        self.drop_connections()

    def come_up(self) -> None:
        self.down = False

    async def wait_subscribed(self, stream: str, timeout: float = 10.0) -> None:
        """Until some open socket is subscribed to ``stream`` (tests publish only once someone listens)."""
        async with asyncio.timeout(timeout):
            while not any(stream in c.streams for c in self._connections):
                await asyncio.sleep(0.01)

    # --- handlers ----------------------------------------------------------------------------------------------

    @web.middleware
    async def _outage(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.down:
            return web.Response(status=503, text="Service Unavailable")
        if request.path.startswith("/api/"):
            self.requests[request.path] += 1
        return await handler(request)

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Connection(ws, request)
        self._connections.add(conn)
        pump = asyncio.create_task(conn.pump())
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    conn.outbox.put_nowait(json.dumps(self._control(conn, message.data)))
        finally:
            self._connections.discard(conn)
            pump.cancel()
        return ws

    def _control(self, conn: _Connection, text: str) -> dict[str, Any]:
        """Binance's live-subscription requests: SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS."""
        try:
            request = json.loads(text)
            method, params, rid = request["method"], request.get("params", []), request["id"]
        except (ValueError, KeyError, TypeError):
            return {"error": {"code": 3, "msg": "Invalid JSON: expected method, params and id"}, "id": None}
        if method == "SUBSCRIBE":
            conn.streams.update(params)
            self.subscriptions.update(params)
            return {"result": None, "id": rid}
        if method == "UNSUBSCRIBE":
            conn.streams.difference_update(params)
            return {"result": None, "id": rid}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(conn.streams), "id": rid}
        return {"error": {"code": 2, "msg": f"Invalid request: unknown method {method}"}, "id": rid}

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response(exchange_info([_market(s) for s in self.symbols]))

    def _symbol(self, request: web.Request) -> str:
        symbol = request.query.get("symbol", "")
        if symbol not in self.symbols:
            raise web.HTTPBadRequest(text=json.dumps({"code": -1121, "msg": "Invalid symbol."}),
                                     content_type="application/json")
        return symbol

    async def _rest_klines(self, request: web.Request) -> web.Response:
        symbol, interval = self._symbol(request), request.query.get("interval", "")
        tape = self._klines.get((symbol, interval))
        limit = min(int(request.query.get("limit", 500)), 1000)
        start = int(request.query.get("startTime", 0))
        end = int(request.query.get("endTime", 2**62))
        ks = sorted((k for t, k in (tape.record.items() if tape else ()) if start <= t <= end), key=lambda k: k["t"])
        ks = ks[:limit] if "startTime" in request.query else ks[-limit:]
        return web.json_response([
            [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"], k["Q"], "0"]
            for k in ks
        ])

    async def _rest_depth(self, request: web.Request) -> web.Response:
        tape = self._books.get(self._symbol(request))
        if tape is None:
            return web.json_response({"lastUpdateId": 0, "bids": [], "asks": []})
        limit = int(request.query.get("limit", 100))
        row = tape.rows[tape.cursor]
        self.depth_snapshots.append(row.update_id)
        return web.json_response({
            "lastUpdateId": row.update_id,
            "bids": [[binance_text(p), binance_text(q)] for p, q in row.bids[:limit]],
            "asks": [[binance_text(p), binance_text(q)] for p, q in row.asks[:limit]],
        })


def _market(symbol: str) -> dict[str, Any]:
    """An exchangeInfo entry as Binance lists a spot market (trimmed of nothing ccxt reads)."""
    base, quote = symbol[:-4], symbol[-4:]
    tick, step = _FILTERS[symbol]
    return spot_market(symbol, base, quote, tick=tick, step=step)
