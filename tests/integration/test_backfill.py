"""The REST backfill against real ccxt talking to a local Binance stand-in that serves the real BTC/USDT hourly
candles, and a real PostgreSQL: pagination, rate limits, crash and resume, idempotency, bad records, gaps
(served ones repaired, real exchange outages reported) and late corrections."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import ccxt.async_support as ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quorum.clock import TestClock
from quorum.db.tables import backfill_checkpoints, candle_corrections, candles
from quorum.events.base import new_envelope
from quorum.events.market_data import CandleClosed
from quorum.marketdata.backfill import Progress, backfill, format_progress
from quorum.marketdata.backoff import Backoff, retry_after_seconds
from quorum.marketdata.bulk import accepted_frame, rows_frame
from quorum.marketdata.gaps import find_gaps, repair_gaps
from quorum.marketdata.keys import candle_event_id, candle_key
from quorum.marketdata.validation import PRICES, CandleValidator, SeriesId
from sqlalchemy import Text, cast, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes.binance_rest import FakeBinance
from tests.support import data_file

pytestmark = pytest.mark.integration

EXCHANGE, SYMBOL, TF = "binance", "BTC/USDT", "1h"
HOUR = timedelta(hours=1)
SINCE = datetime(2021, 5, 1, tzinfo=UTC)  # no exchange outage between May and July 2021


def ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


class Waits:
    """An injected sleep: records each wait and moves the clock instead of blocking the test."""

    def __init__(self, clock: TestClock) -> None:
        self.clock = clock
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        self.clock.advance(timedelta(seconds=seconds))


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    path = data_file("ohlcv", "binance_BTCUSDT_1h.csv")
    with FakeBinance(path.parent, symbols=[SYMBOL]) as server:
        yield server


@pytest.fixture
async def exchange(fake: FakeBinance) -> AsyncIterator[Any]:
    ex = fake.exchange(rateLimit=1)  # the fake has no limits; keep ccxt's limiter on, but fast
    yield ex
    await ex.close()


@pytest.fixture
def clock() -> TestClock:
    return TestClock(datetime(2024, 1, 1, tzinfo=UTC))


async def run(exchange: Any, engine: AsyncEngine, clock: TestClock, *, since: datetime = SINCE,
              hours: int = 2000, **kw: Any) -> Any:
    kw.setdefault("sleep", Waits(clock))
    return await backfill(exchange, engine, exchange_id=EXCHANGE, series=[(SYMBOL, TF)], since=since,
                          until=since + (hours - 1) * HOUR, clock=clock, **kw)


async def stored(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(candles).order_by(candles.c.symbol, candles.c.timeframe, candles.c.ts))
        return [tuple(r) for r in rows]


async def checkpoint(engine: AsyncEngine) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(backfill_checkpoints))).one()


def source_rows(fake: FakeBinance, since: datetime, hours: int) -> list[tuple[Any, ...]]:
    lo, hi = ms(since), ms(since + (hours - 1) * HOUR)
    return [r for r in fake.rows(SYMBOL, TF) if lo <= r[0] <= hi]


async def test_pages_through_real_history_with_exact_values_and_the_replays_event_ids(
        fake: FakeBinance, exchange: Any, engine: AsyncEngine, clock: TestClock) -> None:
    seen: list[Progress] = []
    report = await run(exchange, engine, clock, page_limit=500, progress=seen.append)

    s = report.get(SYMBOL, TF)
    assert (s.fetched, s.inserted, s.pages, s.retries, s.completed) == (2000, 2000, 4, 0, True)
    assert [p.pages for p in seen] == [1, 2, 3, 4] and seen[-1].rows_written == 2000
    assert fake.requests["/api/v3/klines"] == 4
    assert [int(q["limit"]) for q in fake.klines_params] == [500] * 4
    expected = source_rows(fake, SINCE, 2000)
    async with engine.connect() as conn:  # NUMERIC as PostgreSQL prints it: the digits it holds
        as_text = [tuple(r) for r in await conn.execute(
            select(candles.c.ts, *(cast(candles.c[p], Text) for p in PRICES)).order_by(candles.c.ts))]
    assert as_text == [(datetime.fromtimestamp(r[0] / 1000, UTC), *r[1:]) for r in expected]
    rows = await stored(engine)
    assert len(rows) == len(expected) == 2000
    for (_, _, _, ts, *prices, event_id), (ts_ms, *_) in zip(rows, expected, strict=True):
        assert ms(ts) == ts_ms
        candle = CandleClosed(exchange=EXCHANGE, symbol=SYMBOL, timeframe=TF, ts=ts,
                              **dict(zip(PRICES, prices, strict=True)))
        if ts_ms == expected[0][0]:  # the replay's id (services/market_data builds it this way)
            assert event_id == new_envelope(candle, clock=clock, source="market_data", key=candle_key(candle)).event_id
    cp = await checkpoint(engine)
    assert (cp.next_since, cp.rows_written, cp.rows_rejected, cp.completed) == (SINCE + 2000 * HOUR, 2000, 0, True)
    assert "rows/s" in format_progress(seen[-1]) and "page 4" in format_progress(seen[-1])


async def test_a_429_is_waited_out_for_its_retry_after_then_retried(
        fake: FakeBinance, exchange: Any, engine: AsyncEngine, clock: TestClock) -> None:
    fake.throttle(2, retry_after=7)
    waits = Waits(clock)
    report = await run(exchange, engine, clock, hours=300, page_limit=200, sleep=waits)

    s = report.get(SYMBOL, TF)
    assert s.retries == 2 and s.inserted == 300
    assert len(waits.seconds) == 2 and all(w >= 7 for w in waits.seconds)  # never shorter than Retry-After
    assert fake.requests["/api/v3/klines"] == 2 + 2  # two refused, then two pages


async def test_a_later_run_extends_the_range_from_where_an_earlier_one_stopped(
        fake: FakeBinance, exchange: Any, engine: AsyncEngine, clock: TestClock) -> None:
    first = await run(exchange, engine, clock, hours=250, page_limit=100)  # 'until' falls inside page 3
    assert first.inserted == 250 and (await checkpoint(engine)).next_since == SINCE + 250 * HOUR

    later = await run(exchange, engine, clock, hours=400, page_limit=100)
    s = later.get(SYMBOL, TF)
    assert (s.resumed_from, s.inserted) == (SINCE + 250 * HOUR, 150)
    assert [r[3] for r in await stored(engine)] == [SINCE + i * HOUR for i in range(400)]


async def test_backoff_grows_exponentially_with_seeded_jitter_and_a_cap() -> None:
    import random

    a, b = Backoff(TestClock(), rng=random.Random(1)), Backoff(TestClock(), rng=random.Random(1))
    delays = [a.delay(n, None) for n in range(10)]
    assert delays == [b.delay(n, None) for n in range(10)]  # reproducible
    for n, d in enumerate(delays):
        ceiling = min(30.0, 0.5 * 2**n)
        assert ceiling / 2 <= d <= ceiling
    assert a.delay(0, 12.0) == 12.0
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert retry_after_seconds({"retry-after": "3"}, now) == 3.0
    assert retry_after_seconds({"Retry-After": "Mon, 01 Jan 2024 00:00:05 GMT"}, now) == 5.0
    assert retry_after_seconds({"Content-Type": "x"}, now) is None


async def test_a_crash_mid_backfill_resumes_from_the_checkpoint_and_ends_equal_to_a_clean_run(
        fake: FakeBinance, exchange: Any, engine: AsyncEngine, clock: TestClock) -> None:
    def exchange_goes_down_after_page_2(p: Progress) -> None:
        if p.pages == 2:
            fake.fail(1000, status=503)

    with pytest.raises(ccxt.ExchangeNotAvailable):
        await run(exchange, engine, clock, hours=1000, page_limit=300, max_retries=2,
                  progress=exchange_goes_down_after_page_2)
    cp = await checkpoint(engine)
    assert (cp.next_since, cp.rows_written, cp.completed) == (SINCE + 600 * HOUR, 600, False)
    assert len(await stored(engine)) == 600

    fake.fail(0)
    before = fake.requests["/api/v3/klines"]
    report = await run(exchange, engine, clock, hours=1000, page_limit=300)
    s = report.get(SYMBOL, TF)
    assert s.resumed_from == SINCE + 600 * HOUR and s.inserted == 400 and s.pages == 2
    assert fake.requests["/api/v3/klines"] - before == 2  # nothing before the checkpoint was fetched again
    resumed = await stored(engine)

    async with engine.begin() as conn:
        await conn.execute(delete(candles))
        await conn.execute(delete(backfill_checkpoints))
    await run(exchange, engine, clock, hours=1000, page_limit=300)
    assert resumed == await stored(engine)
    assert (await checkpoint(engine)).rows_written == 1000


ODD_NUMBERS = ["1e3", "1E-2", "1_000", " 5", "+7", "-1", "0", "NaN", "Infinity", "abc", "", "12345678901234567",
               "0.1234567890123456", "9" * 40, "0." + "0" * 40 + "1", "５", "1.", ".5"]
PRICE_DEFECTS: dict[str, Any] = {  # (low, high) -> o, h, l, c, v
    "open_below_low": lambda lo, hi: [lo / 2, hi, lo, lo, 1],
    "open_above_high": lambda lo, hi: [hi * 2, hi, lo, lo, 1],
    "close_below_low": lambda lo, hi: [lo, hi, lo, lo / 2, 1],
    "close_above_high": lambda lo, hi: [lo, hi, lo, hi * 2, 1],
    "high_below_low": lambda lo, hi: [lo, lo, hi + 1, lo, 1],
    "zero_low": lambda lo, hi: [lo, hi, 0, lo, 1],
    "negative_volume": lambda lo, hi: [lo, hi, lo, hi, -1],
    "zero_volume": lambda lo, hi: [lo, hi, lo, hi, 0],
    "below_float_precision": lambda lo, hi: ["0.1", "0.1", "0.10000000000000001", "0.1", "1"],
    "many_digits": lambda lo, hi: [lo, hi, lo, "1234567890.123456789", 1],
}


@st.composite
def exchange_pages(draw: st.DrawFn) -> tuple[datetime, list[list[list[object]]]]:
    """A ``now`` and pages of plausible rows with every kind of defect mixed in: repeated, late, sub-second,
    unclosed and future open times, odd number spellings, inconsistent prices (also beyond float precision),
    floats (ccxt's default) and missing values."""
    start = 1_700_000_040_000  # a whole minute
    offset = draw(st.one_of(st.just(36_000), st.integers(0, 3600)))  # all closed, or some not yet
    now = datetime.fromtimestamp(start / 1000, UTC) + timedelta(seconds=offset)
    rows: list[list[object]] = []
    ts = start
    for _ in range(draw(st.integers(0, 40))):
        ts += draw(st.sampled_from([60_000] * 6 + [0, -120_000, 500, 10**12]))
        low = Decimal(draw(st.integers(1, 10**6))) / 100
        high = low + Decimal(draw(st.integers(0, 10**4))) / 100
        kind = draw(st.sampled_from(["ok"] * 4 + ["odd"] + sorted(PRICE_DEFECTS)))
        if kind == "ok":
            either = st.sampled_from([low, high])
            values: list[object] = [draw(either), high, low, draw(either), 1]
        elif kind == "odd":  # one field spelled oddly, missing, or a float (ccxt's default number type)
            values = [low, high, low, high, 1]
            values[draw(st.integers(0, 4))] = draw(st.one_of(
                st.sampled_from(ODD_NUMBERS), st.none(), st.floats(allow_nan=True, allow_infinity=True)))
        else:
            values = PRICE_DEFECTS[kind](low, high)
        raw_ts: object = ts if draw(st.integers(0, 9)) else draw(st.sampled_from([str(ts), None, f"{ts}.0", "x"]))
        rows.append([raw_ts, *(v if v is None or isinstance(v, float) else str(v) for v in values)])
    cuts = sorted(draw(st.lists(st.integers(0, len(rows)), max_size=3)))
    return now, [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]


@settings(max_examples=200, deadline=None)
@given(exchange_pages())
def test_bulk_validation_gives_the_same_verdicts_as_the_row_by_row_validator(
        example: tuple[datetime, list[list[list[object]]]]) -> None:
    now, pages = example
    series = SeriesId(EXCHANGE, SYMBOL, "1m")
    one_by_one, bulk = CandleValidator(series), CandleValidator(series)
    expected, got = [], []
    for page in pages:
        expected += [c for r in page if (c := one_by_one.check(*r, now=now)) is not None]
        got += accepted_frame(rows_frame(page), bulk, now=now).rows()
    assert bulk.rejections.counts == one_by_one.rejections.counts and bulk.last == one_by_one.last
    assert [(datetime.fromisoformat(r[3]), *map(Decimal, r[4:9]), UUID(r[9])) for r in got] == [
        (c.ts, c.open, c.high, c.low, c.close, c.volume, candle_event_id(c)) for c in expected]
    assert all(r[:3] == (EXCHANGE, SYMBOL, "1m") for r in got)


async def test_a_rerun_inserts_nothing(fake: FakeBinance, exchange: Any, engine: AsyncEngine,
                                       clock: TestClock) -> None:
    first = await run(exchange, engine, clock, hours=500)
    again = await run(exchange, engine, clock, hours=500)
    refetched = await run(exchange, engine, clock, hours=500, resume=False)  # past the checkpoint: all re-fetched

    assert first.inserted == 500
    assert (again.fetched, again.inserted) == (0, 0)
    r = refetched.get(SYMBOL, TF)
    assert (r.fetched, r.inserted, r.corrected) == (500, 0, 0)
    assert len(await stored(engine)) == 500


async def test_bad_records_are_rejected_and_counted_while_the_rest_lands(
        fake: FakeBinance, exchange: Any, engine: AsyncEngine, clock: TestClock) -> None:
    bad = {SINCE + 10 * HOUR: "high_below_low", SINCE + 11 * HOUR: "negative", SINCE + 250 * HOUR: "nan"}
    for ts, kind in bad.items():
        fake.corrupt(SYMBOL, TF, ms(ts), kind)
    report = await run(exchange, engine, clock, hours=300, page_limit=100)

    s = report.get(SYMBOL, TF)
    assert s.rejected == {"high_below_low": 1, "negative_or_zero": 1, "not_finite": 1}
    assert (s.fetched, s.inserted) == (300, 297)
    assert {r[3] for r in await stored(engine)}.isdisjoint(bad)
    assert (await checkpoint(engine)).rows_rejected == 3


async def test_a_served_gap_is_found_and_repaired(fake: FakeBinance, exchange: Any, engine: AsyncEngine,
                                                  clock: TestClock) -> None:
    missing = [SINCE + 40 * HOUR, SINCE + 41 * HOUR, SINCE + 42 * HOUR, SINCE + 170 * HOUR]
    fake.drop(SYMBOL, TF, *map(ms, missing))
    await run(exchange, engine, clock, hours=200)
    end = SINCE + 199 * HOUR
    async with engine.connect() as conn:
        gaps = await find_gaps(conn, EXCHANGE, SYMBOL, TF, SINCE, end)
    assert gaps == [(missing[0], missing[2]), (missing[3], missing[3])]

    fake.restore(SYMBOL, TF, *map(ms, missing))  # the exchange has them now
    before = fake.requests["/api/v3/klines"]
    report = await repair_gaps(exchange, engine, exchange_id=EXCHANGE, series=[(SYMBOL, TF)], start=SINCE, end=end,
                               clock=clock, sleep=Waits(clock))

    r = report.get(SYMBOL, TF)
    assert (r.gaps, r.repaired, r.unrepairable, r.inserted) == (gaps, gaps, [], 4)
    assert fake.requests["/api/v3/klines"] - before == 2  # one request per gap
    async with engine.connect() as conn:
        assert await find_gaps(conn, EXCHANGE, SYMBOL, TF, SINCE, end) == []
    assert [r[3] for r in await stored(engine)] == [SINCE + i * HOUR for i in range(200)]


async def test_real_exchange_outages_are_reported_as_unrepairable(
        fake: FakeBinance, exchange: Any, engine: AsyncEngine, clock: TestClock) -> None:
    since = datetime(2021, 4, 19, tzinfo=UTC)
    await run(exchange, engine, clock, since=since, hours=24 * 8)  # 2021-04-19 .. 2021-04-26
    end = since + (24 * 8 - 1) * HOUR
    outages = [(datetime(2021, 4, 20, 2, tzinfo=UTC), datetime(2021, 4, 20, 3, tzinfo=UTC)),
               (datetime(2021, 4, 25, 5, tzinfo=UTC), datetime(2021, 4, 25, 7, tzinfo=UTC))]
    async with engine.connect() as conn:
        assert await find_gaps(conn, EXCHANGE, SYMBOL, TF, since, end) == outages

    before = fake.requests["/api/v3/klines"]
    report = await repair_gaps(exchange, engine, exchange_id=EXCHANGE, series=[(SYMBOL, TF)], start=since, end=end,
                               clock=clock, sleep=Waits(clock))
    r = report.get(SYMBOL, TF)
    assert (r.unrepairable, r.repaired, r.inserted) == (outages, [], 0)
    assert fake.requests["/api/v3/klines"] - before == 2  # one look per outage, no loop


async def test_a_changed_candle_is_recorded_as_a_correction_and_applied(
        fake: FakeBinance, exchange: Any, engine: AsyncEngine, clock: TestClock) -> None:
    await run(exchange, engine, clock, hours=100)
    ts = SINCE + 50 * HOUR
    _, o, h, lo, c, v = next(r for r in fake.rows(SYMBOL, TF) if r[0] == ms(ts))
    revised_high = str(Decimal(h) + Decimal("12.5"))
    fake.revise(SYMBOL, TF, ms(ts), high=revised_high, volume="1234.5")

    report = await run(exchange, engine, clock, hours=100, resume=False)
    s = report.get(SYMBOL, TF)
    assert (s.inserted, s.corrected) == (0, 1)
    corr = s.corrections[0]
    assert (corr.ts, corr.high, corr.volume, corr.previous.high) == (ts, Decimal(revised_high), Decimal("1234.5"),
                                                                     Decimal(h))
    async with engine.connect() as conn:
        row = (await conn.execute(select(candle_corrections))).one()
        stored_high = (await conn.execute(select(candles.c.high).where(candles.c.ts == ts))).scalar_one()
        n = (await conn.execute(select(func.count()).select_from(candle_corrections))).scalar_one()
    assert row.previous == {"open": o, "high": h, "low": lo, "close": c, "volume": v}
    assert row.corrected == {"open": o, "high": revised_high, "low": lo, "close": c, "volume": "1234.5"}
    assert row.ts == ts and stored_high == Decimal(revised_high) and n == 1

    again = await run(exchange, engine, clock, hours=100, resume=False)
    assert again.get(SYMBOL, TF).corrected == 0  # already applied: nothing new to record


async def test_an_unlisted_symbol_is_reported_and_the_other_series_go_on(
        fake: FakeBinance, exchange: Any, engine: AsyncEngine, clock: TestClock) -> None:
    report = await backfill(exchange, engine, exchange_id=EXCHANGE, series=[("NOPE/USDT", TF), (SYMBOL, TF)],
                            since=SINCE, until=SINCE + 9 * HOUR, clock=clock, sleep=Waits(clock))
    assert not report.ok and "not listed" in (report.get("NOPE/USDT", TF).error or "")
    assert report.get(SYMBOL, TF).inserted == 10


def test_cli_backfills_against_the_exchange_url_and_prints_rate_and_eta(
        fake: FakeBinance, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    from quorum.marketdata.backfill_cli import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["backfill", "--exchange-url", fake.url, "--timeframes", "1h", "--since", "2021-05-01",
                              "--until", "2021-05-03T23:00", "--page-limit", "24", "--repair-gaps"])
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "not listed: ETH" in out  # the fake lists only BTC: the rest of the universe is reported
    assert "binance BTC/USDT 1h: 72 fetched, 72 inserted" in out and "rows/s" in out and "ETA" in out
    assert "0 gaps" in out
