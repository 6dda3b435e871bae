"""Live public-data sources against a local Binance (tests/fakes/binance_ws.py), through real ccxt.pro code:
closed candles from the kline stream, corrections, bad records, REST polling, reconnects, failover between two
venues, and order-book snapshots. Data is real (shared/data); network is 127.0.0.1 only.

The fake venue moves only when a test advances it, and tests set the TestClock to each event's exchange time,
so the clock plays the part of a well-synchronised wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import ccxt
import pytest
from quorum.clock import TestClock
from quorum.events.market_data import CandleClosed, CandleCorrected, DataSourceSwitched, OrderBookSnapshotted
from quorum.marketdata.books import OrderBookSampler
from quorum.marketdata.candle_feed import CandleFeed
from quorum.marketdata.exchanges import make_exchange
from quorum.marketdata.failover import PRIMARY_FAILED, PRIMARY_RECOVERED, FailoverCandleFeed, SourceSelector

from tests.fakes.binance_ws import BookRow, FakeBinance, Kline, Revision, read_book, read_klines
from tests.support import data_file

SYMBOL, MARKET, TF = "BTC/USDT", "BTCUSDT", "1m"
KLINES = "btcusdt@kline_1m"
MINUTE = timedelta(minutes=1)
T = TypeVar("T")


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def real_candles(count: int, start: int = 0) -> list[Kline]:
    return read_klines(data_file("ohlcv", "binance_BTCUSDT_1m.csv"), start=start, count=count)


def real_book(count: int) -> list[BookRow]:
    return read_book(data_file("orderbook", "binance_BTCUSDT_book_top20_20240808.csv"), count=count)


def values(candle: CandleClosed | CandleCorrected) -> tuple[Decimal, ...]:
    return candle.open, candle.high, candle.low, candle.close, candle.volume


def csv_values(k: Kline) -> tuple[Decimal, ...]:
    return tuple(Decimal(x) for x in (k.open, k.high, k.low, k.close, k.volume))


def assert_candles_equal_csv(emitted: Sequence[CandleClosed], expected: Sequence[Kline]) -> None:
    assert [c.ts for c in emitted] == [at(k.open_ms) for k in expected]
    for candle, k in zip(emitted, expected, strict=True):
        assert values(candle) == csv_values(k), f"candle {candle.ts} differs from the file"
        assert (candle.exchange, candle.symbol, candle.timeframe) == ("binance", SYMBOL, TF)


class Collector:
    """Runs an async iterator in the background and keeps what it yields, with a note taken at that moment."""

    def __init__(self, source: AsyncIterator[Any], note: Callable[[Any], Any] = lambda _: None) -> None:
        self.items: list[Any] = []
        self.notes: list[Any] = []
        self._note = note
        self._task = asyncio.create_task(self._run(source))

    async def _run(self, source: AsyncIterator[Any]) -> None:
        async for item in source:
            self.items.append(item)
            self.notes.append(self._note(item))

    def of(self, kind: type[T]) -> list[T]:
        return [i for i in self.items if isinstance(i, kind)]

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def binance_exchange(venue: FakeBinance) -> AsyncIterator[Any]:
    exchange = make_exchange("binance", urls=venue.ccxt_urls())
    try:
        yield exchange
    finally:
        await exchange.close()


async def play_klines(venue: FakeBinance | _Lockstep, clock: TestClock, events: int, pace_s: float = 0.005,
                      check: Callable[[], None] | None = None) -> None:
    """Publish ``events`` kline events, moving the clock to each one's exchange time."""
    for _ in range(events):
        event_time = venue.advance_klines(MARKET, TF)
        assert event_time is not None, "the tape ran out"
        clock.set(at(event_time))
        await asyncio.sleep(pace_s)
        if check is not None:
            check()


# --- candles from the websocket -------------------------------------------------------------------------------


