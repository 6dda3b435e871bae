"""Runs the selected model on every feature vector. Models come from a registry of name -> version ->
model; the selection is stored (``model_selection``) and changed only by an operator's ``SelectModel``.
(MLflow-tracked XGBoost/torch models register here; training is not available in this build and a
``StartTraining`` is refused with a reason.)"""

from __future__ import annotations

from typing import Any

from pydantic_settings import SettingsConfigDict
from quorum.db.tables import model_selection, predictions
from quorum.domain.models import DEFAULT_MODEL, MODELS, builtin, prediction_of
from quorum.events.control import ControlRefused, ModelSelected, SelectModel, StartTraining
from quorum.events.features import FeaturesComputed
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

REGISTRY: dict[str, dict[str, Any]] = MODELS
DEFAULT = DEFAULT_MODEL
SCOPE = "global"


class InferenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_INFERENCE_", extra="ignore", frozen=True)

    http_port: int = 8103


class InferenceService(Service):
    NAME = "inference"
    settings: InferenceSettings

    def handlers(self) -> dict[str, Handler]:
        return {"inference-features": self.on_features, "inference-control": self.on_control}

    async def _selected(self, ctx: Context) -> tuple[str, str]:
        row = (await ctx.conn.execute(select(model_selection.c.model_name, model_selection.c.version).where(
            model_selection.c.scope == SCOPE))).first()
        return (row.model_name, row.version) if row else DEFAULT

    async def on_features(self, ctx: Context) -> None:
        f: FeaturesComputed = ctx.message.payload
        name, version = await self._selected(ctx)
        out = ctx.emit(prediction_of(builtin(name, version), f))
        p = out.payload
        stored = (await ctx.conn.execute(
            insert(predictions).values(
                exchange=p.exchange, symbol=p.symbol, timeframe=p.timeframe, ts=p.ts, model_name=p.model_name,
                model_version=p.model_version, feature_set=p.feature_set, horizon=p.horizon, p_up=p.p_up,
                expected_return=p.expected_return, run_id=p.run_id, event_id=out.event_id,
            ).on_conflict_do_nothing().returning(predictions.c.ts)
        )).first()
        if stored is None:  # this model already predicted this candle (announced then): nothing new to say
            ctx.retract(out)

    async def on_control(self, ctx: Context) -> None:
        cmd = ctx.message.payload
        if isinstance(cmd, StartTraining):
            ctx.emit(ControlRefused(command_type=cmd.event_type(), reason_code="TRAINING_UNAVAILABLE",
                                    detail="this build has no training pipeline; register a trained model instead"))
            return
        assert isinstance(cmd, SelectModel)
        if cmd.version not in REGISTRY.get(cmd.model_name, {}):
            known = sorted(f"{n}@{v}" for n, vs in REGISTRY.items() for v in vs)
            ctx.emit(ControlRefused(command_type=cmd.event_type(), reason_code="UNKNOWN_MODEL",
                                    detail=f"{cmd.model_name}@{cmd.version} is not registered; known: {known}"))
            return
        previous = "@".join(await self._selected(ctx))
        values = {"scope": SCOPE, "model_name": cmd.model_name, "version": cmd.version, "updated_by": cmd.actor,
                  "updated_at": ctx.clock.now()}
        await ctx.conn.execute(insert(model_selection).values(values).on_conflict_do_update(
            index_elements=["scope"], set_=values))
        ctx.emit(ModelSelected(actor=cmd.actor, reason=cmd.reason, model_name=cmd.model_name, version=cmd.version,
                               previous=previous))
