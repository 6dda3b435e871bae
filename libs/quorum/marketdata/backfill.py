"""REST backfill: page an exchange's OHLCV history into ``candles``, resumably, and find and repair gaps.

History goes to the database only: a backfill publishes nothing. Years of old candles on the bus would make
every consumer recompute the past (and the live pipeline reads history from the database anyway). Revised
candles are recorded in ``candle_corrections`` and returned in the report; publishing ``CandleCorrected`` is
the caller's decision (``correction_key`` gives the id it must use).

Every row is validated with ``CandleValidator``'s rules (``accepted_frame``: one vectorised pass for rows that
are clean by construction, the validator itself for any other). Each page is one transaction: COPY into a
temporary staging table, one set-based merge into ``candles``, the corrections, and the checkpoint. A crash
between pages therefore resumes exactly after the last committed page, and re-running a finished range
inserts nothing. Event ids are the replay's (``candle_key``), so a candle has one id whichever path stored it
first.

I/O goes through an injected ccxt async exchange and an SQLAlchemy ``AsyncEngine``; time through a ``Clock``
(and waits through an injected ``sleep``), so tests drive every path deterministically.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from hashlib import sha1
from typing import Any, TypeVar
from uuid import UUID

import ccxt.async_support as ccxt
import numpy as np
import polars as pl
from pydantic import ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from quorum.clock import Clock
from quorum.db.tables import backfill_checkpoints, candle_corrections
from quorum.db.tables import candles as candles_t
from quorum.events.base import new_envelope
from quorum.events.market_data import CandleClosed, CandleCorrected
from quorum.ids import QUORUM_NAMESPACE, stable_uuid
from quorum.marketdata.validation import CandleValidator, Rejections, SeriesId, candle_key
from quorum.types import timeframe_seconds

log = logging.getLogger("quorum.market_data.backfill")

SOURCE = "market_data"  # the service that owns ``candles``; ids and envelopes name it as their source
RETRYABLE = (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.RequestTimeout, ccxt.ExchangeNotAvailable,
             ccxt.NetworkError)
COLUMNS = tuple(candles_t.c.keys())  # exchange, symbol, timeframe, ts, open, high, low, close, volume, event_id
PRICES = ("open", "high", "low", "close", "volume")

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


# ---- reports and progress ------------------------------------------------------------------------------------

@dataclass
class SeriesReport:
    exchange: str
    symbol: str
    timeframe: str
    resumed_from: datetime | None = None
    fetched: int = 0
    inserted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    corrections: list[CandleCorrected] = field(default_factory=list)
    pages: int = 0
    retries: int = 0
    completed: bool = False
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.exchange} {self.symbol} {self.timeframe}"

    @property
    def corrected(self) -> int:
        return len(self.corrections)


@dataclass
class BackfillReport:
    series: list[SeriesReport] = field(default_factory=list)

    @property
    def inserted(self) -> int:
        return sum(s.inserted for s in self.series)

    @property
    def fetched(self) -> int:
        return sum(s.fetched for s in self.series)

    @property
    def rejected(self) -> Counter[str]:
        return sum((s.rejected for s in self.series), Counter())

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.series)

    def get(self, symbol: str, timeframe: str) -> SeriesReport:
        return next(s for s in self.series if (s.symbol, s.timeframe) == (symbol, timeframe))


@dataclass(frozen=True)
class Progress:
    series: str
    pages: int
    rows_written: int
    rows_per_s: float | None  # None until some time has passed
    eta_s: float | None  # an upper bound: the exchange may have fewer candles than the calendar
    next_since: datetime


def format_progress(p: Progress) -> str:
    """One terminal line, e.g. ``binance BTC/USDT 1m  page 12  12,000 rows  4,321 rows/s  ETA 0:03:05``."""
    rate = "-" if p.rows_per_s is None else f"{p.rows_per_s:,.0f}"
    eta = "-" if p.eta_s is None else str(timedelta(seconds=round(p.eta_s)))
    return (f"{p.series}  page {p.pages}  {p.rows_written:,} rows  {rate} rows/s  ETA {eta}  "
            f"next {p.next_since:%Y-%m-%d %H:%M}")


# ---- time grid -----------------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)  # exchanges open weekly candles on Mondays, not on the epoch's Thursday


def _step(timeframe: str) -> timedelta:
    return timedelta(seconds=timeframe_seconds(timeframe))


def floor_open(ts: datetime, timeframe: str) -> datetime:
    """The open time of the candle containing ``ts``."""
    origin = _MONDAY if timeframe.endswith("w") else _EPOCH
    step = _step(timeframe)
    return origin + (ts - origin) // step * step


def ceil_open(ts: datetime, timeframe: str) -> datetime:
    start = floor_open(ts, timeframe)
    return start if start == ts else start + _step(timeframe)


def last_closed_open(now: datetime, timeframe: str) -> datetime:
    """Open time of the newest candle that has closed by ``now``."""
    return floor_open(now, timeframe) - _step(timeframe)


def _ms(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


# ---- ids -----------------------------------------------------------------------------------------------------

def candle_event_id(candle: CandleClosed) -> UUID:
    """``new_envelope(candle, key=candle_key(candle)).event_id`` (the replay's id) without building an envelope."""
    return stable_uuid(CandleClosed.event_type(), candle_key(candle))


def candle_event_ids(keys: pl.Series) -> pl.Series:
    """``candle_event_id`` for many ``candle_key`` strings at once, as 32 hex digits (PostgreSQL reads that as
    a uuid): the UUIDv5 of ``stable_uuid`` with SHA-1 per key and the version bits set on all rows together."""
    prefix = QUORUM_NAMESPACE.bytes + f"{CandleClosed.event_type()}\x1f".encode()
    digests = b"".join([sha1(prefix + k.encode()).digest() for k in keys.to_list()])
    raw = np.frombuffer(digests, np.uint8).reshape(-1, 20)[:, :16].copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x50  # version 5
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return pl.Series("event_id", np.frombuffer(raw.tobytes().hex().encode(), "S32")).cast(pl.String)


def correction_key(correction: CandleCorrected) -> str:
    """Key of a correction's event id: the candle and the values it was corrected to (a later, different
    revision of the same candle is a different event)."""
    values = "|".join(str(getattr(correction, f)) for f in PRICES)
    return f"{candle_key(correction.previous)}|{values}"


# ---- validation in bulk --------------------------------------------------------------------------------------

ROW_COLUMNS = ("ts", *PRICES)  # an exchange row / an OHLCV file row, as text
_DIGITS = r"^[0-9]+(?:\.[0-9]+)?$"  # plain digits: Decimal and PostgreSQL read them exactly; finite and >= 0
_EXACT_DIGITS = 15  # a decimal of up to 15 significant digits keeps its value's order as a float (DBL_DIG)


def _text(value: object) -> str | None:
    """As ``validation.to_decimal`` reads it: a float by its shortest repr, anything else by ``str``."""
    return None if value is None else repr(value) if isinstance(value, float) else str(value)


def rows_frame(rows: Sequence[Sequence[object]]) -> pl.DataFrame:
    """ccxt OHLCV rows (``[ts_ms, o, h, l, c, v]``; numbers as text or floats) as an all-text frame."""
    return pl.DataFrame([[_text(v) for v in r[:6]] for r in rows], schema=dict.fromkeys(ROW_COLUMNS, pl.String),
                        orient="row")


def accepted_frame(rows: pl.DataFrame, validator: CandleValidator, *, now: datetime) -> pl.DataFrame:
    """Validate rows (``ROW_COLUMNS``, text) in order; the accepted ones as COPY-ready text in ``COLUMNS`` order.

    The verdicts are exactly ``validator.check`` on every row, in order (rejections are counted by reason in
    ``validator.rejections``), but cheap: a row that passes every rule by construction (plain digits with at
    most 15 digits, so float comparisons are exact; a whole-second open time above every earlier
    one, and closed by ``now``) is accepted in one vectorised pass, and only the others, normally none, go
    through ``validator.check`` itself, with ``validator.last`` as a row-by-row run would have it.
    """
    s = validator.series
    step_ms = timeframe_seconds(s.timeframe) * 1000
    ts = pl.when(pl.col("ts").str.contains("^[0-9]{1,15}$")).then(pl.col("ts").cast(pl.Int64, strict=False))
    digits = [pl.col(p).str.contains(_DIGITS)  # at most 15 digits, counting leading and trailing zeros too
              & (pl.col(p).str.len_bytes() - pl.col(p).str.contains(".", literal=True) <= _EXACT_DIGITS)
              for p in PRICES]
    o, h, lo, c = (pl.col(p).cast(pl.Float64, strict=False) for p in PRICES[:4])
    clean = (
        pl.lit(_series_valid(s)) & ts.is_not_null() & (ts % 1000 == 0)
        & (ts > ts.cum_max().forward_fill().shift(1).fill_null(-1)) & (ts + step_ms <= _ms(now))
        & pl.all_horizontal(digits) & (lo > 0) & (lo <= o) & (o <= h) & (lo <= c) & (c <= h)
    )  # (plain digits are >= 0: the volume needs no check of its own)
    frame = rows.with_columns(_ts=ts, _clean=clean.fill_null(False))
    stamps = frame["_ts"].to_list()
    accept = frame["_clean"].to_list()
    exact: list[CandleClosed] = []
    start = 0
    for stop in [*(i for i, ok in enumerate(accept) if not ok), len(accept)]:
        # a run of clean rows is strictly increasing: it is accepted whole iff its first row is after ``last``
        if start < stop:
            if validator.last is None or stamps[start] > _ms(validator.last):
                validator.last = _from_ms(stamps[stop - 1])
            else:
                for i in range(start, stop):
                    accept[i] = False
                    exact += _check(validator, frame.row(i), now)
        if stop < len(accept):
            exact += _check(validator, frame.row(stop), now)
        start = stop + 1
    iso = pl.from_epoch(pl.col("_ts"), time_unit="ms").dt.replace_time_zone("UTC").dt.strftime(
        "%Y-%m-%dT%H:%M:%S+00:00")  # = datetime.isoformat() for whole seconds
    bulk = frame.filter(pl.Series(accept, dtype=pl.Boolean)).select(
        pl.lit(s.exchange).alias("exchange"), pl.lit(s.symbol).alias("symbol"), pl.lit(s.timeframe).alias("timeframe"),
        iso.alias("ts"), *PRICES)
    bulk = bulk.with_columns(candle_event_ids(  # candle_key, vectorised
        bulk.select(pl.concat_str(pl.lit(f"{s.exchange}|{s.symbol}|{s.timeframe}|"), "ts").alias("key"))["key"]))
    if exact:
        singles = pl.DataFrame(
            [(c.exchange, c.symbol, c.timeframe, c.ts.isoformat(), *(str(getattr(c, p)) for p in PRICES),
              candle_event_id(c).hex) for c in exact], schema=bulk.schema, orient="row")
        bulk = pl.concat([bulk, singles]).sort("ts")
    return bulk


def _series_valid(s: SeriesId) -> bool:
    """Whether a candle of this series can exist at all (the exchange, symbol and timeframe fields validate)."""
    try:
        CandleClosed(exchange=s.exchange, symbol=s.symbol, timeframe=s.timeframe, ts=_EPOCH, open=1, high=1, low=1,
                     close=1, volume=0)
    except ValidationError:
        return False
    return True


def _check(validator: CandleValidator, row: tuple[object, ...], now: datetime) -> list[CandleClosed]:
    candle = validator.check(*row[:6], now=now)
    return [] if candle is None else [candle]


# ---- retries -------------------------------------------------------------------------------------------------

MAX_RETRY_AFTER_S = 900.0  # a broken header must not park a backfill for days


def retry_after_seconds(headers: dict[str, str] | None, now: datetime) -> float | None:
    """The server's ``Retry-After`` (seconds or an HTTP date), if it sent a usable one."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


@dataclass
class Backoff:
    """Exponential backoff with equal jitter (half fixed, half random), never shorter than the server's
    ``Retry-After``. On top of ccxt's own rate limiter, which spaces requests but cannot know about a 429."""

    clock: Clock
    sleep: Sleep = asyncio.sleep
    max_retries: int = 8
    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2**attempt)
        jittered = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        return max(jittered, retry_after or 0.0)

    async def call(self, exchange: Any, fn: Callable[[], Awaitable[T]], report: SeriesReport) -> T:
        for attempt in range(self.max_retries + 1):
            exchange.last_response_headers = None  # so a Retry-After read below belongs to this failure
            try:
                return await fn()
            except RETRYABLE as exc:
                if attempt == self.max_retries:
                    raise
                wait = self.delay(attempt, retry_after_seconds(exchange.last_response_headers, self.clock.now()))
                report.retries += 1
                log.warning("%s: %s (%s); retry %d/%d in %.2fs", report.label, type(exc).__name__,
                            str(exc)[:200], attempt + 1, self.max_retries, wait)
                await self.sleep(wait)
        raise AssertionError("unreachable")