async def test_stream_emits_each_real_candle_once_only_after_it_closed_with_the_file_values() -> None:
    candles = real_candles(6)
    async with FakeBinance() as venue, binance_exchange(venue) as exchange:
        venue.load_klines(MARKET, TF, candles, updates_per_candle=4)
        clock = TestClock(at(candles[0].open_ms))
        feed = CandleFeed(exchange, SYMBOL, TF, clock=clock, idle_timeout_s=0.02, close_grace=timedelta(seconds=5))
        out = Collector(feed.events())
        try:
            await venue.wait_subscribed(KLINES)

            def only_closed_candles() -> None:
                assert all(c.ts + MINUTE <= clock.now() for c in out.items), "emitted a candle still forming"

            await play_klines(venue, clock, 4 * len(candles), check=only_closed_candles)
            await until(lambda: len(out.items) == 5, "the first five candles close as the next ones open")
            await asyncio.sleep(0.1)
            assert len(out.items) == 5, "the last candle has no successor yet and its grace has not passed"

            clock.set(at(candles[-1].open_ms) + MINUTE + timedelta(seconds=6))  # quiet socket, past close + grace
            await until(lambda: len(out.items) == 6, "REST confirms the last candle once its grace has passed")
        finally:
            await out.stop()
            await feed.close()
        assert_candles_equal_csv(out.items, candles)
        assert venue.requests["/api/v3/klines"] >= 1
        assert feed.rejections.total == 0


async def test_revision_of_a_published_candle_is_emitted_as_a_correction_not_a_second_close() -> None:
    candles = real_candles(6, start=100)
    revised = candles[2]
    changes = {"close": revised.high, "volume": str(Decimal(revised.volume) + Decimal("1.5"))}
    async with FakeBinance() as venue, binance_exchange(venue) as exchange:
        venue.load_klines(MARKET, TF, candles, updates_per_candle=3, revisions=[Revision(2, after=3, changes=changes)])
        clock = TestClock(at(candles[0].open_ms))
        feed = CandleFeed(exchange, SYMBOL, TF, clock=clock, idle_timeout_s=0.02)
        out = Collector(feed.events())
        try:
            await venue.wait_subscribed(KLINES)
            await play_klines(venue, clock, venue.klines_left(MARKET, TF))
            await until(lambda: len(out.of(CandleClosed)) == 5, "five candles close")
        finally:
            await out.stop()
            await feed.close()
    assert [type(e).__name__ for e in out.items] == ["CandleClosed"] * 3 + ["CandleCorrected"] + ["CandleClosed"] * 2
    correction = out.of(CandleCorrected)[0]
    assert correction.ts == at(revised.open_ms)
    assert correction.previous == out.items[2]
    assert values(correction.previous) == csv_values(revised)
    assert values(correction) == (Decimal(revised.open), Decimal(revised.high), Decimal(revised.low),
                                  Decimal(revised.high), Decimal(revised.volume) + Decimal("1.5"))
    assert_candles_equal_csv(out.of(CandleClosed), candles[:5])


async def test_bad_records_in_the_stream_are_rejected_and_counted_and_the_stream_goes_on() -> None:
    candles = real_candles(6, start=200)
    corrupt = {1: {"high": "1.0"}, 3: {"open": "NaN"}}  # high below low; a price that is not a number
    async with FakeBinance() as venue, binance_exchange(venue) as exchange:
        venue.load_klines(MARKET, TF, candles, updates_per_candle=3, corrupt=corrupt)
        clock = TestClock(at(candles[0].open_ms))
        feed = CandleFeed(exchange, SYMBOL, TF, clock=clock, idle_timeout_s=0.02)
        out = Collector(feed.events())
        try:
            await venue.wait_subscribed(KLINES)
            await play_klines(venue, clock, venue.klines_left(MARKET, TF))
            await until(lambda: feed.last_open_time() == at(candles[4].open_ms), "candles up to the 5th close")
        finally:
            await out.stop()
            await feed.close()
    assert_candles_equal_csv(out.items, [candles[0], candles[2], candles[4]])
    assert dict(feed.rejections.counts) == {"high_below_low": 1, "not_finite": 1}


