"""Turns each prediction (and the feature vector it came from) into a recorded, explainable decision.

Foundation scope: Solo mode with the RSI strategy, and Off mode (signals computed and stored, never acted
on). Council voting, more strategies and per-symbol runtime modes plug in here.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from quorum.db.tables import decisions, features, signals
from quorum.domain.strategies import RsiStrategy
from quorum.events.predictions import PredictionMade
from quorum.events.signals import DecisionMade, Vote
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import Action, CouncilMode
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert


class CouncilSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_COUNCIL_", extra="ignore", frozen=True)

    http_port: int = 8104
    mode: CouncilMode = CouncilMode.SOLO
    rsi_period: int = 14
    rsi_oversold: float = Field(default=30.0, gt=0, lt=100)
    rsi_overbought: float = Field(default=70.0, gt=0, lt=100)


class FeaturesMissing(RuntimeError):
    """The feature row a prediction refers to is not stored: a broken causal chain, worth a dead letter."""


class CouncilService(Service):
    NAME = "council"
    settings: CouncilSettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.settings.mode is CouncilMode.COUNCIL:
            raise ValueError("QUORUM_COUNCIL_MODE=COUNCIL is not available yet; use SOLO or OFF")
        self.strategy = RsiStrategy(self.settings.rsi_period, self.settings.rsi_oversold,
                                    self.settings.rsi_overbought)

    def handlers(self) -> dict[str, Handler]:
        return {"council-predictions": self.on_prediction}

    async def on_prediction(self, ctx: Context) -> None:
        p: PredictionMade = ctx.message.payload
        row = (
            await ctx.conn.execute(
                select(features.c["values"], features.c.close).where(
                    features.c.exchange == p.exchange, features.c.symbol == p.symbol,
                    features.c.timeframe == p.timeframe, features.c.feature_set == p.feature_set,
                    features.c.ts == p.ts,
                )
            )
        ).first()
        if row is None:
            raise FeaturesMissing(f"no {p.feature_set} features for {p.symbol} {p.timeframe} at {p.ts}")
        signal = self.strategy.evaluate(row[0])
        vote = Vote(producer=signal.producer, action=signal.action, confidence=signal.confidence, weight=1.0,
                    reason_codes=signal.reason_codes)
        mode = self.settings.mode
        action, reasons = signal.action, (f"SOLO:{signal.producer}",)
        if mode is CouncilMode.OFF:
            action, reasons = Action.HOLD, ("MODE_OFF",)
        decision = ctx.emit(DecisionMade(
            exchange=p.exchange, symbol=p.symbol, timeframe=p.timeframe, ts=p.ts, mode=mode, action=action,
            confidence=signal.confidence if action is not Action.HOLD else 0.0, threshold=0.0, votes=(vote,),
            reason_codes=reasons + signal.reason_codes, model_versions=(p.model_version,),
            feature_set=p.feature_set, price=row.close,
        ))
        d = decision.payload
        await ctx.conn.execute(insert(decisions).values(
            decision_id=decision.event_id, exchange=d.exchange, symbol=d.symbol, timeframe=d.timeframe, ts=d.ts,
            mode=d.mode.value, action=d.action.value, confidence=d.confidence, threshold=d.threshold,
            reason_codes=list(d.reason_codes), model_versions=list(d.model_versions), feature_set=d.feature_set,
            price=d.price,
        ).on_conflict_do_nothing())
        await ctx.conn.execute(insert(signals).values(
            decision_id=decision.event_id, producer=vote.producer, action=vote.action.value,
            confidence=vote.confidence, weight=vote.weight, reason_codes=list(vote.reason_codes),
        ).on_conflict_do_nothing())