# ---- storage -------------------------------------------------------------------------------------------------

@dataclass
class PageWrite:
    inserted: int
    corrections: list[CandleCorrected]


_MERGE = text(f"""
    INSERT INTO candles ({", ".join(COLUMNS)}) SELECT {", ".join(COLUMNS)} FROM candles_staging
    ON CONFLICT DO NOTHING
""")
_CHANGED = " OR ".join(f"c.{p} IS DISTINCT FROM s.{p}" for p in PRICES)  # numerically: 58184 = 58184.0
_SAME_KEY = "c.exchange = s.exchange AND c.symbol = s.symbol AND c.timeframe = s.timeframe AND c.ts = s.ts"
# One primary-key lookup per staged row (OFFSET 0 keeps the planner from turning it into a hash join that reads
# all of ``candles``: the staging table has no statistics).
_REVISED = text(f"""
    SELECT s.exchange, s.symbol, s.timeframe, s.ts, {", ".join(f"c.{p} AS prev_{p}, s.{p}" for p in PRICES)}
    FROM candles_staging s CROSS JOIN LATERAL (SELECT * FROM candles c WHERE {_SAME_KEY} OFFSET 0) c
    WHERE {_CHANGED} ORDER BY s.ts
""")
_APPLY_REVISIONS = text(f"""
    UPDATE candles c SET {", ".join(f"{p} = s.{p}" for p in PRICES)} FROM candles_staging s
    WHERE c.ts = ANY(CAST(:ts AS timestamptz[])) AND s.ts = ANY(CAST(:ts AS timestamptz[])) AND {_SAME_KEY}
""")