async def test_rest_polling_replaces_the_socket_when_the_exchange_has_no_kline_stream() -> None:
    candles = real_candles(5, start=300)
    async with FakeBinance() as venue, binance_exchange(venue) as exchange:
        exchange.has["watchOHLCV"] = False
        venue.load_klines(MARKET, TF, candles, updates_per_candle=2)
        clock = TestClock(at(candles[0].open_ms))
        feed = CandleFeed(exchange, SYMBOL, TF, clock=clock, poll_every_s=0.0, close_grace=timedelta(seconds=5))
        emitted: list[CandleClosed | CandleCorrected] = []
        for _ in range(2 * len(candles)):  # each candle: half-way, then its close
            clock.set(at(venue.advance_klines(MARKET, TF) or 0))
            emitted += await feed.step()
            assert all(c.ts + MINUTE <= clock.now() for c in emitted), "polled a forming candle as closed"
        assert len(emitted) == len(candles) - 1, "the last one just closed: REST gets the benefit of the grace"
        clock.set(clock.now() + timedelta(seconds=5))
        emitted += await feed.step()
        await feed.close()
    assert not feed.streaming
    assert_candles_equal_csv(emitted, candles)
    assert venue.requests["/api/v3/klines"] == 2 * len(candles) + 1
    assert not venue.subscriptions, "no socket was opened"


async def test_after_the_socket_drops_mid_candle_the_feed_reconnects_without_losing_repeating_or_truncating() -> None:
    candles = real_candles(8, start=400)
    async with FakeBinance() as venue, binance_exchange(venue) as exchange:
        venue.load_klines(MARKET, TF, candles, updates_per_candle=4)
        clock = TestClock(at(candles[0].open_ms))
        feed = CandleFeed(exchange, SYMBOL, TF, clock=clock, idle_timeout_s=0.02, retry_delay_s=0.05)
        out = Collector(feed.events())
        try:
            await venue.wait_subscribed(KLINES)
            await play_klines(venue, clock, 4 * 2 + 2)  # two candles, then half of the third
            await until(lambda: len(out.items) == 2, "the first two candles close")
            venue.drop_connections()
            await play_klines(venue, clock, 4 * 3, pace_s=0.02)  # the market moves on while ccxt reconnects
            await until(lambda: venue.subscriptions[KLINES] >= 2, "ccxt subscribes again on a new socket")
            await play_klines(venue, clock, venue.klines_left(MARKET, TF))
            await until(lambda: len(out.items) == 7, "all candles but the forming one close")
        finally:
            await out.stop()
            await feed.close()
    assert feed.failures >= 1
    assert_candles_equal_csv(out.items, candles[:7])


async def test_a_candle_last_seen_forming_over_rest_is_closed_from_rest_when_the_socket_missed_its_end() -> None:
    candles = real_candles(6, start=600)
    per = 3
    async with FakeBinance() as venue, binance_exchange(venue) as exchange:
        venue.load_klines(MARKET, TF, candles, updates_per_candle=per)
        clock = TestClock(at(candles[0].open_ms))
        await play_klines(venue, clock, 3 * per + 1)  # nobody listens: candles 0-2 close, candle 3 starts
        feed = CandleFeed(exchange, SYMBOL, TF, clock=clock, idle_timeout_s=0.05, close_grace=timedelta(minutes=10),
                          after=at(candles[0].open_ms))  # candle 0 was published before this run
        assert_candles_equal_csv(await feed.step(), candles[1:3])  # REST catch-up; candle 3 seen half-way
        await play_klines(venue, clock, per)  # candle 3 closes, candle 4 opens: the socket is not open yet
        assert await feed.step() == []
        await venue.wait_subscribed(KLINES)
        await play_klines(venue, clock, 1)  # the socket now shows candle 4, never candle 3's final update
        events: list[CandleClosed | CandleCorrected] = []
        async with asyncio.timeout(10):
            while not events:
                events += await feed.step()
        await feed.close()
    assert_candles_equal_csv(events, candles[3:4])  # the final values, from REST, not the half-way ones
    assert venue.requests["/api/v3/klines"] == 2, "the catch-up, then the confirmation"


