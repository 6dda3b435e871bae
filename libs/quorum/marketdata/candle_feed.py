"""Live closed candles (and their corrections) of one series from a ccxt exchange: websocket where it has one,
REST polling where not.

Library code only: the exchange and the clock are injected, nothing here publishes. Decisions about time (has a
candle closed, is a confirmation due) use the injected Clock; real time is used only to pace I/O (``asyncio``
waits). Bad records are counted, never raised.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from quorum.clock import Clock
from quorum.events.market_data import CandleClosed, CandleCorrected
from quorum.marketdata.exchanges import SOURCE_ERRORS
from quorum.marketdata.validation import PRICES, CandleValidator, Rejections, SeriesId
from quorum.times import from_ms, to_ms
from quorum.types import timeframe_seconds

CandleEvent = CandleClosed | CandleCorrected

_STREAM, _REST = "stream", "rest"  # how a row arrived: the socket, or a REST call


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
        self._closed_through: int | None = None if after is None else to_ms(after)
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
        return None if self._closed_through is None else from_ms(self._closed_through)

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
        elif opened > to_ms(now) + self._step_ms:
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
            by_time = asked_at is not None and opened + self._step_ms + self._grace_ms <= to_ms(asked_at)
            if not (by_stream or by_time):
                break
            if not authoritative and channel == _REST:
                # REST last saw it forming (e.g. during a reconnect): the stream may have missed its final
                # update, so only REST can tell how it closed.
                self._confirm_now = True
                break
            del self._pending[opened]
            # A newer open time is the exchange saying this one closed, even if our clock lags a little.
            seen_at = max(now, from_ms(newest)) if by_stream else now
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
        revised = checker.check(*raw, now=max(now, from_ms(opened + self._step_ms)))
        if revised is None:
            return None
        if all(getattr(revised, f) == getattr(previous, f) for f in PRICES):
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
        due = [t for t in self._pending if t + self._step_ms + self._grace_ms <= to_ms(now)]
        return min(due) if due else None

    def resume(self, after: datetime | None) -> None:
        """Continue after ``after`` (what was already published, by this feed or another): REST fills the gap
        on the next step and whatever this feed had pending is re-read rather than trusted."""
        if after is not None:
            floor = to_ms(after)
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