async def write_candles(conn: AsyncConnection, frame: pl.DataFrame, *, clock: Clock) -> PageWrite:
    """COPY accepted candles (``accepted_frame``) into a staging table and merge them into ``candles``, in the
    caller's transaction.

    New candles are inserted; identical ones are skipped; existing ones with different values are corrections:
    recorded (previous and corrected values) and applied. The COPY is CSV that polars writes in one call:
    binary COPY of Python records spends its time encoding Decimals one by one (see bench/backfill_ingest.py).
    """
    await conn.execute(text("CREATE TEMP TABLE candles_staging (LIKE candles INCLUDING DEFAULTS) ON COMMIT DROP"))
    if frame.is_empty():
        return PageWrite(0, [])
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None and driver.is_in_transaction(), "COPY must run inside the caller's transaction"
    csv = frame.select(COLUMNS).write_csv(include_header=False).encode()
    await driver.copy_to_table("candles_staging", source=io.BytesIO(csv), columns=COLUMNS, format="csv")
    inserted = (await conn.execute(_MERGE)).rowcount
    corrections: list[CandleCorrected] = []
    if inserted < frame.height:  # some existed already: were any of them revised?
        corrections = [_correction(row) for row in (await conn.execute(_REVISED)).mappings()]
        if corrections:
            await conn.execute(_APPLY_REVISIONS, {"ts": sorted({c.ts for c in corrections})})
            await conn.execute(insert(candle_corrections), [
                {"exchange": c.exchange, "symbol": c.symbol, "timeframe": c.timeframe, "ts": c.ts,
                 "previous": _values_json(c.previous), "corrected": _values_json(c),
                 "event_id": new_envelope(c, clock=clock, source=SOURCE, key=correction_key(c)).event_id}
                for c in corrections
            ])
    return PageWrite(inserted, corrections)


