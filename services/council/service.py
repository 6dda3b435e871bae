"""Adapter around ``quorum.council``: loads what the council needs for one candle from the database (feature
history, predictions, per-symbol controls, the active risk profile, the campaign, disabled strategies), asks
the pure council for an outcome, and records it voter by voter in one transaction with the decision event.

Every fill of a symbol folds into its campaign (the council's own orders, protective legs, liquidations);
when a campaign closes, every conviction cast about it is scored (karma). State lives only in the database,
so a restart changes nothing.

An approved optimizer configuration (``ActivateCouncilConfiguration``, its ``configurations`` row ACTIVE) replaces
the settings' threshold, strategies and campaign parameters: the council decides with ``CouncilConfig`` plus its
overrides, as the optimizer scored it, and loads the ACTIVE row again when it starts. Each decision names the
configuration it was made with (``decisions.configuration_id``), so a replay decides each candle as it was.
Operators' per-symbol controls (``council_controls``) still win over its default threshold, as over the settings'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from pydantic import Field
from quorum import telemetry
from quorum.council import decide as council_decide
from quorum.council.base import FeatureRow, PredictionView, StrategyInput
from quorum.council.campaign import Campaign
from quorum.council.decide import CouncilBook, CouncilParams, Origin
from quorum.council.engine import Council, Filtered, Outcome, SymbolControl
from quorum.council.karma import Observation, adaptive_weights, scorecard
from quorum.council.settings import CouncilConfig
from quorum.db.tables import (
    configurations,
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
from quorum.events.control import (
    ActivateCouncilConfiguration,
    ControlRefused,
    CouncilConfigurationActivated,
    CouncilModeChanged,
    SetCouncilMode,
)
from quorum.events.fills import OrderFilled
from quorum.events.predictions import PredictionMade
from quorum.events.signals import DecisionMade
from quorum.ids import client_order_id
from quorum.runtime.handling import Context, Handler
from quorum.runtime.outcomes import emit_outcome
from quorum.runtime.service import Service
from quorum.types import Action, CouncilMode, Intent, RiskProfile
from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert

ALL_SYMBOLS = "*"
GLOBAL = "global"
log = logging.getLogger(__name__)


class CouncilSettings(CouncilConfig):
    http_port: int = 8104
    karma_metrics_s: float = Field(default=30.0, gt=0, description="seconds between refreshes of the karma gauges")


class FeaturesMissing(RuntimeError):
    """The feature row a prediction refers to is not stored: a broken causal chain, worth a dead letter."""


class CouncilService(Service):
    NAME = "council"
    settings: CouncilSettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.params = self.settings.params()
        self.configuration_id: Any = None  # the ACTIVE configuration's row the params come from (None: settings)

    def council_params(self, council: Council, control: SymbolControl) -> CouncilParams:
        """Other strategies or a default control than the settings say (tests)."""
        return CouncilParams(council, control, self.settings.risk_profile)

    @property
    def council(self) -> Council:
        return self.params.council

    async def on_start(self) -> None:
        """Decide with the ACTIVE configuration, if an operator (or the optimizer) made one active."""
        assert self.engine is not None
        for strategy in self.council.strategies:  # 0 from the start, per strategy and filter
            for reason in (Filtered.TAG_NOT_ALLOWED, Filtered.BELOW_MIN_CONFIDENCE, Filtered.REGIME_EXCLUDED):
                telemetry.VOTES_FILTERED.labels(strategy.name, reason)
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(configurations.c.id, configurations.c.overrides)
                                      .where(configurations.c.status == "ACTIVE"))).first()
        if row is None:
            return
        try:
            self.params = CouncilConfig(**row.overrides).params()
            self.configuration_id = row.id
        except ValueError:  # the settings it was built on changed under it: say so, decide with the settings
            log.exception("the ACTIVE configuration %s does not build under these settings; deciding with the "
                          "settings", row.id)
        else:
            log.info("deciding with the ACTIVE configuration %s", row.id)

    async def _activate(self, ctx: Context, cmd: ActivateCouncilConfiguration) -> None:
        """The row is the truth (it became ACTIVE with the command): a command whose row is no longer ACTIVE (a
        later one superseded it) is refused, so a late redelivery never undoes the newer choice."""
        found = (await ctx.conn.execute(select(configurations.c.status)
                                        .where(configurations.c.id == cmd.configuration_id))).scalar_one_or_none()
        refused = None
        if found != "ACTIVE":
            refused = ("NOT_ACTIVE", f"configuration {cmd.configuration_id} is {found or 'unknown'}, not ACTIVE")
        else:
            try:
                params = CouncilConfig(**cmd.overrides).params()
            except ValueError as exc:
                refused = ("INVALID_CONFIGURATION", " ".join(str(exc).split())[:500])
        if refused is not None:
            ctx.emit(ControlRefused(command_type=cmd.event_type(), reason_code=refused[0], detail=refused[1]))
            return
        def adopt() -> None:
            self.params, self.configuration_id = params, cmd.configuration_id

        ctx.after_commit.append(adopt)
        ctx.emit(CouncilConfigurationActivated(actor=cmd.actor, reason=cmd.reason,
                                               configuration_id=cmd.configuration_id, config_hash=cmd.config_hash))

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
            select(predictions.c.model_name, predictions.c.model_version, predictions.c.horizon, predictions.c.p_up,
                   predictions.c.position_target, predictions.c.expected_return)
            .where(predictions.c.exchange == p.exchange, predictions.c.symbol == p.symbol,
                   predictions.c.timeframe == p.timeframe, predictions.c.ts == p.ts)
            .order_by(predictions.c.model_name, predictions.c.model_version))).all()
        views = tuple(PredictionView(r.model_name, r.model_version, r.horizon, r.p_up, r.position_target,
                                     r.expected_return) for r in preds)
        if not any(v.model_version == p.model_version for v in views):  # the triggering one is always known
            views = (PredictionView(p.model_name, p.model_version, p.horizon, p.p_up, p.position_target,
                                    p.expected_return), *views)
        return StrategyInput(p.exchange, p.symbol, p.timeframe,
                             tuple(FeatureRow(r.ts, r.close, r[2]) for r in reversed(rows)), views)

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

    def tasks(self) -> list[Any]:
        return [self._show_karma]

    async def _show_karma(self) -> None:
        """Every ``karma_metrics_s``: each strategy's karma hit rate as a gauge (NaN until it has scored votes)."""
        assert self.engine is not None
        while not self.stopping.is_set():
            try:
                async with self.engine.connect() as conn:
                    rows = (await conn.execute(select(karma_votes).where(
                        karma_votes.c.outcome_return.is_not(None)))).all()
                scores = scorecard(map(Observation.from_row, rows), by="strategy")
                for strategy in {s.name for s in self.council.strategies} | set(scores):
                    rate = scores[strategy].hit_rate if strategy in scores else None
                    telemetry.KARMA.labels(strategy).set(math.nan if rate is None else rate)
            except Exception as exc:  # noqa: BLE001 - a database blip must not stop the metric
                log.warning("karma metrics not refreshed (%s)", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.settings.karma_metrics_s)

    async def _weights(self, ctx: Context) -> dict[str, float] | None:
        if not self.settings.adaptive_weights:
            return None
        rows = (await ctx.conn.execute(select(karma_votes).where(karma_votes.c.outcome_return.is_not(None)))).all()
        scores = scorecard(map(Observation.from_row, rows), by="strategy")
        return adaptive_weights(scores, {s.name: s.weight for s in self.council.strategies},
                                min_samples=self.settings.karma_min_samples)

    # --- handlers: load -> decide -> save + emit -------------------------------------------------------------
    async def _book(self, ctx: Context, exchange: str, symbol: str, coid: str | None = None) -> CouncilBook:
        """The slice of the council's book a message about ``symbol`` needs."""
        campaign = await self._campaign(ctx, exchange, symbol)
        rows = (await ctx.conn.execute(select(council_controls).where(
            council_controls.c.exchange == exchange, council_controls.c.symbol.in_([symbol, ALL_SYMBOLS])))).all()
        controls = {(exchange, r.symbol): SymbolControl(CouncilMode(r.mode), r.threshold,
                                                        r.solo_strategy or self.settings.solo_strategy) for r in rows}
        disabled = frozenset((await ctx.conn.execute(select(strategy_failures.c.strategy).where(
            strategy_failures.c.exchange == exchange, strategy_failures.c.symbol == symbol))).scalars())
        origins = {}
        if coid is not None:
            origin = (await ctx.conn.execute(select(decisions.c.decision_id, decisions.c.intent).where(
                decisions.c.client_order_id == coid))).first()
            if origin is not None:
                origins[coid] = Origin(origin.decision_id, Intent(origin.intent))
        profile = (await ctx.conn.execute(select(council_risk_profile.c.profile)
                                          .where(council_risk_profile.c.scope == GLOBAL))).scalar_one_or_none()
        return CouncilBook(campaigns={(exchange, symbol): campaign}, controls=controls,
                           profile=RiskProfile(profile) if profile else None,
                           disabled={(exchange, symbol): disabled} if disabled else {}, origins=origins)

    async def on_prediction(self, ctx: Context) -> None:
        p: PredictionMade = ctx.message.payload
        if (await ctx.conn.execute(select(decisions.c.decision_id).where(
                decisions.c.exchange == p.exchange, decisions.c.symbol == p.symbol,
                decisions.c.timeframe == p.timeframe, decisions.c.ts == p.ts))).first() is not None:
            return  # one decision per candle: this candle was decided (and announced) already
        book = await self._book(ctx, p.exchange, p.symbol)
        out = council_decide.on_prediction(book, p, await self._input(ctx, p), ctx.message.event_id, self.params,
                                           await self._weights(ctx))
        emitted = dict((id(e), env) for e, env in await emit_outcome(ctx, out, chain_key=self.settings.chain_key))
        for record in out.records:
            if isinstance(record, council_decide.StrategyFailed):
                await ctx.conn.execute(insert(strategy_failures).values(
                    exchange=record.exchange, symbol=record.symbol, strategy=record.strategy, error=record.error,
                    decision_ts=record.decision_ts).on_conflict_do_nothing())
            elif isinstance(record, council_decide.DecisionRecorded):
                env = emitted[id(record.decision)]
                await self._record(ctx, env.event_id, env.payload, record.outcome, record.campaign_before)
        await self._save_campaign(ctx, p.exchange, p.symbol, out.state.campaign(p.exchange, p.symbol))

    async def _record(self, ctx: Context, decision_id: Any, d: DecisionMade, outcome: Outcome,
                      before: Campaign) -> None:
        row = d.model_dump(include={"exchange", "symbol", "timeframe", "mode", "action", "intent", "confidence",
                                    "threshold", "risk_profile", "reason_codes", "model_versions", "feature_set",
                                    "regime"},
                           mode="json")
        await ctx.conn.execute(insert(decisions).values(
            **row, decision_id=decision_id, ts=d.ts, price=d.price, fraction=d.fraction, stop_loss=d.stop_loss,
            take_profit=d.take_profit, consensus=outcome.consensus.value,
            agreement={k.value: v for k, v in d.agreement.items()},
            client_order_id=client_order_id(decision_id) if d.action is not Action.HOLD else None,
            configuration_id=self.configuration_id,
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
        out = council_decide.on_fill(await self._book(ctx, f.exchange, f.symbol, f.client_order_id), f)
        await self._save_campaign(ctx, f.exchange, f.symbol, out.state.campaign(f.exchange, f.symbol))
        for record in out.records:
            assert isinstance(record, council_decide.CampaignClosed)
            await ctx.conn.execute(update(karma_votes).where(karma_votes.c.position_id == record.closed.position_id)
                                   .values(outcome_return=record.closed.return_, evaluated_at=ctx.clock.now()))

    async def on_control(self, ctx: Context) -> None:
        cmd = ctx.message.payload
        if isinstance(cmd, ActivateCouncilConfiguration):
            await self._activate(ctx, cmd)
            return
        exchange = getattr(cmd, "exchange", "")
        symbol = getattr(cmd, "symbol", None) or ALL_SYMBOLS
        before = await self._book(ctx, exchange, symbol)
        out = council_decide.on_control(before, cmd, self.params)
        if out.state.profile != before.profile and out.state.profile is not None:
            values = {"scope": GLOBAL, "profile": out.state.profile.value, "updated_by": cmd.actor,
                      "updated_at": ctx.clock.now()}
            await ctx.conn.execute(insert(council_risk_profile).values(values)
                                   .on_conflict_do_update(index_elements=["scope"], set_=values))
        if isinstance(cmd, SetCouncilMode) and out.events and isinstance(out.events[0].payload, CouncilModeChanged):
            control = out.state.controls[(exchange, symbol)]
            values = {"mode": control.mode.value, "threshold": control.threshold,
                      "solo_strategy": control.solo_strategy, "updated_by": cmd.actor, "updated_at": ctx.clock.now()}
            await ctx.conn.execute(insert(council_controls).values(exchange=exchange, symbol=symbol, **values)
                                   .on_conflict_do_update(index_elements=["exchange", "symbol"], set_=values))
            if cmd.reenable_strategies:
                scope = strategy_failures.c.exchange == cmd.exchange
                if cmd.symbol:
                    scope = and_(scope, strategy_failures.c.symbol == cmd.symbol)
                await ctx.conn.execute(delete(strategy_failures).where(scope))
        await emit_outcome(ctx, out, chain_key=self.settings.chain_key)