# --- failover between two venues ------------------------------------------------------------------------------


async def test_failover_to_the_secondary_and_back_neither_repeats_nor_skips_a_candle() -> None:
    candles = real_candles(80, start=1000)
    per_candle = 3
    async with FakeBinance() as primary, FakeBinance() as backup:
        for venue in (primary, backup):
            venue.load_klines(MARKET, TF, candles, updates_per_candle=per_candle)
        clock = TestClock(at(candles[0].open_ms))
        async with binance_exchange(primary) as ex_a, binance_exchange(backup) as ex_b:
            feeds = [CandleFeed(ex, SYMBOL, TF, clock=clock, exchange_name="binance", source=name, idle_timeout_s=0.02)
                     for ex, name in ((ex_a, "binance"), (ex_b, "binance_backup"))]
            selector = SourceSelector(SYMBOL, "binance", "binance_backup", max_failures=2, stale_after=None,
                                      probe_interval=2 * MINUTE, healthy_probes_needed=2)
            failover = FailoverCandleFeed(*feeds, clock=clock, selector=selector, probe_timeout_s=0.5,
                                          retry_delay_s=0.05)
            out = Collector(failover.events(), note=lambda e: failover.source_of(e.ts) if hasattr(e, "ts") else None)

            def switches() -> list[DataSourceSwitched]:
                return out.of(DataSourceSwitched)

            async def play_until(condition: Callable[[], bool], what: str) -> None:
                async with asyncio.timeout(15):
                    while not condition():
                        await play_klines(both, clock, 1, pace_s=0.02)
                assert condition(), what

            both = _Lockstep(primary, backup)
            try:
                await primary.wait_subscribed(KLINES)
                await play_klines(both, clock, 5 * per_candle)
                await until(lambda: len(out.of(CandleClosed)) == 4, "the primary delivers")

                primary.go_down()
                await play_until(lambda: len(switches()) == 1, "the primary's failures switch to the backup")
                await play_klines(both, clock, 3 * per_candle, pace_s=0.02)  # probes of the dead primary fail

                primary.come_up()
                await play_until(lambda: len(switches()) == 2, "healthy probes switch back to the primary")
                await play_klines(both, clock, 4 * per_candle)
                last_closed = at(candles[primary.candles_started(MARKET, TF) - 2].open_ms)
                await until(lambda: failover.last_open_time() == last_closed, "the primary delivers again")
            finally:
                await out.stop()
                await failover.close()

    assert [(s.from_source, s.to_source, s.reason) for s in switches()] == [
        ("binance", "binance_backup", PRIMARY_FAILED),
        ("binance_backup", "binance", PRIMARY_RECOVERED),
    ]
    assert all(s.symbol == SYMBOL for s in switches())
    emitted = out.of(CandleClosed)
    assert_candles_equal_csv(emitted, candles[: len(emitted)])  # consecutive from the first: no repeat, no gap
    first_switch, second_switch = (out.items.index(s) for s in switches())
    sources = [note for e, note in zip(out.items, out.notes, strict=True) if isinstance(e, CandleClosed)]
    closed_before = sum(isinstance(e, CandleClosed) for e in out.items[:first_switch])
    closed_during = sum(isinstance(e, CandleClosed) for e in out.items[first_switch:second_switch])
    assert closed_during > 0
    assert sources == ["binance"] * closed_before + ["binance_backup"] * closed_during + ["binance"] * (
        len(sources) - closed_before - closed_during
    )
    assert backup.requests["/api/v3/klines"] >= 1, "the backup filled the gap from REST when it took over"