def _correction(row: Any) -> CandleCorrected:
    series = {k: row[k] for k in ("exchange", "symbol", "timeframe", "ts")}
    previous = CandleClosed(**series, **{p: row[f"prev_{p}"] for p in PRICES})
    return CandleCorrected(**series, **{p: row[p] for p in PRICES}, previous=previous)


def _values_json(c: CandleClosed | CandleCorrected) -> dict[str, str]:
    return {p: str(getattr(c, p)) for p in PRICES}


async def _save_checkpoint(conn: AsyncConnection, s: SeriesId, *, next_since: datetime, written: int,
                           rejected: int, completed: bool) -> None:
    values = {"exchange": s.exchange, "symbol": s.symbol, "timeframe": s.timeframe, "next_since": next_since,
              "rows_written": written, "rows_rejected": rejected, "completed": completed,
              "updated_at": func.now()}
    stmt = insert(backfill_checkpoints).values(values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=["exchange", "symbol", "timeframe"], set_=values))


# ---- fetching ------------------------------------------------------------------------------------------------

@dataclass
class _Page:
    candles: pl.DataFrame  # accepted, COPY-ready
    fetched: int  # rows inside the requested window (accepted or rejected)
    next_since: datetime  # where the next page starts
    exhausted: bool  # the exchange has nothing after this page (yet)


