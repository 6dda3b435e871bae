"""The in-process runner: every service's pure decisions wired in topology order, with in-memory state and a
test clock at market time, over candles from a file or the database.

It is the services without the infrastructure: the same ``decide`` functions, the same envelopes (ids derived
from their causes, so client order ids and fill ids are the services'), the same routing (the topology's
filter subjects), and the settled pacing of a replay — each candle's market side (venue, risk and ledger
marks) before its decision side (features -> inference -> council -> risk -> OMS -> venue -> ...). Same inputs
and configuration, same outputs, bit for bit, in any process.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from quorum.backtest.bus import InProcessBus
from quorum.backtest.config import RunnerConfig
from quorum.council import decide as council
from quorum.council.base import FeatureRow, PredictionView, StrategyInput
from quorum.domain.models import MAX_WINDOW, builtin, prediction_of
from quorum.events.base import Envelope, new_envelope
from quorum.events.fills import OrderFilled
from quorum.events.market_data import CandleClosed, OrderBookSnapshotted
from quorum.events.predictions import PredictionMade
from quorum.events.signals import DecisionMade
from quorum.indicators import FeatureEngine
from quorum.indicators.decide import features_of
from quorum.ledger.decide import decide as ledger_decide
from quorum.ledger.decide import open_book
from quorum.marketdata.keys import book_key, candle_key
from quorum.matching import venue
from quorum.oms.decide import decide as oms_decide
from quorum.outcome import Emit, Outcome
from quorum.risk import decide as risk
from quorum.risk.book import RiskBook
from quorum.runtime.settle import DECISION_HEADS
from quorum.times import candle_close

SeriesKey = tuple[str, str, str]


@dataclass
class Recorder:
    """What the run produced, in the order it happened."""

    envelopes: list[Envelope[Any]] = field(default_factory=list)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.envelopes if isinstance(e.payload, kind)]


@contextmanager
def _young_collections_only() -> Iterator[None]:
    """A run only accumulates long-lived objects (the recorded envelopes, the states), no reference cycles to
    free, and the collector's full passes over that growing heap took a third of the run's time. Young
    generations are still collected; the old one is again once the run ends."""
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, 1 << 30)
    try:
        yield
    finally:
        gc.set_threshold(young, middle, old)


class Runner:
    """One portfolio, one configuration. ``run(candles)`` can be called repeatedly (the state carries on)."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.predictor = config.predictor or builtin(*config.model)
        self.bus = InProcessBus(self._deliver)
        self.now: datetime | None = None
        # state per service, exactly what each service keeps in its tables
        self.engines: dict[SeriesKey, FeatureEngine] = {}
        self.history: dict[tuple[SeriesKey, str], deque[FeatureRow]] = {}
        self.recent: dict[tuple[SeriesKey, str], deque[FeatureRow]] = {}  # what a windowed model reads back
        self.predictions: dict[tuple[SeriesKey, datetime], list[PredictionView]] = {}
        self.council_book = council.CouncilBook()
        self.risk_book = RiskBook(cash=config.starting_cash)
        self.oms_book = config.oms_book()
        self.venue_book = config.venue_book()
        self.ledger_book = config.ledger_book()
        self._handlers: dict[str, Callable[[Envelope[Any]], None]] = {
            "features-candles": self._features, "inference-features": self._inference,
            "council-predictions": self._council_decide, "council-fills": self._council_fill,
            "council-control": self._council_control,
            "risk-decisions": self._risk, "risk-orders": self._risk, "risk-control": self._risk,
            "risk-candles": self._risk,
            "oms-intents": self._oms, "oms-fills": self._oms, "oms-venue": self._oms, "oms-control": self._oms,
            "matching-orders": self._venue, "matching-candles": self._venue, "matching-books": self._venue,
            "ledger-fills": self._ledger, "ledger-candles": self._ledger,
        }
        self.ignored: dict[str, int] = {}  # consumers the runner has no part for (backfill, model control)
        self._started = False

    # --- driving ------------------------------------------------------------------------------------------
    def start(self, at: datetime) -> None:
        """What the services do when they start: the ledger opens its book. (Routing starts authorized: a
        backtest is an operator's explicit request to trade the history.)"""
        self._started = True
        self.now = at
        self._apply("ledger", None, open_book(self.ledger_book, self.config.ledger, at), "ledger_book")
        self.bus.drain()

    def run(self, market: Iterable[CandleClosed | OrderBookSnapshotted],
            progress: Callable[[int], None] | None = None) -> Recorder:
        """Candles (and order-book snapshots, by time with them) in market order."""
        recorder = Recorder()
        self.bus.published = recorder.envelopes
        with _young_collections_only():
            for n, event in enumerate(market, 1):
                self.step(event)
                if progress is not None:
                    progress(n)
        return recorder

    def step(self, event: CandleClosed | OrderBookSnapshotted) -> None:
        """One market event, settled. A candle: its market side, then its decision side, each until nothing is
        left to do. A snapshot: the venue meets it (resting orders fill against the real book)."""
        if isinstance(event, OrderBookSnapshotted):
            at, key = event.ts, book_key(event)
        else:
            at, key = candle_close(event.ts, event.timeframe), candle_key(event)
        if not self._started:
            self.start(at)
        self.now = at
        self.bus.clock.set(at)
        env = new_envelope(event, clock=self.bus.clock, source="market_data", event_time=at, key=key)
        self.bus.publish(env)
        self.bus.drain(skip=DECISION_HEADS)
        if isinstance(event, CandleClosed):
            self.bus.publish(env, only=DECISION_HEADS)
            self.bus.drain()

    def command(self, payload: Any, at: datetime, key: Any) -> None:
        """An operator's command (as the gateway publishes it) taking effect at market time ``at``, settled
        before the next market event: what a replay uses to re-apply a recorded change, such as a risk profile."""
        if not self._started:
            self.start(at)
        self.now = at
        self.bus.clock.set(at)
        self.bus.publish(new_envelope(payload, clock=self.bus.clock, source="gateway", event_time=at, key=key))
        self.bus.drain()

    # --- plumbing -----------------------------------------------------------------------------------------
    def _deliver(self, durable: str, envelope: Envelope[Any]) -> None:
        handler = self._handlers.get(durable)
        if handler is None:
            self.ignored[durable] = self.ignored.get(durable, 0) + 1
            return
        handler(envelope)

    def _apply(self, source: str, cause: Envelope[Any] | None, outcome: Outcome[Any],
               state: str) -> list[Envelope[Any]]:
        """Keep ``outcome.state`` as the state named ``state`` (the attribute) and emit its events."""
        setattr(self, state, outcome.state)
        assert self.now is not None
        return [self.bus.emit(source, cause, e, self.now) for e in outcome.events] if outcome.events else []

    # --- features, inference ------------------------------------------------------------------------------
    def _features(self, env: Envelope[Any]) -> None:
        c: CandleClosed = env.payload
        key = (c.exchange, c.symbol, c.timeframe)
        engine = self.engines.get(key)
        if engine is None:
            engine = self.engines[key] = FeatureEngine(self.config.feature_set)
        out = features_of(engine, c, self.config.feature_set_version)
        rows = self.history.get((key, out.feature_set))
        if rows is None:
            rows = self.history[(key, out.feature_set)] = deque(maxlen=self.config.council.council.lookback)
        row = FeatureRow(c.ts, c.close, out.values)
        rows.append(row)  # what the council reads back from the features table
        recent = self.recent.get((key, out.feature_set))
        if recent is None:
            recent = self.recent[(key, out.feature_set)] = deque(maxlen=MAX_WINDOW)
        recent.append(row)
        self._emit("features", env, out)

    def _inference(self, env: Envelope[Any]) -> None:
        f = env.payload
        earlier: list[Any] = []
        window = getattr(self.predictor, "window", 1)  # a predictor that does not say reads one row
        if window > 1:  # the rows before this one, as inference reads them from the features table
            rows = self.recent[((f.exchange, f.symbol, f.timeframe), f.feature_set)]
            earlier = [r.values for r in list(rows)[-window:-1]]
        p = prediction_of(self.predictor, f, earlier)
        self.predictions.setdefault(((p.exchange, p.symbol, p.timeframe), p.ts), []).append(
            PredictionView(p.model_name, p.model_version, p.horizon, p.p_up, p.position_target, p.expected_return))
        self._emit("inference", env, p)

    def _emit(self, source: str, cause: Envelope[Any], payload: Any) -> Envelope[Any]:
        assert self.now is not None
        return self.bus.emit(source, cause, Emit(payload), self.now)

    # --- council ------------------------------------------------------------------------------------------
    def _council_decide(self, env: Envelope[Any]) -> None:
        p: PredictionMade = env.payload
        key = (p.exchange, p.symbol, p.timeframe)
        views = tuple(sorted(self.predictions.pop((key, p.ts), ()), key=lambda v: (v.model_name, v.model_version)))
        inp = StrategyInput(p.exchange, p.symbol, p.timeframe, tuple(self.history[(key, p.feature_set)]), views)
        out = council.on_prediction(self.council_book, p, inp, env.event_id, self.config.council)
        for emitted in self._apply("council", env, out, "council_book"):
            if isinstance(emitted.payload, DecisionMade):
                self.council_book = council.remember_origin(self.council_book, emitted.event_id, emitted.payload)

    def _council_fill(self, env: Envelope[Any]) -> None:
        f: OrderFilled = env.payload
        self._apply("council", env, council.on_fill(self.council_book, f), "council_book")

    def _council_control(self, env: Envelope[Any]) -> None:
        out = council.on_control(self.council_book, env.payload, self.config.council)
        self._apply("council", env, out, "council_book")

    # --- risk, OMS, venue, ledger -------------------------------------------------------------------------
    def _risk(self, env: Envelope[Any]) -> None:
        assert self.now is not None
        out = risk.decide(self.risk_book, env, self.config.risk, self.now)
        self._apply("risk", env, out, "risk_book")

    def _oms(self, env: Envelope[Any]) -> None:
        assert self.now is not None
        out = oms_decide(self.oms_book, env, self.config.oms, self.now)
        self._apply("oms", env, out, "oms_book")

    def _venue(self, env: Envelope[Any]) -> None:
        assert self.now is not None
        out = venue.decide(self.venue_book, env, self.config.venue, self.now)
        self._apply("matching", env, out, "venue_book")

    def _ledger(self, env: Envelope[Any]) -> None:
        assert self.now is not None
        out = ledger_decide(self.ledger_book, env, self.config.ledger, self.now)
        self._apply("ledger", env, out, "ledger_book")

