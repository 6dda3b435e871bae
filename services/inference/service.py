"""Runs the baseline model on every feature vector. (MLflow-tracked XGBoost/torch models plug in here.)"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict
from quorum.db.tables import predictions
from quorum.domain.models import MomentumBaseline
from quorum.events.features import FeaturesComputed
from quorum.events.predictions import PredictionMade
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from sqlalchemy.dialects.postgresql import insert


class InferenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_INFERENCE_", extra="ignore", frozen=True)

    http_port: int = 8103


class InferenceService(Service):
    NAME = "inference"
    settings: InferenceSettings
    model = MomentumBaseline()

    def handlers(self) -> dict[str, Handler]:
        return {"inference-features": self.on_features}

    async def on_features(self, ctx: Context) -> None:
        f: FeaturesComputed = ctx.message.payload
        p_up = self.model.predict(f.values)
        version = f"{self.model.name}@{self.model.version}"
        out = ctx.emit(PredictionMade(exchange=f.exchange, symbol=f.symbol, timeframe=f.timeframe, ts=f.ts,
                                      model_name=self.model.name, model_version=version, feature_set=f.feature_set,
                                      horizon=self.model.horizon, p_up=p_up))
        await ctx.conn.execute(
            insert(predictions).values(
                exchange=f.exchange, symbol=f.symbol, timeframe=f.timeframe, ts=f.ts, model_name=self.model.name,
                model_version=version, feature_set=f.feature_set, horizon=self.model.horizon, p_up=p_up,
                event_id=out.event_id,
            ).on_conflict_do_nothing()
        )