async def _fetch_page(exchange: Any, backoff: Backoff, report: SeriesReport, validator: CandleValidator, *,
                      since: datetime, last: datetime, limit: int, now: datetime) -> _Page:
    """One ``fetch_ohlcv`` page, cut to [since, last] and validated; rows outside the window are not counted."""
    s = validator.series
    rows = await backoff.call(exchange, lambda: exchange.fetch_ohlcv(s.symbol, s.timeframe, since=_ms(since),
                                                                      limit=limit), report)
    since_ms, last_ms = _ms(since), _ms(last)
    stamps = [r[0] for r in rows if isinstance(r[0], int)]
    window = [r for r in rows if not isinstance(r[0], int) or since_ms <= r[0] <= last_ms]
    candles = accepted_frame(rows_frame(window), validator, now=now)
    newest = max(stamps, default=None)  # rows past ``last`` are not stored, so never resume beyond it
    next_since = since if newest is None else max(since, _from_ms(min(newest, last_ms)) + _step(s.timeframe))
    return _Page(candles, len(window), next_since, exhausted=len(rows) < limit or next_since == since)


# ---- backfill ------------------------------------------------------------------------------------------------

async def backfill(
    exchange: Any,
    engine: AsyncEngine,
    *,
    exchange_id: str,
    series: Sequence[tuple[str, str]],
    since: datetime,
    until: datetime | None,
    clock: Clock,
    page_limit: int = 1000,
    progress: Callable[[Progress], None] | None = None,
    max_retries: int = 8,
    sleep: Sleep = asyncio.sleep,
    seed: int = 0,
    resume: bool = True,
) -> BackfillReport:
    """Fetch ``(symbol, timeframe)`` series from ``since`` (or where a previous run stopped) up to ``until``
    (open time, inclusive; default and ceiling: the last candle closed by ``clock``) into ``candles``.

    Transient exchange errors are retried (``max_retries`` per request); a symbol the exchange does not list is
    reported in its series' ``error`` and the others go on; anything else propagates, after the pages already
    committed, so a re-run resumes. ``resume=False`` re-fetches from ``since`` regardless of checkpoints (to
    pick up late corrections; stored candles are never duplicated).
    """
    report = BackfillReport()
    backoff = Backoff(clock, sleep, max_retries, rng=random.Random(seed))
    await backoff.call(exchange, exchange.load_markets, SeriesReport(exchange_id, "*", "*"))
    for symbol, timeframe in series:
        sr = SeriesReport(exchange_id, symbol, timeframe)
        report.series.append(sr)
        try:
            await _backfill_series(exchange, engine, backoff, sr, since=since, until=until, clock=clock,
                                   page_limit=page_limit, progress=progress, resume=resume)
        except ccxt.BadSymbol as exc:
            sr.error = f"not listed: {exc}"
            log.warning("%s: skipped, %s", sr.label, sr.error)
    return report