class _Lockstep:
    """Two venues carrying the same market: every event happens on both."""

    def __init__(self, *venues: FakeBinance) -> None:
        self.venues = venues

    def advance_klines(self, market: str, tf: str, n: int = 1) -> int | None:
        times = {v.advance_klines(market, tf, n) for v in self.venues}
        assert len(times) == 1
        return times.pop()


def closed(k: Kline) -> CandleClosed:
    return CandleClosed(exchange="binance", symbol=SYMBOL, timeframe=TF, ts=at(k.open_ms), open=Decimal(k.open),
                        high=Decimal(k.high), low=Decimal(k.low), close=Decimal(k.close), volume=Decimal(k.volume))


def corrected(c: CandleClosed, volume: str) -> CandleCorrected:
    return CandleCorrected(**{**c.model_dump(), "volume": Decimal(volume)}, previous=c)


class _ScriptedFeed:
    """Stands in for a CandleFeed: hands out prepared batches (an exception is raised instead)."""

    def __init__(self, source: str, batches: list[Any]) -> None:
        self.source, self.symbol, self.timeframe = source, SYMBOL, TF
        self.window, self.catch_up_limit, self.updates = 5, 10, 0
        self.batches = batches
        self.resumed: list[datetime | None] = []

    async def step(self) -> list[Any]:
        batch = self.batches.pop(0)
        if isinstance(batch, Exception):
            raise batch
        self.updates += 1
        return batch

    def resume(self, after: datetime | None) -> None:
        self.resumed.append(after)

    async def probe(self, timeout_s: float) -> bool:
        return False

    async def close(self) -> None:
        pass


async def test_failover_passes_each_open_time_once_and_only_revisions_from_the_source_that_sent_the_candle() -> None:
    c = [closed(k) for k in real_candles(4, start=700)]
    primary = _ScriptedFeed("binance", [[c[0], c[1]], ccxt.NetworkError("socket closed"), ccxt.NetworkError("503")])
    backup = _ScriptedFeed("kraken", [[c[0], c[1], corrected(c[1], "1"), c[2]], [corrected(c[2], "2"), c[3]]])
    clock = TestClock(c[0].ts)
    selector = SourceSelector(SYMBOL, "binance", "kraken", max_failures=2, probe_interval=timedelta(hours=1))
    failover = FailoverCandleFeed(primary, backup, clock=clock, selector=selector, retry_delay_s=0)  # type: ignore[arg-type]
    out = [e for _ in range(5) for e in await failover.step()]
    assert out == [
        c[0], c[1],
        DataSourceSwitched(symbol=SYMBOL, from_source="binance", to_source="kraken", reason=PRIMARY_FAILED),
        c[2], corrected(c[2], "2"), c[3],
    ]
    assert backup.resumed == [c[1].ts]
    assert failover.last_open_time() == c[3].ts
    assert [failover.source_of(x.ts) for x in c] == ["binance", "binance", "kraken", "kraken"]


# --- order-book snapshots -------------------------------------------------------------------------------------


def assert_snapshot_is_row(snapshot: OrderBookSnapshotted, row: BookRow, depth: int) -> None:
    def levels(side: Sequence[tuple[str, str]]) -> list[tuple[Decimal, Decimal]]:
        return [(Decimal(p), Decimal(q)) for p, q in side[:depth]]

    assert [(lv.price, lv.quantity) for lv in snapshot.bids] == levels(row.bids)
    assert [(lv.price, lv.quantity) for lv in snapshot.asks] == levels(row.asks)
    assert snapshot.depth == depth and (snapshot.exchange, snapshot.symbol) == ("binance", SYMBOL)


