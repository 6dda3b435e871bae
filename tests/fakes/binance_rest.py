"""A local stand-in for Binance's public spot REST API, enough for ccxt's ``binance`` to load markets and page
through klines: tests run real ccxt against it offline, with faults injected on purpose.

Candles come from the real ``shared/data/ohlcv`` files (``binance_BTCUSDT_1h.csv`` serves BTC/USDT 1h) and/or
from rows a test adds. Prices are served as the exact strings of the source, as Binance sends them. A listed
market has candles only for the intervals it has data for (others answer an empty list; Binance would
aggregate).

Fault knobs (thread-safe; the server runs on its own thread and event loop, so it serves sync and async tests):
``throttle`` (429 + Retry-After), ``fail`` (any status), ``drop`` / ``restore`` (a served gap), ``corrupt``
(a bad record), ``revise`` (a late correction); ``requests`` counts calls per path.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from quorum.types import timeframe_seconds

from tests.fakes.binance_common import exchange_info, spot_market

_FILE = re.compile(r"^binance_(?P<id>[A-Z0-9]+)_(?P<interval>\d+[mhdw])\.csv$")
_QUOTES = ("USDT", "USDC", "BTC", "ETH", "EUR")
INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
CORRUPTIONS = {  # what a broken upstream might send instead of a candle's prices
    "high_below_low": lambda r: (r[0], r[1], r[3], r[2], r[4], r[5]),
    "negative": lambda r: (r[0], "-" + r[1], r[2], r[3], r[4], r[5]),
    "nan": lambda r: (r[0], r[1], "NaN", r[3], r[4], r[5]),
}

Row = tuple[int, str, str, str, str, str]  # ts (open time, ms), open, high, low, close, volume as text


def market_id(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTCUSDT`` (Binance's id); ids pass through."""
    return symbol.replace("/", "")


def _split(mid: str) -> tuple[str, str]:
    for quote in _QUOTES:
        if mid.endswith(quote) and len(mid) > len(quote):
            return mid[: -len(quote)], quote
    raise ValueError(f"cannot split market id {mid!r} into base and quote")


def _error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


@dataclass
class _Series:
    """One market's candles for one interval, sorted by open time, plus the faults applied when serving."""

    rows: list[Row]
    dropped: set[int] = field(default_factory=set)
    replaced: dict[int, Row] = field(default_factory=dict)

    def index(self) -> list[int]:
        return [r[0] for r in self.rows]


@dataclass
class _Failures:
    next_n: int = 0
    every: int = 0
    status: int = 429
    retry_after: float | None = None
    seen: int = 0

    def due(self) -> bool:
        self.seen += 1
        if self.next_n > 0:
            self.next_n -= 1
            return True
        return self.every > 0 and self.seen % self.every == 0


