"""Live public market data from exchanges through ccxt: closed candles (and their corrections), order-book
snapshots, and failover between two sources of the same series.

Library code only: exchanges and the clock are injected, nothing here publishes. Decisions about time (has a
candle closed, is a source stale, is a probe due, may a book be sampled) use the injected Clock; real time is
used only to pace I/O (``asyncio`` waits). Bad records are counted, never raised.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support
import ccxt.pro
from pydantic import ValidationError

from quorum.clock import Clock
from quorum.events.market_data import (
    BookLevel,
    CandleClosed,
    CandleCorrected,
    DataSourceSwitched,
    OrderBookSnapshotted,
)
from quorum.marketdata.validation import CandleValidator, Rejections, SeriesId, to_decimal
from quorum.types import timeframe_seconds

CandleEvent = CandleClosed | CandleCorrected
FeedEvent = CandleClosed | CandleCorrected | DataSourceSwitched

# What a failing source raises: ccxt wraps HTTP and websocket trouble in its own errors; sockets may leak OSError.
SOURCE_ERRORS: tuple[type[BaseException], ...] = (ccxt.BaseError, OSError)

_STREAM, _REST = "stream", "rest"  # how a row arrived: the socket, or a REST call

PRIMARY_FAILED = "PRIMARY_FAILED"
PRIMARY_STALE = "PRIMARY_STALE"
PRIMARY_RECOVERED = "PRIMARY_RECOVERED"

# Per-exchange options so that loading markets fetches spot markets only (binance loads futures by default).
_SPOT_ONLY_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "binance": {"fetchMarkets": {"types": ["spot"]}},
}


def make_exchange(
    exchange_id: str,
    *,
    urls: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    pro: bool = True,
    numbers_as_text: bool = False,
    config: Mapping[str, Any] | None = None,
) -> Any:
    """A keyless, rate-limited, spot-only ccxt exchange for public data.

    ``pro`` picks the ccxt.pro (websocket) class where ccxt.pro has one, else the REST-only async class, whose
    feeds then poll. ``urls`` is deep-merged into ``exchange.urls['api']`` so tests can point REST and websocket
    endpoints at local servers (binance: ``{"public": "http://h/api/v3", "ws": {"spot": "ws://h/stream/ws"}}``);
    ``base_url`` moves every REST base URL to another host keeping its path (a mirror or a local fake:
    ``https://api.binance.com/api/v3`` -> ``{base_url}/api/v3``). ``numbers_as_text`` keeps the exchange's text
    for prices (every digit reaches Decimal; used by the backfill, whose rows go straight to the database).
    ``newUpdates`` is off because feeds diff the recent candle window themselves (a revision of an older candle
    would otherwise be invisible).
    """
    module = ccxt.pro if pro and exchange_id in ccxt.pro.exchanges else ccxt.async_support
    if exchange_id not in module.exchanges:
        raise ValueError(f"unknown ccxt exchange {exchange_id!r}")
    options = {"defaultType": "spot", **_SPOT_ONLY_OPTIONS.get(exchange_id, {})}
    settings: dict[str, Any] = {"enableRateLimit": True, "newUpdates": False, **(config or {})}
    settings["options"] = {**options, **settings.get("options", {})}
    exchange = getattr(module, exchange_id)(settings)
    if numbers_as_text:
        exchange.number = str
    if base_url:
        base = base_url.rstrip("/")
        for name, url in list(exchange.urls["api"].items()):
            if isinstance(url, str):
                exchange.urls["api"][name] = base + urlsplit(url).path
    if urls:
        api = exchange.urls.get("api")
        exchange.urls["api"] = exchange.deep_extend(api, dict(urls)) if isinstance(api, dict) else dict(urls)
    return exchange


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _same(a: tuple[Any, ...], b: tuple[Any, ...] | None) -> bool:
    """Equality that also holds for NaN fields, so a bad row repeated in the stream is counted once."""
    return b is not None and (a == b or repr(a) == repr(b))


class CandleFeed:
    """Closed candles of one (exchange, symbol, timeframe), validated, each published once.

    Reads ``watch_ohlcv`` where the exchange has it, else polls ``fetch_ohlcv``. A candle closes when a newer
    open time appears in the data, or, on a quiet socket, once the clock is ``close_grace`` past its close and
    REST confirms it. A later change to a published candle becomes a ``CandleCorrected``. ``ingest`` is the
    whole state machine, deterministic for a given sequence of inputs; ``step`` adds the I/O.
    """

    def __init__(
        self,
        exchange: Any,
        symbol: str,
        timeframe: str,
        *,
        clock: Clock,
        exchange_name: str | None = None,
        source: str | None = None,
        after: datetime | None = None,
        window: int = 5,
        close_grace: timedelta = timedelta(seconds=5),
        poll_every_s: float = 5.0,
        idle_timeout_s: float = 1.0,
        retry_delay_s: float = 1.0,
        catch_up_limit: int = 500,
    ) -> None:
        """``exchange_name`` labels the payloads (default: the ccxt id); ``source`` names this feed in switch
        events (default: the label). ``after`` is the open time of the newest candle already published (e.g. read
        back at restart): nothing at or before it is emitted, and the first step fills the gap since then from
        REST (up to ``catch_up_limit`` candles; beyond that, the caller's gap repair). ``window`` is how many
        recent candles are re-read from the stream to spot revisions."""
        if window < 2:
            raise ValueError("window must cover at least the forming candle and the one before it")
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = timeframe
        self.clock = clock
        self.series = SeriesId(exchange_name or exchange.id, symbol, timeframe)
        self.source = source or self.series.exchange
        self.window = window
        self.close_grace = close_grace
        self.poll_every_s = poll_every_s
        self.idle_timeout_s = idle_timeout_s
        self.retry_delay_s = retry_delay_s
        self.catch_up_limit = catch_up_limit
        self.rejections = Rejections()
        self.failures = 0
        self.updates = 0  # batches of rows received: how a supervisor tells data from silence
        self.last_update_at: datetime | None = None
        self._step_ms = timeframe_seconds(timeframe) * 1000
        self._grace_ms = int(close_grace.total_seconds() * 1000)
        self._validator = CandleValidator(self.series, self.rejections, last=after)
        self._closed_through: int | None = None if after is None else _ms(after)
        self._pending: dict[int, tuple[tuple[Any, ...], str]] = {}  # open ms -> (latest row, channel it came by)
        self._seen: dict[str, dict[int, tuple[Any, ...]]] = {_STREAM: {}, _REST: {}}
        self._published: OrderedDict[int, CandleClosed] = OrderedDict()
        self._bad_rows: set[str] = set()
        self._needs_catch_up = after is not None
        self._confirm_now = False
        self._confirm_not_before: datetime | None = None
        self._watch: asyncio.Future[Any] | None = None
        self._polled = False

    @property
    def streaming(self) -> bool:
        return bool(self.exchange.has.get("watchOHLCV"))

    def last_open_time(self) -> datetime | None:
        """Open time of the newest candle this feed has closed (published or rejected)."""
        return None if self._closed_through is None else _from_ms(self._closed_through)

    # --- the state machine -------------------------------------------------------------------------------------

    def ingest(
        self, rows: Sequence[Sequence[Any]], *, now: datetime, asked_at: datetime | None = None
    ) -> list[CandleEvent]:
        """Take ccxt OHLCV rows (``[ts_ms, o, h, l, c, v]``) received at ``now``; return what they close or correct.

        Stream rows are compared with what the stream said before, so the unchanged candles of ccxt's window are
        ignored. REST rows (``asked_at``: when the request was sent) are authoritative: a candle among them that
        had closed, plus ``close_grace`` for clock skew, by ``asked_at`` is final even with no newer candle listed
        (judged by the asking time because the answer can be newer than the request, but never older)."""
        authoritative = asked_at is not None
        self.updates += 1
        self.last_update_at = now
        channel = _REST if authoritative else _STREAM
        seen = self._seen[channel]
        out: list[CandleEvent] = []
        for row in rows:
            opened = self._open_ms(row, now)
            if opened is None:
                continue
            raw = tuple(row[:6])
            fresh = not _same(raw, seen.get(opened))
            seen[opened] = raw
            if opened in self._published:
                corrected = self._correct(opened, raw, now) if fresh else None
                if corrected is not None:
                    out.append(corrected)
            elif (self._closed_through is None or opened > self._closed_through) and (fresh or authoritative):
                self._pending[opened] = (raw, channel)
        out.extend(self._close_ready(now, asked_at))
        self._forget_old()
        return out

    def _open_ms(self, row: Sequence[Any], now: datetime) -> int | None:
        """The row's open time if it is usable as one; otherwise the row is counted (once) and skipped."""
        opened = row[0] if len(row) >= 6 else None
        reason = None
        if not isinstance(opened, int) or isinstance(opened, bool):
            reason = "bad_timestamp"
        elif opened % self._step_ms:
            reason = "misaligned_timestamp"
        elif opened > _ms(now) + self._step_ms:
            reason = "future_timestamp"  # would otherwise "prove" that every pending candle has closed
        if reason is None:
            return opened
        key = repr(tuple(row))
        if key not in self._bad_rows:
            self._bad_rows.add(key)
            self.rejections.add(reason)
        return None

    def _close_ready(self, now: datetime, asked_at: datetime | None) -> list[CandleClosed]:
        """Close pending candles oldest first: those a newer open time follows, and (REST) those past close."""
        authoritative = asked_at is not None
        out: list[CandleClosed] = []
        if not self._pending:
            return out
        newest = max(self._pending)
        for opened in sorted(self._pending):
            raw, channel = self._pending[opened]
            by_stream = opened < newest
            by_time = asked_at is not None and opened + self._step_ms + self._grace_ms <= _ms(asked_at)
            if not (by_stream or by_time):
                break
            if not authoritative and channel == _REST:
                # REST last saw it forming (e.g. during a reconnect): the stream may have missed its final
                # update, so only REST can tell how it closed.
                self._confirm_now = True
                break
            del self._pending[opened]
            # A newer open time is the exchange saying this one closed, even if our clock lags a little.
            seen_at = max(now, _from_ms(newest)) if by_stream else now
            self._closed_through = opened
            candle = self._validator.check(*raw, now=seen_at)
            if candle is not None:
                self._published[opened] = candle
                out.append(candle)
        return out

    def _correct(self, opened: int, raw: tuple[Any, ...], now: datetime) -> CandleCorrected | None:
        """A published candle changed: validate the new values like any candle, publish them with the old ones."""
        previous = self._published[opened]
        checker = CandleValidator(self.series, self.rejections)
        revised = checker.check(*raw, now=max(now, _from_ms(opened + self._step_ms)))
        if revised is None:
            return None
        fields = ("open", "high", "low", "close", "volume")
        if all(getattr(revised, f) == getattr(previous, f) for f in fields):
            return None
        self._published[opened] = revised
        return CandleCorrected(**revised.model_dump(), previous=previous)

    def _forget_old(self) -> None:
        while len(self._published) > self.window + 2:
            self._published.popitem(last=False)
        floor = next(iter(self._published), self._closed_through)
        if floor is not None:
            for seen in self._seen.values():
                for opened in [t for t in seen if t < floor]:
                    del seen[opened]
        if len(self._bad_rows) > 4 * self.window:
            self._bad_rows.clear()

    def _due_for_confirmation(self, now: datetime) -> int | None:
        """Oldest pending candle REST should confirm: past close plus grace on a quiet socket, or untrusted."""
        if not self._pending or (self._confirm_not_before is not None and now < self._confirm_not_before):
            return None
        if self._confirm_now:
            return min(self._pending)
        due = [t for t in self._pending if t + self._step_ms + self._grace_ms <= _ms(now)]
        return min(due) if due else None

    def resume(self, after: datetime | None) -> None:
        """Continue after ``after`` (what was already published, by this feed or another): REST fills the gap
        on the next step and whatever this feed had pending is re-read rather than trusted."""
        if after is not None:
            floor = _ms(after)
            if self._closed_through is None or floor > self._closed_through:
                self._closed_through = floor
                self._validator.last = after
        self._interrupted()

    def _interrupted(self) -> None:
        """The stream had a gap: what it said about unclosed candles may be partial, so forget it (ccxt's cached
        rows included, which would otherwise come back looking fresh) and let REST re-read from the last close."""
        self._pending.clear()
        self._confirm_now = False
        stream_seen = self._seen[_STREAM]
        for opened in [t for t in stream_seen if self._closed_through is None or t > self._closed_through]:
            del stream_seen[opened]
        cached = getattr(self.exchange, "ohlcvs", None)
        if isinstance(cached, dict) and isinstance(cached.get(self.symbol), dict):
            cached[self.symbol].pop(self.timeframe, None)
        self._needs_catch_up = self._closed_through is not None

    # --- I/O ---------------------------------------------------------------------------------------------------

    async def step(self) -> list[CandleEvent]:
        """One unit of work: catch up, or wait for the socket (at most ``idle_timeout_s``), or poll once.

        Raises ``SOURCE_ERRORS`` when the source fails; the caller decides whether to retry or fail over."""
        try:
            if self._needs_catch_up:
                return await self._catch_up()
            if self.streaming:
                return await self._step_stream()
            return await self._step_poll()
        except SOURCE_ERRORS:
            self.failures += 1
            self._interrupted()
            raise

    async def _fetch(self, since: int | None, limit: int) -> list[CandleEvent]:
        """Read candles over REST; closure is judged by the time of asking, not of the (later) answer."""
        asked_at = self.clock.now()
        rows = await self.exchange.fetch_ohlcv(self.symbol, self.timeframe, since=since, limit=limit)
        return self.ingest(rows, now=self.clock.now(), asked_at=asked_at)

    async def _catch_up(self) -> list[CandleEvent]:
        since = None if self._closed_through is None else self._closed_through + self._step_ms
        events = await self._fetch(since, self.catch_up_limit)
        self._needs_catch_up = False
        return events

    async def _step_poll(self) -> list[CandleEvent]:
        if self._polled:
            await asyncio.sleep(self.poll_every_s)
        self._polled = True
        return await self._fetch(None, self.window + 2)

    async def _step_stream(self) -> list[CandleEvent]:
        if self._watch is None:
            self._watch = asyncio.ensure_future(
                self.exchange.watch_ohlcv(self.symbol, self.timeframe, limit=self.window)
            )
        done, _ = await asyncio.wait({self._watch}, timeout=self.idle_timeout_s)
        events: list[CandleEvent] = []
        if done:
            watch, self._watch = self._watch, None
            events = self.ingest(watch.result(), now=self.clock.now())
        now = self.clock.now()
        due = self._due_for_confirmation(now)
        if due is not None:
            self._confirm_not_before = now + self.close_grace
            self._confirm_now = False
            events += await self._fetch(due, self.window + 2)
        return events

    async def probe(self, timeout_s: float) -> bool:
        """Whether the source delivers data now. Leaves the feed's state alone (the data is not consumed)."""
        read = self.exchange.watch_ohlcv if self.streaming else self.exchange.fetch_ohlcv
        try:
            await asyncio.wait_for(read(self.symbol, self.timeframe, limit=1), timeout_s)
        except (*SOURCE_ERRORS, TimeoutError):
            return False
        return True

    async def events(self) -> AsyncIterator[CandleEvent]:
        """Closed and corrected candles forever, riding out source failures (counted in ``failures``)."""
        while True:
            try:
                batch = await self.step()
            except SOURCE_ERRORS:
                await asyncio.sleep(self.retry_delay_s)
                continue
            for event in batch:
                yield event

    async def close(self) -> None:
        """Stop waiting on the socket; the exchange belongs to the caller, who closes it."""
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None


@dataclass
class SourceSelector:
    """Which of two sources feeds a symbol: a pure state machine, fed outcomes and clock times, no I/O.

    On the primary, ``max_failures`` consecutive failures or ``stale_after`` without data switch to the secondary.
    On the secondary, the primary is probed every ``probe_interval``; ``healthy_probes_needed`` consecutive healthy
    probes switch back. No two switches are closer than ``probe_interval``, so the feed never flaps faster.
    """

    symbol: str
    primary: str
    secondary: str
    max_failures: int = 3
    stale_after: timedelta | None = timedelta(minutes=2)
    probe_interval: timedelta = timedelta(seconds=30)
    healthy_probes_needed: int = 3
    active: str = field(init=False)
    failures: int = field(default=0, init=False)
    healthy_probes: int = field(default=0, init=False)
    last_data_at: datetime | None = field(default=None, init=False)
    last_switch_at: datetime | None = field(default=None, init=False)
    last_probe_at: datetime | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.primary == self.secondary:
            raise ValueError("primary and secondary must be different sources")
        if self.max_failures < 1 or self.healthy_probes_needed < 1:
            raise ValueError("max_failures and healthy_probes_needed must be >= 1")
        if self.probe_interval <= timedelta(0):
            raise ValueError("probe_interval must be positive")
        self.active = self.primary

    @property
    def on_primary(self) -> bool:
        return self.active == self.primary

    def record_data(self, now: datetime) -> None:
        """The active source delivered: it is healthy."""
        self.failures = 0
        self.last_data_at = now

    def record_failure(self, now: datetime) -> DataSourceSwitched | None:
        """The active source failed once (a secondary's failures switch nothing: there is nowhere to go)."""
        self.failures += 1
        if self.last_data_at is None:
            self.last_data_at = now
        return self._failed_over(now)

    def check(self, now: datetime) -> DataSourceSwitched | None:
        """Nothing happened on the active source: switch if the primary has been silent too long."""
        if self.last_data_at is None:
            self.last_data_at = now
        return self._failed_over(now)

    def _failed_over(self, now: datetime) -> DataSourceSwitched | None:
        if not self.on_primary:
            return None
        if self.failures >= self.max_failures:
            return self._switch(self.secondary, PRIMARY_FAILED, now)
        silent_for = timedelta(0) if self.last_data_at is None else now - self.last_data_at
        if self.stale_after is not None and silent_for >= self.stale_after:
            return self._switch(self.secondary, PRIMARY_STALE, now)
        return None

    def probe_due(self, now: datetime) -> bool:
        if self.on_primary:
            return False
        since = self.last_probe_at or self.last_switch_at
        return since is None or now - since >= self.probe_interval

    def record_probe(self, healthy: bool, now: datetime) -> DataSourceSwitched | None:
        """Outcome of probing the primary; ignored unless a probe was due (the interval is the selector's)."""
        if not self.probe_due(now):
            return None
        self.last_probe_at = now
        self.healthy_probes = self.healthy_probes + 1 if healthy else 0
        if self.healthy_probes >= self.healthy_probes_needed:
            return self._switch(self.primary, PRIMARY_RECOVERED, now)
        return None

    def _switch(self, to: str, reason: str, now: datetime) -> DataSourceSwitched | None:
        if self.last_switch_at is not None and now - self.last_switch_at < self.probe_interval:
            return None  # hold-down: a source just switched to gets at least one probe interval
        event = DataSourceSwitched(symbol=self.symbol, from_source=self.active, to_source=to, reason=reason)
        self.active = to
        self.last_switch_at = now
        self.last_data_at = now
        self.last_probe_at = None
        self.failures = 0
        self.healthy_probes = 0
        return event


class FailoverCandleFeed:
    """One symbol's candles from a primary feed, falling back to a secondary one (``SourceSelector`` decides).

    Candles are de-duplicated by open time across sources, and a feed taking over first fills the gap since the
    last emitted candle from its REST API, so a switch neither repeats nor skips a candle (a gap longer than the
    catch-up page is left to the caller's gap repair: see ``last_open_time``). Switches are returned in the
    stream for the caller to publish and audit.
    """

    def __init__(
        self,
        primary: CandleFeed,
        secondary: CandleFeed,
        *,
        clock: Clock,
        selector: SourceSelector | None = None,
        probe_timeout_s: float = 5.0,
        retry_delay_s: float = 1.0,
    ) -> None:
        if (primary.symbol, primary.timeframe) != (secondary.symbol, secondary.timeframe):
            raise ValueError("both feeds must carry the same symbol and timeframe")
        self.selector = selector or SourceSelector(primary.symbol, primary.source, secondary.source)
        if (self.selector.primary, self.selector.secondary) != (primary.source, secondary.source):
            raise ValueError("the selector must name the feeds' sources")
        self.clock = clock
        self.probe_timeout_s = probe_timeout_s
        self.retry_delay_s = retry_delay_s
        self._feeds = {primary.source: primary, secondary.source: secondary}
        self._last_ms: int | None = None
        self._emitted_by: OrderedDict[int, str] = OrderedDict()
        # Remember sources for at least one catch-up batch plus the revision window of either feed.
        self._memory = max(f.catch_up_limit + f.window + 2 for f in (primary, secondary))

    @property
    def active(self) -> CandleFeed:
        return self._feeds[self.selector.active]

    def last_open_time(self) -> datetime | None:
        """Open time of the newest candle emitted, from either source: where a gap repair starts."""
        return None if self._last_ms is None else _from_ms(self._last_ms)

    def source_of(self, open_time: datetime) -> str | None:
        """Which source a recent candle came from (None once forgotten)."""
        return self._emitted_by.get(_ms(open_time))

    async def step(self) -> list[FeedEvent]:
        """Probe the primary if due, then one step of the active feed; failures and silence go to the selector."""
        out: list[FeedEvent] = []
        if self.selector.probe_due(self.clock.now()):
            healthy = await self._feeds[self.selector.primary].probe(self.probe_timeout_s)
            out += self._take_over(self.selector.record_probe(healthy, self.clock.now()))
        feed = self.active
        heard = feed.updates
        try:
            events = await feed.step()
        except SOURCE_ERRORS:
            switched = self._take_over(self.selector.record_failure(self.clock.now()))
            if not switched:
                await asyncio.sleep(self.retry_delay_s)
            return out + switched
        out += self._accept(feed.source, events)
        if feed.updates != heard:
            self.selector.record_data(self.clock.now())
        else:
            out += self._take_over(self.selector.check(self.clock.now()))
        return out

    def _take_over(self, switch: DataSourceSwitched | None) -> list[FeedEvent]:
        if switch is None:
            return []
        self._feeds[switch.to_source].resume(self.last_open_time())
        return [switch]

    def _accept(self, source: str, events: list[CandleEvent]) -> list[FeedEvent]:
        out: list[FeedEvent] = []
        for event in events:
            opened = _ms(event.ts)
            if isinstance(event, CandleCorrected):
                if self._emitted_by.get(opened) == source:  # revisions only of what that source told us
                    out.append(event)
                continue
            if self._last_ms is not None and opened <= self._last_ms:
                continue  # already emitted, from this source or the other
            self._last_ms = opened
            self._emitted_by[opened] = source
            while len(self._emitted_by) > self._memory:
                self._emitted_by.popitem(last=False)
            out.append(event)
        return out

    async def events(self) -> AsyncIterator[FeedEvent]:
        while True:
            for event in await self.step():
                yield event

    async def close(self) -> None:
        for feed in self._feeds.values():
            await feed.close()


class OrderBookSampler:
    """Top-N order-book snapshots of one symbol, at most one per ``min_interval`` of clock time.

    Reads ``watch_order_book`` where the exchange has it, else polls ``fetch_order_book``. Crossed, empty and
    malformed books are skipped and counted in ``skipped`` by reason; a skipped book does not use up the slot.
    """

    def __init__(
        self,
        exchange: Any,
        symbol: str,
        *,
        clock: Clock,
        depth: int = 10,
        min_interval: timedelta = timedelta(seconds=1),
        exchange_name: str | None = None,
        book_limit: int | None = None,
        poll_every_s: float = 1.0,
        retry_delay_s: float = 1.0,
    ) -> None:
        """``book_limit`` is the depth asked of the exchange (None: its default, deep enough for a correct local
        book); ``depth`` is how many levels a snapshot keeps."""
        if not 1 <= depth <= 1000:
            raise ValueError("depth must be within 1..1000")
        self.exchange = exchange
        self.symbol = symbol
        self.clock = clock
        self.depth = depth
        self.min_interval = min_interval
        self.exchange_name = exchange_name or exchange.id
        self.book_limit = book_limit
        self.poll_every_s = poll_every_s
        self.retry_delay_s = retry_delay_s
        self.skipped: Counter[str] = Counter()
        self.failures = 0
        self._last_sampled_at: datetime | None = None
        self._polled = False

    @property
    def streaming(self) -> bool:
        return bool(self.exchange.has.get("watchOrderBook"))

    def sample(self, book: Mapping[str, Any], *, now: datetime) -> OrderBookSnapshotted | None:
        """The snapshot of a ccxt order book, or None when rate-limited or skipped (counted by reason).

        Must run before the next await: ccxt.pro updates the watched book in place."""
        if self._last_sampled_at is not None and now - self._last_sampled_at < self.min_interval:
            return None
        bids, asks = book.get("bids") or [], book.get("asks") or []
        if not bids or not asks:
            return self._skip("empty_book" if not bids and not asks else "one_sided_book")
        try:
            if bids[0][0] >= asks[0][0]:
                return self._skip("crossed_book")
            stamp = book.get("timestamp")
            snapshot = OrderBookSnapshotted(
                exchange=self.exchange_name,
                symbol=self.symbol,
                ts=now if stamp is None else _from_ms(int(stamp)),
                depth=self.depth,
                bids=tuple(BookLevel(price=to_decimal(p), quantity=to_decimal(q)) for p, q, *_ in bids[: self.depth]),
                asks=tuple(BookLevel(price=to_decimal(p), quantity=to_decimal(q)) for p, q, *_ in asks[: self.depth]),
            )
        except (ValidationError, InvalidOperation, TypeError, ValueError):
            return self._skip("invalid_book")
        self._last_sampled_at = now
        return snapshot

    def _skip(self, reason: str) -> None:
        self.skipped[reason] += 1
        return None

    async def step(self) -> OrderBookSnapshotted | None:
        """Wait for the next book update (or poll once) and sample it; raises ``SOURCE_ERRORS`` on failure."""
        try:
            if self.streaming:
                book = await self.exchange.watch_order_book(self.symbol, self.book_limit)
            else:
                if self._polled:
                    await asyncio.sleep(self.poll_every_s)
                self._polled = True
                book = await self.exchange.fetch_order_book(self.symbol, self.book_limit)
        except SOURCE_ERRORS:
            self.failures += 1
            raise
        return self.sample(book, now=self.clock.now())

    async def snapshots(self) -> AsyncIterator[OrderBookSnapshotted]:
        """Snapshots forever, riding out source failures (counted in ``failures``)."""
        while True:
            try:
                snapshot = await self.step()
            except SOURCE_ERRORS:
                await asyncio.sleep(self.retry_delay_s)
                continue
            if snapshot is not None:
                yield snapshot
