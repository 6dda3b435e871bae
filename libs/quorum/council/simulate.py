"""Run the council over a recorded feature history, filling its own orders at the decision candle's close.

The same ``Council.decide`` and ``apply_fill`` the service uses, without a bus or a database: for research,
for benchmarks, and for tests that pin down determinism. Fills here are idealised (no latency, no slippage,
a flat fee); the paper venue is the realistic one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

import polars as pl

from quorum.council.base import FeatureRow, PositionView, PredictionView, StrategyInput
from quorum.council.campaign import Campaign, Closed, apply_fill
from quorum.council.engine import Council, Outcome, SymbolControl
from quorum.indicators import FeatureSetSpec, compute_features, ohlcv_frame
from quorum.times import from_ms
from quorum.types import Action, RiskProfile, Side

Predict = Callable[[FeatureRow], Sequence[PredictionView]]


@dataclass(frozen=True)
class SimulationParams:
    entry_notional: Decimal = Decimal(1000)  # quote spent on a full entry
    fee_rate: Decimal = Decimal("0.001")
    lot_step: Decimal = Decimal("0.00001")


@dataclass
class Simulation:
    outcomes: list[Outcome] = field(default_factory=list)
    closed: list[Closed] = field(default_factory=list)
    campaign: Campaign = field(default_factory=Campaign)


def simulate(council: Council, rows: Iterable[FeatureRow], *, predict: Predict, control: SymbolControl,
             profile: RiskProfile = RiskProfile.MEDIUM, params: SimulationParams = SimulationParams(),
             symbol: str = "BTC/USDT", exchange: str = "binance", timeframe: str = "1h") -> Simulation:
    sim = Simulation()
    history: list[FeatureRow] = []
    for row in rows:
        history.append(row)
        del history[:-council.lookback]
        c = sim.campaign
        inp = StrategyInput(exchange, symbol, timeframe, tuple(history), tuple(predict(row)),
                            PositionView(c.quantity, c.average_cost))
        out = council.decide(inp, control=control, profile=profile, campaign=c)
        sim.outcomes.append(out)
        sim.campaign = out.campaign
        qty = _quantity(out, sim.campaign, row.close, params)
        if qty > 0:
            fee = (qty * row.close * params.fee_rate)
            sim.campaign, closed = apply_fill(
                sim.campaign, side=Side.BUY if out.action is Action.BUY else Side.SELL, quantity=qty,
                price=row.close, fee=fee, fee_in_base=False, intent=out.intent, decision_id=str(row.ts))
            if closed is not None:
                sim.closed.append(closed)
    return sim


def feature_history(candles: pl.DataFrame, spec: FeatureSetSpec) -> list[FeatureRow]:
    """Feature rows for candles as ``quorum.marketdata.files.read_rows`` gives them (ts in epoch ms, decimal
    strings), computed in batch: the same values the features service streams, NaN shown as None."""
    table = compute_features(ohlcv_frame(candles), spec)
    rows = []
    for candle, vec in zip(candles.iter_rows(named=True), table.iter_rows(named=True), strict=True):
        values = {k: None if v is None or (isinstance(v, float) and math.isnan(v)) else v
                  for k, v in vec.items() if k != "ts"}
        ts = from_ms(int(candle["ts"]))
        rows.append(FeatureRow(ts, Decimal(str(candle["close"])), values))
    return rows


def _quantity(out: Outcome, c: Campaign, price: Decimal, p: SimulationParams) -> Decimal:
    if out.action is Action.BUY:
        return (p.entry_notional * out.fraction / price).quantize(p.lot_step, rounding=ROUND_DOWN)
    if out.action is Action.SELL:
        return c.quantity if out.fraction >= 1 else (c.quantity * out.fraction).quantize(p.lot_step, ROUND_DOWN)
    return Decimal(0)