class FakeBinance:
    """``with FakeBinance(data_dir) as fake: ex = fake.exchange()`` -> a ccxt async binance pointed at it."""

    def __init__(self, data_dir: Path | None = None, *, symbols: Iterable[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str], Path] = {}
        self._series: dict[tuple[str, str], _Series] = {}
        wanted = None if symbols is None else {market_id(s) for s in symbols}
        if data_dir is not None and data_dir.is_dir():
            for path in sorted(data_dir.glob("binance_*.csv")):
                m = _FILE.match(path.name)
                if m and (wanted is None or m["id"] in wanted):
                    self._files[(m["id"], m["interval"])] = path
        self._failures = _Failures()
        self._info: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.klines_params: list[dict[str, str]] = []
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeBinance:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-binance", daemon=True)
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError("fake Binance server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def exchange(self, **config: Any) -> Any:
        """A ccxt async ``binance`` whose every REST base URL points here (spot markets only)."""
        from quorum.marketdata.backfill_cli import make_exchange

        return make_exchange("binance", base_url=self.url, config=config)

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def main() -> None:
            self._stopped = asyncio.Event()
            app = web.Application()
            app.router.add_get("/api/v3/ping", self._ping)
            app.router.add_get("/api/v3/time", self._time)
            app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
            app.router.add_get("/api/v3/klines", self._klines)
            self._add_routes(app)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            ready.set()
            await self._stopped.wait()
            await runner.cleanup()

        try:
            loop.run_until_complete(main())
        finally:
            ready.set()
            loop.close()

    def _add_routes(self, app: web.Application) -> None:
        """Subclasses serve more of the API (the account and order endpoints)."""

    # ---- data and fault knobs ----------------------------------------------------------------------------------

    def add_rows(self, symbol: str, interval: str, rows: Iterable[Sequence[object]]) -> None:
        """Serve these candles (``ts, open, high, low, close, volume``) for the market, merged with any file rows."""
        key = (market_id(symbol), interval)
        with self._lock:
            series = self._load(key) if key in self._files else self._series.setdefault(key, _Series([]))
            by_ts = {r[0]: r for r in series.rows}
            for r in rows:
                ts, *values = r
                by_ts[int(str(ts))] = (int(str(ts)), *(str(v) for v in values))  # type: ignore[assignment]
            series.rows = sorted(by_ts.values())
            self._series[key] = series

    def rows(self, symbol: str, interval: str) -> list[Row]:
        """What the source holds (before faults)."""
        with self._lock:
            return list(self._load((market_id(symbol), interval)).rows)

    def throttle(self, next_n: int = 0, *, every: int = 0, retry_after: float | None = 1, status: int = 429) -> None:
        """Answer the next ``next_n`` kline requests (and/or every ``every``-th one) with ``status`` + Retry-After."""
        with self._lock:
            self._failures = _Failures(next_n=next_n, every=every, status=status, retry_after=retry_after)

    def fail(self, next_n: int, *, status: int = 503) -> None:
        """Answer the next ``next_n`` kline requests with a bare HTML error page, as a load balancer in front of
        the exchange does (503: ccxt raises ExchangeNotAvailable)."""
        self.throttle(next_n, retry_after=None, status=status)

    def drop(self, symbol: str, interval: str, *ts_ms: int) -> None:
        with self._lock:
            self._load((market_id(symbol), interval)).dropped.update(ts_ms)

    def restore(self, symbol: str, interval: str, *ts_ms: int) -> None:
        with self._lock:
            self._load((market_id(symbol), interval)).dropped.difference_update(ts_ms)

    def corrupt(self, symbol: str, interval: str, ts_ms: int, kind: str) -> None:
        """Serve a bad record at ``ts_ms``: ``high_below_low``, ``negative`` or ``nan``."""
        with self._lock:
            series = self._load((market_id(symbol), interval))
            series.replaced[ts_ms] = CORRUPTIONS[kind](self._row(series, ts_ms))

    def revise(self, symbol: str, interval: str, ts_ms: int, **values: str) -> None:
        """A late correction: from now on serve the candle at ``ts_ms`` with these fields changed."""
        with self._lock:
            series = self._load((market_id(symbol), interval))
            row = dict(zip(("ts", "open", "high", "low", "close", "volume"), self._row(series, ts_ms), strict=True))
            row.update(values)
            series.replaced[ts_ms] = tuple(row.values())  # type: ignore[assignment]

    @staticmethod
    def _row(series: _Series, ts_ms: int) -> Row:
        if ts_ms in series.replaced:
            return series.replaced[ts_ms]
        for r in series.rows:
            if r[0] == ts_ms:
                return r
        raise KeyError(f"no candle at {ts_ms}")

    def _load(self, key: tuple[str, str]) -> _Series:
        """Callers hold the lock. File rows are read once, as text, exactly as written."""
        if key not in self._series:
            path = self._files.get(key)
            if path is None:
                raise KeyError(f"no data for {key[0]} {key[1]}")
            from quorum.marketdata.files import read_rows

            self._series[key] = _Series([(int(r[0]), *r[1:]) for r in read_rows(path).iter_rows()])
        return self._series[key]

    def _markets(self) -> list[str]:
        return sorted({mid for mid, _ in (*self._files, *self._series)})

    # ---- handlers ----------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"x-mbx-used-weight-1m": str(sum(self.requests.values()))}

    async def _ping(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        return web.json_response({}, headers=self._headers())

    async def _time(self, request: web.Request) -> web.Response:
        import time

        self.requests[request.path] += 1
        return web.json_response({"serverTime": int(time.time() * 1000)}, headers=self._headers())

    async def _exchange_info(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        with self._lock:
            symbols = [self._info.get(mid) or self._info.setdefault(mid, self._symbol_info(mid))
                       for mid in self._markets()]
        return web.json_response(exchange_info(symbols), headers=self._headers())

    def _symbol_info(self, mid: str) -> dict[str, Any]:
        """Filters derived from the served prices: tick = the finest price step seen, lot = the finest volume."""
        base, quote = _split(mid)
        sample = next((s.rows[:500] for (m, _), s in self._series.items() if m == mid and s.rows), None)
        if sample is None:
            path = next(p for (m, _), p in self._files.items() if m == mid)
            from quorum.marketdata.files import read_rows

            sample = [tuple(r) for r in read_rows(path).head(500).iter_rows()]  # type: ignore[misc]

        def finest(values: Iterable[str], floor: int) -> str:
            places = max([floor, *(len(v.split(".")[1]) if "." in v else 0 for v in values)])
            return f"{Decimal(1).scaleb(-places):.8f}"

        tick = finest((v for r in sample for v in r[1:5]), 2)
        step = finest((r[5] for r in sample), 0)
        return spot_market(mid, base, quote, tick=tick, step=step)

    async def _klines(self, request: web.Request) -> web.Response:
        """Binance semantics: open time in [startTime, endTime], ascending, at most ``limit`` (default 500,
        max 1000); with only endTime, the last ``limit`` before it; with neither, the most recent."""
        self.requests[request.path] += 1
        q = dict(request.query)
        with self._lock:
            self.klines_params.append(q)
            failures = self._failures
            if failures.due():
                headers = self._headers()
                if failures.retry_after is not None:
                    headers["Retry-After"] = f"{failures.retry_after:g}"
                if failures.status in (418, 429):
                    return _error(failures.status, -1003, "Too many requests; current limit of IP is 6000 requests "
                                  "per minute. Please use the websocket for live updates to avoid polling the API.",
                                  headers)
                return web.Response(status=failures.status, headers=headers, content_type="text/html",
                                    text=f"<html><body><h1>{failures.status} Service Unavailable</h1></body></html>")
            interval = q.get("interval", "")
            if interval not in INTERVALS:
                return _error(400, -1120, "Invalid interval.")
            try:
                limit = int(q.get("limit", "500"))
                start = int(q["startTime"]) if "startTime" in q else None
                end = int(q["endTime"]) if "endTime" in q else None
            except ValueError:
                return _error(400, -1100, "Illegal characters found in a parameter.")
            if not 1 <= limit <= 1000:
                return _error(400, -1130, "Data sent for parameter 'limit' is not valid.")
            key = (q.get("symbol", ""), interval)
            if key not in self._series and key not in self._files:
                known = {m for m, _ in (*self._files, *self._series)}
                return _error(400, -1121, "Invalid symbol.") if key[0] not in known else web.json_response([])
            series = self._load(key)
            served = self._select(series, start, end, limit)
        step_ms = timeframe_seconds(interval) * 1000
        return web.json_response([_kline(r, step_ms) for r in served], headers=self._headers())

    @staticmethod
    def _select(series: _Series, start: int | None, end: int | None, limit: int) -> list[Row]:
        import bisect

        index = series.index()
        lo = 0 if start is None else bisect.bisect_left(index, start)
        hi = len(index) if end is None else bisect.bisect_right(index, end)
        out: list[Row] = []
        positions = range(lo, hi) if start is not None else range(hi - 1, lo - 1, -1)
        for i in positions:
            ts = index[i]
            if ts in series.dropped:
                continue
            out.append(series.replaced.get(ts, series.rows[i]))
            if len(out) >= limit:
                break
        return out if start is not None else out[::-1]


def _kline(r: Row, step_ms: int) -> list[Any]:
    """A Binance kline row; the derived fields (quote volume, trades, taker volumes) are plausible, not real."""
    ts, o, h, lo, c, v = r
    try:
        quote_volume = f"{Decimal(v) * Decimal(c):.8f}"
        taker_base = f"{Decimal(v) / 2:.8f}"
        taker_quote = f"{Decimal(quote_volume) / 2:.8f}"
    except ArithmeticError:
        quote_volume = taker_base = taker_quote = "0"
    return [ts, o, h, lo, c, v, ts + step_ms - 1, quote_volume, 1000 + ts // step_ms % 5000, taker_base, taker_quote,
            "0"]
