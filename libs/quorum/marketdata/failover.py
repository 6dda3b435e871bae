"""Failover between two live sources of the same series: ``SourceSelector`` decides (a pure state machine),
``FailoverCandleFeed`` follows it, so a switch neither repeats nor skips a candle.

Library code only: feeds and the clock are injected, nothing here publishes; switches are returned as
``DataSourceSwitched`` events for the caller to publish and audit.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from quorum.clock import Clock
from quorum.events.market_data import CandleCorrected, DataSourceSwitched
from quorum.marketdata.candle_feed import CandleEvent, CandleFeed
from quorum.marketdata.exchanges import SOURCE_ERRORS
from quorum.times import from_ms, to_ms

FeedEvent = CandleEvent | DataSourceSwitched

PRIMARY_FAILED = "PRIMARY_FAILED"
PRIMARY_STALE = "PRIMARY_STALE"
PRIMARY_RECOVERED = "PRIMARY_RECOVERED"


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
        return None if self._last_ms is None else from_ms(self._last_ms)

    def source_of(self, open_time: datetime) -> str | None:
        """Which source a recent candle came from (None once forgotten)."""
        return self._emitted_by.get(to_ms(open_time))

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
            opened = to_ms(event.ts)
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