async def test_book_snapshots_from_the_diff_stream_equal_the_recorded_book_and_respect_the_rate() -> None:
    rows = real_book(150)  # about 15 s of the real book, one row per 100 ms update
    by_time = {r.ts_ms: r for r in rows}
    async with FakeBinance() as venue, binance_exchange(venue) as exchange:
        venue.load_book(MARKET, rows)
        clock = TestClock(at(rows[0].ts_ms))
        sampler = OrderBookSampler(exchange, SYMBOL, clock=clock, depth=10, min_interval=timedelta(seconds=1),
                                   book_limit=100)
        out = Collector(sampler.snapshots(), note=lambda _: clock.now())
        try:
            await until(lambda: len(out.items) == 1, "the book synced from the REST snapshot")
            for _ in rows[1:]:
                clock.set(at(venue.advance_book(MARKET) or 0))
                await asyncio.sleep(0.004)
            await asyncio.sleep(0.1)
        finally:
            await out.stop()

    assert venue.depth_snapshots == [rows[0].update_id], "one REST snapshot, then diffs only"
    span = (rows[-1].ts_ms - rows[0].ts_ms) / 1000
    assert int(span / 1.25) <= len(out.items) <= int(span) + 1, f"{len(out.items)} snapshots over {span} s"
    gaps = [b - a for a, b in zip(out.notes, out.notes[1:], strict=False)]
    assert min(gaps) >= timedelta(seconds=1), "two snapshots within the configured interval"
    for snapshot in out.items:
        assert_snapshot_is_row(snapshot, by_time[int(snapshot.ts.timestamp() * 1000)], depth=10)
    assert not sampler.skipped


async def test_book_is_polled_over_rest_when_the_exchange_has_no_book_stream() -> None:
    rows = real_book(60)
    async with FakeBinance() as venue, binance_exchange(venue) as exchange:
        exchange.has["watchOrderBook"] = False
        venue.load_book(MARKET, rows)
        clock = TestClock(at(rows[0].ts_ms))
        sampler = OrderBookSampler(exchange, SYMBOL, clock=clock, depth=5, min_interval=timedelta(seconds=2),
                                   book_limit=20, poll_every_s=0.0)
        first = await sampler.step()
        assert first is not None
        assert_snapshot_is_row(first, rows[0], depth=5)
        clock.set(at(venue.advance_book(MARKET, 10) or 0))  # about one second later: too soon
        assert await sampler.step() is None
        clock.set(at(venue.advance_book(MARKET, 20) or 0))
        second = await sampler.step()
    assert second is not None and second.ts == clock.now()
    assert_snapshot_is_row(second, rows[30], depth=5)
    assert not venue.subscriptions


@pytest.mark.parametrize(
    ("book", "reason"),
    [
        ({"bids": [[100.0, 1.0]], "asks": [[99.5, 1.0]]}, "crossed_book"),
        ({"bids": [[100.0, 1.0]], "asks": [[100.0, 1.0]]}, "crossed_book"),
        ({"bids": [], "asks": []}, "empty_book"),
        ({"bids": [[100.0, 1.0]], "asks": []}, "one_sided_book"),
        ({"bids": [[100.0, 0.0]], "asks": [[101.0, 1.0]]}, "invalid_book"),
        ({"bids": [[100.0, 1.0], [100.5, 1.0]], "asks": [[101.0, 1.0]]}, "invalid_book"),
    ],
)
def test_crossed_empty_and_malformed_books_are_skipped_with_a_reason_and_free_the_slot(
    book: dict[str, Any], reason: str
) -> None:
    clock = TestClock()
    sampler = OrderBookSampler(_NoExchange(), SYMBOL, clock=clock, min_interval=timedelta(seconds=10))
    assert sampler.sample({**book, "timestamp": None}, now=clock.now()) is None
    assert sampler.skipped == {reason: 1}
    good = {"bids": [[100.0, 1.5]], "asks": [[100.01, 0.1]], "timestamp": 1_700_000_000_000}
    snapshot = sampler.sample(good, now=clock.now())
    assert snapshot is not None, "a skipped book does not use up the rate slot"
    assert snapshot.ts == at(1_700_000_000_000)
    assert (snapshot.bids[0].price, snapshot.asks[0].price) == (Decimal("100.0"), Decimal("100.01"))


