"""Live order-book snapshots from a ccxt exchange: top-N levels, rate-limited by the injected clock.

Library code only: nothing here publishes. Bad books are counted by reason, never raised.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from decimal import InvalidOperation
from typing import Any

from pydantic import ValidationError

from quorum.clock import Clock
from quorum.events.market_data import BookLevel, OrderBookSnapshotted
from quorum.marketdata.exchanges import SOURCE_ERRORS
from quorum.marketdata.validation import to_decimal
from quorum.times import from_ms


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
                ts=now if stamp is None else from_ms(int(stamp)),
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