async def _backfill_series(exchange: Any, engine: AsyncEngine, backoff: Backoff, sr: SeriesReport, *,
                           since: datetime, until: datetime | None, clock: Clock, page_limit: int,
                           progress: Callable[[Progress], None] | None, resume: bool) -> None:
    s = SeriesId(sr.exchange, sr.symbol, sr.timeframe)
    step = _step(s.timeframe)
    now = clock.now()
    last = last_closed_open(now, s.timeframe)
    if until is not None:
        last = min(last, floor_open(until, s.timeframe))
    async with engine.connect() as conn:
        cp = (await conn.execute(select(backfill_checkpoints).where(
            backfill_checkpoints.c.exchange == s.exchange, backfill_checkpoints.c.symbol == s.symbol,
            backfill_checkpoints.c.timeframe == s.timeframe))).first()
    cursor = ceil_open(since, s.timeframe)
    written, rejected_before = (cp.rows_written, cp.rows_rejected) if cp else (0, 0)
    if resume and cp is not None and cp.next_since > cursor:
        cursor = sr.resumed_from = cp.next_since
    validator = CandleValidator(s, Rejections())
    started, start_cursor = clock.now(), cursor
    log.info("%s: backfilling %s -> %s", sr.label, cursor, last)
    while cursor <= last:
        page = await _fetch_page(exchange, backoff, sr, validator, since=cursor, last=last, limit=page_limit,
                                 now=now)
        done = page.exhausted or page.next_since > last
        async with engine.begin() as conn:
            result = await write_candles(conn, page.candles, clock=clock)
            await _save_checkpoint(conn, s, next_since=page.next_since, written=written + result.inserted,
                                   rejected=rejected_before + validator.rejections.total, completed=done)
        written += result.inserted
        sr.pages += 1
        sr.fetched += page.fetched
        sr.inserted += result.inserted
        sr.corrections.extend(result.corrections)
        sr.rejected = Counter(validator.rejections.counts)
        cursor = page.next_since
        if progress is not None:
            progress(_progress(sr, clock, started, start_cursor, cursor, last, step))
        if done:
            break
    sr.completed = True
    if sr.pages == 0:  # nothing left to fetch: still record that the series is complete up to here
        async with engine.begin() as conn:
            await _save_checkpoint(conn, s, next_since=cursor, written=written, rejected=rejected_before,
                                   completed=True)
    log.info("%s: %d fetched, %d inserted, %d rejected %s, %d corrected, %d pages, %d retries", sr.label,
             sr.fetched, sr.inserted, sum(sr.rejected.values()), dict(sr.rejected), sr.corrected, sr.pages,
             sr.retries)