class _NoExchange:
    id = "binance"
    has: dict[str, bool] = {}


def test_candle_state_machine_gives_the_same_events_for_the_same_inputs() -> None:
    candles = real_candles(5, start=500)
    step = 60_000
    inputs = []
    for i, k in enumerate(candles):
        row = [k.open_ms, float(k.open), float(k.high), float(k.low), float(k.close), float(k.volume)]
        partial = [k.open_ms, float(k.open), float(k.open), float(k.open), float(k.open), 0.0]
        previous = [inputs[-1][0][-1]] if i else []
        inputs.append((previous + [partial], at(k.open_ms + step // 2)))
        inputs.append((previous + [row], at(k.open_ms + step - 1)))

    def run() -> list[CandleClosed | CandleCorrected]:
        feed = CandleFeed(_NoExchange(), SYMBOL, TF, clock=TestClock())
        return [e for rows, now in inputs for e in feed.ingest(rows, now=now)]

    first, second = run(), run()
    assert first == second
    assert_candles_equal_csv(first, candles[:4])


def ohlcv_row(k: Kline) -> list[Any]:
    return [k.open_ms, float(k.open), float(k.high), float(k.low), float(k.close), float(k.volume)]


def test_rest_answers_may_be_newer_than_the_question_but_close_candles_only_by_the_time_of_asking() -> None:
    candles = real_candles(4, start=800)
    feed = CandleFeed(_NoExchange(), SYMBOL, TF, clock=TestClock(), close_grace=timedelta(seconds=5))
    c0 = at(candles[0].open_ms)
    # Asked while candle 0 was forming; by the answer it had closed, but nothing newer is listed yet.
    assert feed.ingest([ohlcv_row(candles[0])], now=c0 + 2 * MINUTE, asked_at=c0 + timedelta(seconds=30)) == []
    # Asked after its close (and grace): final by time.
    events = feed.ingest([ohlcv_row(candles[0])], now=c0 + 2 * MINUTE, asked_at=c0 + timedelta(seconds=65))
    assert_candles_equal_csv(events, candles[:1])
    # A slow answer can list candles opened well after the question: they are not "from the future".
    events = feed.ingest([ohlcv_row(k) for k in candles], now=c0 + 4 * MINUTE, asked_at=c0 + timedelta(seconds=65))
    assert_candles_equal_csv(events, candles[1:3])
    assert feed.rejections.total == 0


class _SlowRest:
    """A REST-only exchange whose answers arrive after the clock has moved on."""

    id = "binance"
    has = {"watchOHLCV": False}

    def __init__(self, clock: TestClock, rows: list[list[Any]], delay: timedelta) -> None:
        self.clock, self.rows, self.delay = clock, rows, delay

    async def fetch_ohlcv(self, symbol: str, timeframe: str, since: int | None = None,
                          limit: int | None = None) -> list[list[Any]]:
        self.clock.advance(self.delay)
        return self.rows


async def test_a_slow_rest_answer_is_not_rejected_as_future_nor_final_for_candles_forming_when_asked() -> None:
    candles = real_candles(4, start=900)
    clock = TestClock(at(candles[0].open_ms) + timedelta(seconds=30))
    exchange = _SlowRest(clock, [ohlcv_row(k) for k in candles], delay=timedelta(minutes=5))
    feed = CandleFeed(exchange, SYMBOL, TF, clock=clock, close_grace=timedelta(seconds=5))
    events = await feed.step()
    assert_candles_equal_csv(events, candles[:3])  # closed by the newer open times the answer lists
    assert feed.rejections.total == 0
    assert feed.last_open_time() == at(candles[2].open_ms), "the last one was forming when asked"
