"""Adapter around ``quorum.council``: loads what the council needs for one candle from the database (feature
history, predictions, per-symbol controls, the active risk profile, the campaign, disabled strategies), asks
the pure council for an outcome, and records it voter by voter in one transaction with the decision event.

Every fill of a symbol folds into its campaign (the council's own orders, protective legs, liquidations);
when a campaign closes, every conviction cast about it is scored (karma). State lives only in the database,
so a restart changes nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict
from quorum.council.base import FeatureRow, PositionView, PredictionView, RiskTag, StrategyBase, StrategyInput
from quorum.council.campaign import Campaign, CampaignParams, apply_fill
from quorum.council.engine import DEFAULT_PROFILE_FILTERS, Council, Outcome, ProfileFilter, SymbolControl
from quorum.council.karma import Observation, adaptive_weights, scorecard
from quorum.council.strategies import default_strategies, parse_strategies
from quorum.db.tables import (
    council_campaigns,
    council_controls,
    council_risk_profile,
    decisions,
    features,
    karma_votes,
    predictions,
    signals,
    strategy_failures,
)
from quorum.events.control import ControlRefused, CouncilModeChanged, RiskProfileChanged, SetCouncilMode
from quorum.events.fills import OrderFilled
from quorum.events.predictions import PredictionMade
from quorum.events.signals import DecisionMade, StrategyDisabled, Vote
from quorum.ids import client_order_id
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import Action, CouncilMode, Intent, RiskProfile, split_symbol
from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert

ALL_SYMBOLS = "*"
GLOBAL = "global"


class CouncilSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_COUNCIL_", extra="ignore", frozen=True)

    http_port: int = 8104
    mode: CouncilMode = Field(default=CouncilMode.COUNCIL, description="default for symbols without a control")
    threshold: float = Field(default=0.4, gt=0.0, le=1.0, description="default consensus threshold")
    solo_strategy: str = Field(default="rsi", description="the strategy that decides in Solo mode by default")
    strategies: tuple[StrategyBase, ...] = Field(
        default_factory=default_strategies,
        description="JSON list of strategy specs ({type, name, risk_tag, weight, enabled, ...parameters})",
    )
    profile_filters: dict[RiskProfile, dict[str, Any]] = Field(
        default_factory=dict, description="per profile: {allowed_tags: [...], min_confidence: x}; overrides")
    campaign: CampaignParams = Field(default_factory=CampaignParams)
    adaptive_weights: bool = Field(default=False, description="scale weights by karma hit rate")
    karma_min_samples: int = Field(default=20, ge=1)

    @field_validator("strategies", mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        return parse_strategies(value) if isinstance(value, str | list) else value

    def filters(self) -> dict[RiskProfile, ProfileFilter]:
        out = dict(DEFAULT_PROFILE_FILTERS)
        for profile, raw in self.profile_filters.items():
            base = out[profile]
            out[profile] = ProfileFilter(
                frozenset(RiskTag(t) for t in raw.get("allowed_tags", base.allowed_tags)),
                float(raw.get("min_confidence", base.min_confidence)))
        return out


class FeaturesMissing(RuntimeError):
    """The feature row a prediction refers to is not stored: a broken causal chain, worth a dead letter."""


class CouncilService(Service):
    NAME = "council"
    settings: CouncilSettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        s = self.settings
        self.council = Council(s.strategies, s.filters(), s.campaign)
        self.default_control = SymbolControl(s.mode, s.threshold, s.solo_strategy)
        if s.solo_strategy not in self.council.names:
            raise ValueError(f"QUORUM_COUNCIL_SOLO_STRATEGY={s.solo_strategy!r} is not a configured strategy")

    def handlers(self) -> dict[str, Handler]:
        return {"council-predictions": self.on_prediction, "council-fills": self.on_fill,
                "council-control": self.on_control}

    # --- loading ----------------------------------------------------------------------------------------
    async def _input(self, ctx: Context, p: PredictionMade) -> StrategyInput:
        series = and_(features.c.exchange == p.exchange, features.c.symbol == p.symbol,
                      features.c.timeframe == p.timeframe, features.c.feature_set == p.feature_set)
        rows = (await ctx.conn.execute(
            select(features.c.ts, features.c.close, features.c["values"]).where(series, features.c.ts <= p.ts)
            .order_by(features.c.ts.desc()).limit(self.council.lookback))).all()
        if not rows or rows[0].ts != p.ts:
            raise FeaturesMissing(f"no {p.feature_set} features for {p.symbol} {p.timeframe} at {p.ts}")
        preds = (await ctx.conn.execute(
            select(predictions.c.model_name, predictions.c.model_version, predictions.c.horizon, predictions.c.p_up)
            .where(predictions.c.exchange == p.exchange, predictions.c.symbol == p.symbol,
                   predictions.c.timeframe == p.timeframe, predictions.c.ts == p.ts)
            .order_by(predictions.c.model_name, predictions.c.model_version))).all()
        views = tuple(PredictionView(r.model_name, r.model_version, r.horizon, r.p_up) for r in preds)
        if not any(v.model_version == p.model_version for v in views):  # the triggering one is always known
            views = (PredictionView(p.model_name, p.model_version, p.horizon, p.p_up), *views)
        return StrategyInput(p.exchange, p.symbol, p.timeframe,
                             tuple(FeatureRow(r.ts, r.close, r[2]) for r in reversed(rows)), views)

    async def _control(self, ctx: Context, exchange: str, symbol: str) -> SymbolControl:
        rows = (await ctx.conn.execute(select(council_controls).where(
            council_controls.c.exchange == exchange, council_controls.c.symbol.in_([symbol, ALL_SYMBOLS])))).all()
        row = next((r for r in rows if r.symbol == symbol), None) or next(iter(rows), None)
        if row is None:
            return self.default_control
        return SymbolControl(CouncilMode(row.mode), row.threshold, row.solo_strategy or self.settings.solo_strategy)

    async def _profile(self, ctx: Context) -> RiskProfile:
        row = (await ctx.conn.execute(select(council_risk_profile.c.profile)
                                      .where(council_risk_profile.c.scope == GLOBAL))).scalar_one_or_none()
        return RiskProfile(row) if row else self.settings.risk_profile

    async def _campaign(self, ctx: Context, exchange: str, symbol: str) -> Campaign:
        row = (await ctx.conn.execute(select(council_campaigns).where(
            council_campaigns.c.exchange == exchange, council_campaigns.c.symbol == symbol).with_for_update())).first()
        if row is None:
            return Campaign()
        fields = dict(row._mapping)
        fields.pop("exchange"), fields.pop("symbol")
        return Campaign(**fields)

    async def _save_campaign(self, ctx: Context, exchange: str, symbol: str, c: Campaign) -> None:
        values = {k: getattr(c, k) for k in council_campaigns.c.keys() if k not in ("exchange", "symbol")}
        await ctx.conn.execute(insert(council_campaigns).values(exchange=exchange, symbol=symbol, **values)
                               .on_conflict_do_update(index_elements=["exchange", "symbol"], set_=values))

    async def _weights(self, ctx: Context) -> dict[str, float] | None:
        if not self.settings.adaptive_weights:
            return None
        rows = (await ctx.conn.execute(select(karma_votes).where(karma_votes.c.outcome_return.is_not(None)))).all()
        scores = scorecard(map(Observation.from_row, rows), by="strategy")
        return adaptive_weights(scores, {s.name: s.weight for s in self.council.strategies},
                                min_samples=self.settings.karma_min_samples)

    # --- handlers ---------------------------------------------------------------------------------------
    async def on_prediction(self, ctx: Context) -> None:
        p: PredictionMade = ctx.message.payload
        if (await ctx.conn.execute(select(decisions.c.decision_id).where(
                decisions.c.exchange == p.exchange, decisions.c.symbol == p.symbol,
                decisions.c.timeframe == p.timeframe, decisions.c.ts == p.ts))).first() is not None:
            return  # one decision per candle: this candle was decided (and announced) already
        disabled = frozenset((await ctx.conn.execute(select(strategy_failures.c.strategy).where(
            strategy_failures.c.exchange == p.exchange, strategy_failures.c.symbol == p.symbol))).scalars())
        campaign = await self._campaign(ctx, p.exchange, p.symbol)
        inp = await self._input(ctx, p)
        inp = StrategyInput(inp.exchange, inp.symbol, inp.timeframe, inp.history, inp.predictions,
                            PositionView(campaign.quantity, campaign.average_cost))
        profile = await self._profile(ctx)
        outcome = self.council.decide(inp, control=await self._control(ctx, p.exchange, p.symbol), profile=profile,
                                      campaign=campaign, disabled=disabled, weights=await self._weights(ctx))
        for failure in outcome.failures:
            await ctx.conn.execute(insert(strategy_failures).values(
                exchange=p.exchange, symbol=p.symbol, strategy=failure.strategy, error=failure.error,
                decision_ts=p.ts).on_conflict_do_nothing())
            ctx.emit(StrategyDisabled(exchange=p.exchange, symbol=p.symbol, strategy=failure.strategy,
                                      error=failure.error), key=f"{ctx.message.event_id}:{failure.strategy}")
        env = ctx.emit(_decision(p, inp, outcome, profile))
        await self._record(ctx, env.event_id, env.payload, outcome, campaign)
        await self._save_campaign(ctx, p.exchange, p.symbol, outcome.campaign)

    async def _record(self, ctx: Context, decision_id: Any, d: DecisionMade, outcome: Outcome,
                      before: Campaign) -> None:
        row = d.model_dump(include={"exchange", "symbol", "timeframe", "mode", "action", "intent", "confidence",
                                    "threshold", "risk_profile", "reason_codes", "model_versions", "feature_set"},
                           mode="json")
        await ctx.conn.execute(insert(decisions).values(
            **row, decision_id=decision_id, ts=d.ts, price=d.price, fraction=d.fraction, stop_loss=d.stop_loss,
            take_profit=d.take_profit, consensus=outcome.consensus.value,
            agreement={k.value: v for k, v in d.agreement.items()},
            client_order_id=client_order_id(decision_id) if d.action is not Action.HOLD else None,
        ).on_conflict_do_nothing())
        if d.votes:
            await ctx.conn.execute(insert(signals).values([
                {**v.model_dump(mode="json", exclude={"action", "stop_loss", "take_profit"}),
                 "action": v.action.value, "stop_loss": v.stop_loss, "take_profit": v.take_profit,
                 "decision_id": decision_id} for v in d.votes]).on_conflict_do_nothing())
        # Conviction is recorded now; it is judged by the campaign it argued about (this entry's, or the open one).
        position_id = before.position_id if before.is_open else (
            str(decision_id) if d.intent is Intent.ENTRY else None)
        convictions = [v for v in d.votes if v.eligible and v.action is not Action.HOLD]
        if convictions:
            await ctx.conn.execute(insert(karma_votes).values([
                {"decision_id": decision_id, "strategy": v.strategy, "producer": v.producer, "exchange": d.exchange,
                 "symbol": d.symbol, "ts": d.ts, "direction": v.action.value, "confidence": v.confidence,
                 "position_id": position_id} for v in convictions]).on_conflict_do_nothing())

    async def on_fill(self, ctx: Context) -> None:
        f: OrderFilled = ctx.message.payload
        origin = (await ctx.conn.execute(select(decisions.c.decision_id, decisions.c.intent).where(
            decisions.c.client_order_id == f.client_order_id))).first()
        # Every change of the symbol's position is the campaign's, whoever placed the order: a protective stop,
        # a take-profit leg, a liquidation, close-all or panic moves it exactly like the council's own orders.
        campaign = await self._campaign(ctx, f.exchange, f.symbol)
        base, _ = split_symbol(f.symbol)
        intent = Intent(origin.intent) if origin is not None else Intent.NONE
        counted = intent if f.is_final or intent is not Intent.TAKE_PROFIT else Intent.NONE
        after, closed = apply_fill(campaign, side=f.side, quantity=f.quantity, price=f.price, fee=f.fee,
                                   fee_in_base=f.fee_currency == base, intent=counted,
                                   decision_id=str(origin.decision_id) if origin is not None else f.client_order_id)
        await self._save_campaign(ctx, f.exchange, f.symbol, after)
        if closed is not None and closed.position_id is not None:
            await ctx.conn.execute(update(karma_votes).where(karma_votes.c.position_id == closed.position_id)
                                   .values(outcome_return=closed.return_, evaluated_at=ctx.clock.now()))

    async def on_control(self, ctx: Context) -> None:
        cmd = ctx.message.payload
        if isinstance(cmd, RiskProfileChanged):
            values = {"scope": GLOBAL, "profile": cmd.profile.value, "updated_by": cmd.actor,
                      "updated_at": ctx.clock.now()}
            await ctx.conn.execute(insert(council_risk_profile).values(values)
                                   .on_conflict_do_update(index_elements=["scope"], set_=values))
            return
        assert isinstance(cmd, SetCouncilMode)
        await self._set_mode(ctx, cmd)

    async def _set_mode(self, ctx: Context, cmd: SetCouncilMode) -> None:
        symbol = cmd.symbol or ALL_SYMBOLS
        current = await self._control(ctx, cmd.exchange, symbol)
        solo = cmd.solo_strategy or current.solo_strategy
        if solo not in self.council.names:
            ctx.emit(ControlRefused(command_type=cmd.event_type(), reason_code="UNKNOWN_STRATEGY",
                                    detail=f"{solo!r} is not one of {sorted(self.council.names)}"))
            return
        control = SymbolControl(cmd.mode, cmd.threshold or current.threshold, solo)
        values = {"mode": control.mode.value, "threshold": control.threshold, "solo_strategy": control.solo_strategy,
                  "updated_by": cmd.actor, "updated_at": ctx.clock.now()}
        await ctx.conn.execute(insert(council_controls).values(exchange=cmd.exchange, symbol=symbol, **values)
                               .on_conflict_do_update(index_elements=["exchange", "symbol"], set_=values))
        if cmd.reenable_strategies:
            scope = strategy_failures.c.exchange == cmd.exchange
            if cmd.symbol:
                scope = and_(scope, strategy_failures.c.symbol == cmd.symbol)
            await ctx.conn.execute(delete(strategy_failures).where(scope))
        ctx.emit(CouncilModeChanged(actor=cmd.actor, reason=cmd.reason, exchange=cmd.exchange, symbol=cmd.symbol,
                                    mode=control.mode, threshold=control.threshold,
                                    solo_strategy=control.solo_strategy))


def _decision(p: PredictionMade, inp: StrategyInput, o: Outcome, profile: RiskProfile) -> DecisionMade:
    votes = tuple(Vote(
        strategy=v.strategy.name, producer=v.strategy.kind.value, risk_tag=v.strategy.risk_tag.value,
        action=v.signal.direction, confidence=v.signal.confidence, weight=v.weight, eligible=v.eligible,
        filtered_reason=v.filtered_reason, stop_loss=v.signal.stop_loss, take_profit=v.signal.take_profit,
        reason_codes=v.signal.reason_codes, metadata=dict(v.signal.metadata),
    ) for v in o.votes)
    return DecisionMade(
        exchange=p.exchange, symbol=p.symbol, timeframe=p.timeframe, ts=p.ts, mode=o.mode, action=o.action,
        intent=o.intent, fraction=o.fraction, confidence=o.confidence, threshold=o.threshold,
        agreement=dict(o.agreement), votes=votes, reason_codes=o.reason_codes, risk_profile=profile,
        model_versions=tuple(sorted({v.model_version for v in inp.predictions})), feature_set=p.feature_set,
        price=inp.close, stop_loss=o.stop_loss, take_profit=o.take_profit, atr=_atr(inp),
    )


def _atr(inp: StrategyInput) -> Decimal | None:
    """The feature set's ATR (the first ``atr_*`` feature), as a price; None while it warms up."""
    name = next((k for k in sorted(inp.current.values) if k.startswith("atr_") and k.count("_") == 1), None)
    value = inp.value(name) if name else None
    return Decimal(repr(value)) if value is not None and value > 0 else None