def _progress(sr: SeriesReport, clock: Clock, started: datetime, start: datetime, cursor: datetime,
              last: datetime, step: timedelta) -> Progress:
    elapsed = (clock.now() - started).total_seconds()
    rate = sr.fetched / elapsed if elapsed > 0 else None
    remaining = max(0, (last - cursor) // step + 1)
    eta = remaining / rate if rate else None
    return Progress(sr.label, sr.pages, sr.inserted, rate, eta, cursor)


# ---- gaps ----------------------------------------------------------------------------------------------------

_GAPS = text("""
    WITH missing AS (
        SELECT g AS ts FROM generate_series(CAST(:start AS timestamptz), CAST(:end AS timestamptz),
                                            CAST(:step AS interval)) AS g
        WHERE NOT EXISTS (SELECT 1 FROM candles c WHERE c.exchange = :exchange AND c.symbol = :symbol
                                                    AND c.timeframe = :timeframe AND c.ts = g)
    ), islands AS (
        SELECT ts, ts - CAST(:step AS interval) * row_number() OVER (ORDER BY ts) AS island FROM missing
    )
    SELECT min(ts) AS first, max(ts) AS last FROM islands GROUP BY island ORDER BY first
""")


async def find_gaps(conn: AsyncConnection, exchange: str, symbol: str, timeframe: str, start: datetime,
                    end: datetime) -> list[tuple[datetime, datetime]]:
    """Missing candles between ``start`` and ``end`` (open times, inclusive), as ``(first, last)`` open times
    of each run of consecutive missing candles; computed in SQL against the expected calendar."""
    first, last = ceil_open(start, timeframe), floor_open(end, timeframe)
    if first > last:
        return []
    rows = await conn.execute(_GAPS, {"start": first, "end": last, "step": _step(timeframe), "exchange": exchange,
                                      "symbol": symbol, "timeframe": timeframe})
    return [(r.first, r.last) for r in rows]


@dataclass
class SeriesRepair:
    exchange: str
    symbol: str
    timeframe: str
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    repaired: list[tuple[datetime, datetime]] = field(default_factory=list)  # (first, last) now stored
    unrepairable: list[tuple[datetime, datetime]] = field(default_factory=list)  # the exchange has none either
    inserted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    retries: int = 0


@dataclass
class RepairReport:
    series: list[SeriesRepair] = field(default_factory=list)

    @property
    def inserted(self) -> int:
        return sum(s.inserted for s in self.series)

    def get(self, symbol: str, timeframe: str) -> SeriesRepair:
        return next(s for s in self.series if (s.symbol, s.timeframe) == (symbol, timeframe))


async def repair_gaps(
    exchange: Any,
    engine: AsyncEngine,
    *,
    exchange_id: str,
    series: Sequence[tuple[str, str]],
    start: datetime,
    end: datetime | None,
    clock: Clock,
    page_limit: int = 1000,
    max_retries: int = 8,
    sleep: Sleep = asyncio.sleep,
    seed: int = 0,
) -> RepairReport:
    """Re-fetch every gap between ``start`` and ``end`` (default: the last closed candle) from REST.

    What the exchange returns inside a gap is stored; what it does not have (real outages) is reported as
    unrepairable. Each gap costs at most ``ceil(length / page_limit)`` requests, so it always terminates.
    """
    report = RepairReport()
    backoff = Backoff(clock, sleep, max_retries, rng=random.Random(seed))
    now = clock.now()
    for symbol, timeframe in series:
        rep = SeriesRepair(exchange_id, symbol, timeframe)
        report.series.append(rep)
        sr = SeriesReport(exchange_id, symbol, timeframe)  # collects fetch statistics
        step = _step(timeframe)
        last = last_closed_open(now, timeframe) if end is None else min(end, last_closed_open(now, timeframe))
        async with engine.connect() as conn:
            rep.gaps = await find_gaps(conn, exchange_id, symbol, timeframe, start, last)
        for first, gap_last in rep.gaps:
            validator = CandleValidator(SeriesId(exchange_id, symbol, timeframe), Rejections())
            cursor = first
            while cursor <= gap_last:
                wanted = (gap_last - cursor) // step + 1
                page = await _fetch_page(exchange, backoff, sr, validator, since=cursor, last=gap_last,
                                         limit=min(page_limit, wanted), now=now)
                async with engine.begin() as conn:
                    rep.inserted += (await write_candles(conn, page.candles, clock=clock)).inserted
                if page.exhausted or page.fetched == 0:
                    break
                cursor = page.next_since
            rep.rejected += validator.rejections.counts
            async with engine.connect() as conn:
                still = await find_gaps(conn, exchange_id, symbol, timeframe, first, gap_last)
            rep.unrepairable += still
            rep.repaired += _complement((first, gap_last), still, step)
        rep.retries = sr.retries
        if rep.unrepairable:
            log.info("%s %s %s: the exchange has no candles for %s", exchange_id, symbol, timeframe,
                        ", ".join(f"{a:%Y-%m-%d %H:%M}..{b:%H:%M}" for a, b in rep.unrepairable))
    return report


def _complement(span: tuple[datetime, datetime], holes: list[tuple[datetime, datetime]],
                step: timedelta) -> list[tuple[datetime, datetime]]:
    """The runs of ``span`` not covered by ``holes`` (sorted, inside ``span``)."""
    out, cursor = [], span[0]
    for a, b in holes:
        if a > cursor:
            out.append((cursor, a - step))
        cursor = b + step
    if cursor <= span[1]:
        out.append((cursor, span[1]))
    return out

