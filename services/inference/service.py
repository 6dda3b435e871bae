"""Serves the champion: every feature vector in, one prediction out, tagged with the model's registry name,
version and MLflow run. Watches the served model for drift.

Which model: at start, an operator's pinned ``SelectModel`` choice if one is stored, else the registry's
``<QUORUM_INFERENCE_MODEL_NAME>@champion`` (or, when the stored selection followed another name's champion,
that name's), else the built-in baseline, logged loudly. Every candidate is loaded and checked before it serves:
its feature set and columns against the features service's (``compatibility``) and its age (the version's
creation time against ``QUORUM_INFERENCE_MAX_MODEL_AGE_DAYS``); a refusal is a ``ControlRefused`` with
UNKNOWN_MODEL, MODEL_LOAD_FAILED, INCOMPATIBLE_FEATURES or MODEL_TOO_OLD.

Swaps (``SelectModel``, ``PromoteModel``, ``RollBackModel``) are one attribute assignment after the commit
(``self._serving``), so every feature vector is predicted by exactly one model. The previous model is kept: if
the new one raises on a prediction, that vector is predicted again by the previous one, which goes back into
service (``ModelRolledBack`` with the error, audited as SYSTEM:inference): no prediction lost or doubled.

The ``champion`` alias is moved here, not by the gateway: only after the model loaded and passed the checks, so
the registry never names a champion inference refused (the one inference would load at its next start).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from prometheus_client import Counter, Gauge
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from quorum import telemetry
from quorum.db.tables import features, model_selection, predictions
from quorum.domain.models import DEFAULT_MODEL, MODELS, MomentumBaseline, Predictor, builtin, model_tag, prediction_of
from quorum.events.control import (
    ControlRefused,
    DriftDetected,
    ModelPromoted,
    ModelRolledBack,
    ModelSelected,
    PromoteModel,
    RollBackModel,
    SelectModel,
)
from quorum.events.features import FeaturesComputed
from quorum.events.predictions import PredictionMade
from quorum.indicators.decide import FeaturesConfig
from quorum.indicators.spec import FeatureSetSpec
from quorum.learning.artifacts import Model
from quorum.learning.drift import (
    DRIFT_REFERENCE,
    FEATURE_DRIFT,
    PREDICTION_ERROR,
    DriftLimits,
    DriftMonitor,
    DriftReference,
    Observation,
    Step,
)
from quorum.learning.promotion import CHAMPION
from quorum.learning.registry import ModelVersionInfo, Registry, UnknownModelError
from quorum.learning.serving import SYMBOL_CODE, ServedModel, compatibility
from quorum.learning.settings import RegistrySettings
from quorum.learning.train import NAME_PATTERN, served
from quorum.runtime.audit import active_profile, record_audit
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.times import timeframe_step
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger("quorum.inference")

SCOPE = "global"
SYSTEM = "SYSTEM:inference"
SELECTED, BASELINE = "selected", "baseline"  # with CHAMPION: how the model in service was chosen
"""A version tag holding ``DriftReference.to_json()`` of its training rows; without it the reference is live."""
BASELINE_INPUTS = ("close_over_ema",)
UNKNOWN_MODEL, MODEL_LOAD_FAILED = "UNKNOWN_MODEL", "MODEL_LOAD_FAILED"
INCOMPATIBLE_FEATURES, MODEL_TOO_OLD = "INCOMPATIBLE_FEATURES", "MODEL_TOO_OLD"
NOT_IN_SERVICE, NO_PREVIOUS_MODEL = "NOT_IN_SERVICE", "NO_PREVIOUS_MODEL"

DRIFT_ALERTS = Counter("quorum_drift_detected_total", "DriftDetected alerts raised by inference", ["model", "reason"])
FEATURE_PSI = Gauge("quorum_inference_feature_psi_max", "Largest input-feature PSI over the drift window", ["model"])
ERROR_RATIO = Gauge("quorum_inference_error_ratio", "Rolling MSE of the expected return over the zero-return "
                                                    "predictor's on the same realised returns", ["model"])
MODEL_ROLLBACKS = Counter("quorum_model_rollbacks_total", "Models taken out of service for the one before",
                          ["model", "automatic"])

T = TypeVar("T")


class InferenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_INFERENCE_", extra="ignore", frozen=True)

    http_port: int = 8103
    model_name: str = Field(default="quorum-global", pattern=NAME_PATTERN,
                            description="the registered model whose champion is served")
    max_model_age_days: float = Field(default=0, ge=0, description="refuse versions created longer ago (0: no limit)")
    drift_psi_limit: float = Field(default=0.25, gt=0, description="PSI of any input feature beyond which drift "
                                                                   "is reported (0.25: a major shift)")
    drift_error_limit: float = Field(default=1.5, gt=0, description="rolling MSE over the zero-return predictor's "
                                                                    "beyond which drift is reported")
    drift_window: int = Field(default=500, ge=2, description="latest feature rows compared with the reference")
    drift_error_window: int = Field(default=200, ge=2, description="latest realised returns the error is over")
    drift_reference_rows: int = Field(default=500, ge=2, description="rows served after a swap that make the "
                                                                     "reference when the model carries none")
    drift_bins: int = Field(default=10, ge=2, le=100, description="quantile bins of a live reference")
    drift_reference: Literal["training", "live"] = Field(
        default="training", description="what drift is measured against: the training rows' distribution (stored "
                                        "with the model; the first rows served when it has none), or always the "
                                        "first rows served after a swap")
    drift_cooldown_hours: float = Field(default=24, ge=0, description="candle time between two DriftDetected")

    def drift_limits(self) -> DriftLimits:
        return DriftLimits(psi_limit=self.drift_psi_limit, error_limit=self.drift_error_limit,
                           window=self.drift_window, error_window=self.drift_error_window,
                           reference_rows=max(self.drift_reference_rows, self.drift_bins), bins=self.drift_bins,
                           cooldown=timedelta(hours=self.drift_cooldown_hours))


@dataclass(frozen=True)
class Served:
    """A model in service (or kept to go back to) and how it got there."""

    predictor: Predictor
    source: str  # champion, selected or baseline
    since: datetime
    reference: DriftReference | None = None  # its training distribution, when the version carries one
    created_at: datetime | None = None  # when the registry version was made (None: a built-in)

    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def version(self) -> str:
        return self.predictor.version

    @property
    def run_id(self) -> str | None:
        return self.predictor.run_id

    @property
    def tag(self) -> str:
        return model_tag(self.name, self.version)

    @property
    def registered(self) -> bool:
        return isinstance(self.predictor, ServedModel)

    def inputs(self) -> tuple[str, ...]:
        """The features the model reads (what drift is measured on)."""
        if isinstance(self.predictor, ServedModel):
            return tuple(c for c in self.predictor.model.feature_columns if c != SYMBOL_CODE)
        return BASELINE_INPUTS if isinstance(self.predictor, MomentumBaseline) else ()


@dataclass(frozen=True)
class Serving:
    current: Served
    previous: Served | None
    monitor: DriftMonitor | None


@dataclass(frozen=True)
class Refusal:
    code: str
    detail: str


def _show(serving: Serving) -> None:
    """The model in service as metrics: its identity (info) and age."""
    cur = serving.current
    telemetry.MODEL_INFO.info({"model": cur.name, "version": cur.version, "run_id": cur.run_id or "",
                               "source": cur.source})
    for reason in (FEATURE_DRIFT, PREDICTION_ERROR):
        DRIFT_ALERTS.labels(cur.tag, reason)  # 0 until it drifts: increase() sees the first alert
    for automatic in ("true", "false"):
        MODEL_ROLLBACKS.labels(cur.tag, automatic)
    born = cur.created_at or cur.since
    telemetry.MODEL_AGE.clear()
    telemetry.MODEL_AGE.labels(cur.name).set_function(lambda: (datetime.now(UTC) - born).total_seconds())


class InferenceService(Service):
    NAME = "inference"
    settings: InferenceSettings

    def __init__(self, settings: InferenceSettings, clock: Any = None, *,
                 registry: RegistrySettings | None = None, feature_set: FeatureSetSpec | None = None) -> None:
        super().__init__(settings, clock)
        self.registry_settings = registry or RegistrySettings()
        self.feature_set = feature_set or FeaturesConfig().feature_set
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="inference-registry")  # MLflow calls, one at a time
        self._registry: Registry | None = None
        self._loaded: dict[str, tuple[Model, ModelVersionInfo]] = {}  # "name:version" -> loaded once
        self._serving = self._fresh(self._baseline(self.clock.now()), None)
        self._calibration = Calibration()

    def handlers(self) -> dict[str, Handler]:
        return {"inference-features": self.on_features, "inference-control": self.on_control}

    def health_details(self) -> dict[str, Any]:
        cur = self._serving.current
        return {"model": cur.tag, "run_id": cur.run_id, "source": cur.source, "since": cur.since.isoformat()}

    @property
    def serving(self) -> Serving:
        return self._serving

    @property
    def _serving(self) -> Serving:
        return self._in_service

    @_serving.setter
    def _serving(self, serving: Serving) -> None:
        """Every swap goes through here, so the model metrics always name what serves."""
        self._in_service = serving
        _show(serving)

    # --- start, and after a lost batch ----------------------------------------------------------------------

    async def on_start(self) -> None:
        await self._reload()

    async def on_batch_lost(self) -> None:
        """A lost batch may have rolled back in memory only: serve what the database and the registry say."""
        await self._reload()

    async def on_stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _reload(self) -> None:
        assert self.engine is not None
        async with self.engine.connect() as conn:
            row = await _stored(conn)
        serving = await self._resolve(row)
        cur = serving.current
        self._serving = serving
        if row is None or (row.model_name, row.version, row.source) != (cur.name, cur.version, cur.source):
            previous = f"{row.model_name}@{row.version}" if row is not None else None

            async def record(ctx: Context) -> None:
                await _store(ctx, serving, SYSTEM)
                ctx.emit(ModelSelected(actor=SYSTEM, reason=f"at start: {cur.source}", model_name=cur.name,
                                       version=cur.version, previous=previous),
                         key=("inference-start", cur.tag, cur.source, cur.since.isoformat()))

            await self.transact(record)
        if cur.source == BASELINE:
            log.warning("NO CHAMPION: inference serves the built-in baseline %s (no %s@%s in %s, or it was refused); "
                        "train one (quorum train) and promote it", cur.tag, self.settings.model_name, CHAMPION,
                        self.registry_settings.describe())
        else:
            log.info("inference serves %s (%s, run %s)", cur.tag, cur.source, cur.run_id)

    async def _resolve(self, row: Any) -> Serving:
        """What to serve given the stored selection: a pin, else the champion, else the baseline; and the model
        served before it."""
        now = self.clock.now()
        current: Served | None = None
        if row is not None and row.source == SELECTED:
            got = await self._candidate(row.model_name, row.version, SELECTED, now)
            if isinstance(got, Refusal):
                log.error("the selected model %s:%s cannot be served (%s: %s); falling back to the champion",
                          row.model_name, row.version, got.code, got.detail)
            else:
                current = got
        if current is None:
            name = row.model_name if row is not None and row.source == CHAMPION else self.settings.model_name
            got = await self._champion(name, now)
            if isinstance(got, Refusal):
                log.error("the champion of %s cannot be served (%s: %s)", name, got.code, got.detail)
            elif got is not None:
                current = got
        if current is None:
            current = self._baseline(now)
        if row is not None and (row.model_name, row.version) == (current.name, current.version):
            current = replace(current, since=row.updated_at)
            before = (row.previous_model_name, row.previous_version, row.previous_source)
        else:
            before = (row.model_name, row.version, row.source) if row is not None else (None, None, None)
        previous = None
        if before[0] is not None and before[1] is not None:
            got = await self._candidate(before[0], before[1], before[2] or SELECTED, now)
            previous = None if isinstance(got, Refusal) else got
        return self._fresh(current, previous)

    # --- candidates ---------------------------------------------------------------------------------------------

    def _baseline(self, now: datetime) -> Served:
        return Served(builtin(*DEFAULT_MODEL), BASELINE, now)

    def _fresh(self, current: Served, previous: Served | None) -> Serving:
        inputs = current.inputs()
        monitor = None if not inputs else DriftMonitor(
            inputs, self.settings.drift_limits(), current.reference,
            horizon=current.predictor.horizon)
        return Serving(current, previous, monitor)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Registry work (MLflow: blocking, seconds on first use) off the event loop, one call at a time."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _open(self) -> Registry:
        if self._registry is None:
            self._registry = self.registry_settings.registry()
        return self._registry

    def _load_sync(self, ref: str) -> tuple[Model, ModelVersionInfo]:
        if ref not in self._loaded:
            self._loaded[ref] = self._open().load(ref)
        return self._loaded[ref]

    def _champion_sync(self, name: str) -> str | None:
        """The version the champion alias names (None: no such model or no champion)."""
        try:
            found = self._open().versions(name)
        except UnknownModelError:
            return None
        return next((v.version for v in found if CHAMPION in v.aliases), None)

    def _set_champion_sync(self, name: str, version: str | None) -> None:
        registry = self._open()
        if version is None:
            registry.delete_alias(name, CHAMPION)
        else:
            registry.set_alias(name, CHAMPION, version)

    async def _champion(self, name: str, now: datetime) -> Served | Refusal | None:
        try:
            version = await self._call(self._champion_sync, name)
        except Exception as exc:  # noqa: BLE001 - the registry is away or broken: say so, serve what we can
            return Refusal(MODEL_LOAD_FAILED, f"the registry ({self.registry_settings.describe()}) failed: "
                                              f"{type(exc).__name__}: {exc}")
        return None if version is None else await self._candidate(name, version, CHAMPION, now)

    async def _candidate(self, name: str, version: str, source: str, now: datetime) -> Served | Refusal:
        """The model ready to serve, or why it cannot be."""
        if version in MODELS.get(name, {}):
            return Served(builtin(name, version), source, now)
        try:
            model, info = await self._call(self._load_sync, f"{name}:{version}")
        except UnknownModelError as exc:
            known = sorted(f"{n}@{v}" for n, vs in MODELS.items() for v in vs)
            return Refusal(UNKNOWN_MODEL, f"{name}:{version} is not registered ({exc}); built-in: {known}")
        except Exception as exc:  # noqa: BLE001 - any failure to read the artifact is a refusal, never a crash
            return Refusal(MODEL_LOAD_FAILED, f"{name}:{version} did not load: {type(exc).__name__}: {exc}")
        return self._checked(model, info, source, now)

    def _checked(self, model: Model, info: ModelVersionInfo, source: str, now: datetime) -> Served | Refusal:
        ref = f"{info.name}:{info.version}"
        try:
            predictor = served(model, info)
        except ValueError as exc:
            return Refusal(MODEL_LOAD_FAILED, str(exc))
        reason = compatibility(model, self.feature_set)
        if reason is not None:
            return Refusal(INCOMPATIBLE_FEATURES, f"{ref}: {reason}")
        limit = self.settings.max_model_age_days
        age = now - info.created_at
        if limit > 0 and age > timedelta(days=limit):
            return Refusal(MODEL_TOO_OLD, f"{ref} was created {info.created_at.isoformat()}, "
                                          f"{age.total_seconds() / 86400:.1f} days ago; the limit is {limit:g} days")
        reference = None
        stored = model.extras.get(DRIFT_REFERENCE) or info.tags.get(DRIFT_REFERENCE)
        if stored and self.settings.drift_reference == "training":
            try:
                reference = DriftReference.from_json(stored)
            except ValueError as exc:
                log.warning("%s: its drift reference is unreadable (%s); drift is measured against live rows", ref,
                            exc)
        return Served(predictor, source, now, reference, info.created_at)

    # --- predicting ---------------------------------------------------------------------------------------------

    async def on_features(self, ctx: Context) -> None:
        f: FeaturesComputed = ctx.message.payload
        serving = self._serving
        earlier = await _earlier(ctx.conn, f, serving.current.predictor)
        try:
            started = time.perf_counter()
            made = prediction_of(serving.current.predictor, f, earlier)
            took = time.perf_counter() - started
            ctx.after_commit.append(lambda: telemetry.PREDICTION_SECONDS.labels(made.model_name).observe(took))
        except Exception as exc:  # noqa: BLE001 - the model's failure: the previous one predicts and serves again
            serving, made = await self._fall_back(ctx, serving, exc, f)
        out = ctx.emit(made)
        p = out.payload
        stored = (await ctx.conn.execute(
            insert(predictions).values(
                exchange=p.exchange, symbol=p.symbol, timeframe=p.timeframe, ts=p.ts, model_name=p.model_name,
                model_version=p.model_version, feature_set=p.feature_set, horizon=p.horizon, p_up=p.p_up,
                expected_return=p.expected_return, run_id=p.run_id, position_target=p.position_target,
                event_id=out.event_id,
            ).on_conflict_do_nothing().returning(predictions.c.ts)
        )).first()
        if stored is None:  # this model already predicted this candle (announced then): nothing new to say
            ctx.retract(out)
            return
        await self._watch(ctx, serving, f, p)
        ctx.after_commit.append(lambda: self._calibration.observe(f, p))

    async def _fall_back(self, ctx: Context, serving: Serving, exc: Exception,
                         f: FeaturesComputed) -> tuple[Serving, PredictionMade]:
        broken = serving.current
        restored = serving.previous or self._baseline(ctx.clock.now())
        if restored.tag == broken.tag:
            raise exc  # nothing else to serve: the message is retried, then dead-lettered
        made = prediction_of(restored.predictor, f, await _earlier(ctx.conn, f, restored.predictor))
        error = f"{type(exc).__name__}: {exc}"[:2000]
        log.error("%s failed on %s %s %s (%s): rolling back to %s", broken.tag, f.symbol, f.timeframe,
                  f.ts.isoformat(), error, restored.tag)
        rolled = await self._roll_back(ctx, serving, restored, actor=SYSTEM, reason="the model failed on a prediction",
                                       error=error)
        return rolled or replace(serving, monitor=None), made  # selection changed meanwhile: no drift row

    async def _roll_back(self, ctx: Context, serving: Serving, restored: Served, *, actor: str, reason: str,
                         error: str | None) -> Serving | None:
        """Put ``restored`` back into service (the champion alias follows when it named the model leaving).
        None when, for an automatic rollback, the selection changed meanwhile (nothing rolled back)."""
        broken, automatic = serving.current, error is not None
        row = await _stored(ctx.conn, lock=True)
        if automatic and row is not None and (row.model_name, row.version) != (broken.name, broken.version):
            return None
        source = restored.source
        if broken.registered:
            try:
                if await self._call(self._champion_sync, broken.name) == broken.version:
                    back = restored.version if restored.registered and restored.name == broken.name else None
                    await self._call(self._set_champion_sync, broken.name, back)
                    source = CHAMPION if back is not None else restored.source
            except Exception as exc:  # noqa: BLE001 - serving the good model matters more than the alias
                log.error("rolling back %s: the champion alias could not be moved back: %s", broken.tag, exc)
        rolled = self._fresh(replace(restored, source=source, since=ctx.clock.now()), None)
        await _store(ctx, rolled, actor)
        ctx.emit(ModelRolledBack(actor=actor, reason=reason, model_name=broken.name, version=broken.version,
                                 run_id=broken.run_id, restored=rolled.current.tag, automatic=automatic, error=error))
        if automatic:
            await self._audit(ctx, "model_rollback", "CONFIRMED", {
                "model": broken.tag, "run_id": broken.run_id, "restored": rolled.current.tag, "error": error},
                key=(ctx.message.event_id, "model_rollback"))

        def adopt() -> None:
            if not automatic or self._serving is serving:
                self._serving = rolled
            MODEL_ROLLBACKS.labels(broken.tag, str(automatic).lower()).inc()

        ctx.after_commit.append(adopt)
        return rolled

    async def _watch(self, ctx: Context, serving: Serving, f: FeaturesComputed, p: PredictionMade) -> None:
        """Drift of the served model's inputs and errors; an alert when it crosses the limits."""
        monitor = serving.monitor
        if monitor is None or p.p_up is None:
            return
        step = monitor.observe(Observation(series=(f.exchange, f.symbol, f.timeframe), ts=f.ts,
                                           bar=timeframe_step(f.timeframe), close=float(f.close), values=f.values,
                                           expected_return=p.expected_return))
        cur, limits = serving.current, monitor.limits
        alert = step.alert
        if alert is not None:
            event = DriftDetected(model_name=cur.name, model_version=cur.version, run_id=cur.run_id,
                                  reasons=alert.reasons, at=alert.at, reference=alert.reference, psi=alert.psi,
                                  max_psi=alert.max_psi, psi_limit=limits.psi_limit, error_ratio=alert.error_ratio,
                                  error_limit=limits.error_limit, rows=alert.rows, error_rows=alert.error_rows)
            ctx.emit(event, key=(cur.tag, alert.at.isoformat()))
            await self._audit(ctx, "drift_detected", "DETECTED", event.model_dump(mode="json"),
                              key=(cur.tag, alert.at.isoformat(), "drift"))
            log.warning("drift in %s at %s: %s (max PSI %s, error ratio %s)", cur.tag, alert.at.isoformat(),
                        ", ".join(alert.reasons), alert.max_psi, alert.error_ratio)
        ctx.after_commit.append(lambda: _adopt_step(monitor, step, cur.tag))

    # --- commands -----------------------------------------------------------------------------------------------

    async def on_control(self, ctx: Context) -> None:
        cmd = ctx.message.payload
        if isinstance(cmd, RollBackModel):
            await self._operator_roll_back(ctx, cmd)
            return
        assert isinstance(cmd, SelectModel | PromoteModel)
        promote = isinstance(cmd, PromoteModel)
        if promote and cmd.model_name in MODELS:
            self._refuse(ctx, Refusal(UNKNOWN_MODEL, f"{cmd.model_name} is built in, not in the registry: select "
                                                     "it (SelectModel) instead of promoting it"))
            return
        got = await self._candidate(cmd.model_name, cmd.version, CHAMPION if promote else SELECTED,
                                    ctx.clock.now())
        if isinstance(got, Refusal):
            self._refuse(ctx, got)
            await self._audit_system_command(ctx, cmd, "REFUSED", refusal=got)
            return
        await _stored(ctx.conn, lock=True)  # one swap at a time, in commit order
        serving = self._serving
        before = None
        if promote:
            try:
                before = await self._call(self._champion_sync, got.name)
                await self._call(self._set_champion_sync, got.name, got.version)
            except Exception as exc:  # noqa: BLE001 - the alias is the promotion: no alias, no swap
                self._refuse(ctx, Refusal(MODEL_LOAD_FAILED, f"the champion alias could not be set: {exc}"))
                return
        same = serving.current.tag == got.tag
        new = self._fresh(got, serving.previous if same else serving.current)
        await _store(ctx, new, cmd.actor)
        previous = serving.current.tag
        if isinstance(cmd, PromoteModel):
            ctx.emit(ModelPromoted(actor=cmd.actor, reason=cmd.reason, model_name=got.name, version=got.version,
                                   run_id=got.run_id, previous=previous, previous_champion=before))
        else:
            ctx.emit(ModelSelected(actor=cmd.actor, reason=cmd.reason, model_name=got.name, version=got.version,
                                   previous=previous))
        await self._audit_system_command(ctx, cmd, "CONFIRMED")
        ctx.after_commit.append(lambda: setattr(self, "_serving", new))

    async def _audit_system_command(self, ctx: Context, cmd: SelectModel | PromoteModel, status: str,
                                    refusal: Refusal | None = None) -> None:
        """The outcome of a swap another component asked for (an automatic promotion): an operator's is audited by
        the gateway when the confirmation comes back, a system's has no one else to close it."""
        if not cmd.actor.startswith("SYSTEM:"):
            return
        action = "model_promote" if isinstance(cmd, PromoteModel) else "model_select"
        details = {"model": model_tag(cmd.model_name, cmd.version), "requested_by": cmd.actor, "reason": cmd.reason}
        if refusal is not None:
            details.update(reason_code=refusal.code, detail=refusal.detail[:2000])
        await self._audit(ctx, action, status, details, key=(ctx.message.event_id, action))

    async def _operator_roll_back(self, ctx: Context, cmd: RollBackModel) -> None:
        await _stored(ctx.conn, lock=True)
        serving = self._serving
        if cmd.model_name != serving.current.name:
            self._refuse(ctx, Refusal(NOT_IN_SERVICE, f"inference serves {serving.current.tag}, not {cmd.model_name}"))
        elif serving.previous is None:
            self._refuse(ctx, Refusal(NO_PREVIOUS_MODEL, f"{serving.current.tag} has no model before it to go back "
                                                         "to (promote or select one instead)"))
        else:
            await self._roll_back(ctx, serving, serving.previous, actor=cmd.actor, reason=cmd.reason, error=None)

    def _refuse(self, ctx: Context, refusal: Refusal) -> None:
        ctx.emit(ControlRefused(command_type=ctx.message.event_type, reason_code=refusal.code,
                                detail=refusal.detail[:2000]))

    async def _audit(self, ctx: Context, action: str, status: str, details: dict[str, Any], key: object) -> None:
        await record_audit(ctx, actor=SYSTEM, action=action, mode=self.settings.trading_mode.value,
                           risk_profile=await active_profile(ctx.conn, self.settings.risk_profile.value),
                           status=status, details=details, key=key, chain_key=self.settings.chain_key)


class Calibration:
    """Scores each prediction when its horizon's close is known: P(up) bucket against what happened (in memory:
    a restart loses the predictions still pending, which only delays the metric)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str, str, str], dict[datetime, tuple[float, float]]] = {}

    def observe(self, f: FeaturesComputed, p: PredictionMade) -> None:
        series = (p.model_name, f.exchange, f.symbol, f.timeframe)
        pending = self._pending.setdefault(series, {})
        made = pending.pop(f.ts - p.horizon * timeframe_step(f.timeframe), None)
        close = float(f.close)
        if made is not None and close != made[1]:
            realized = "up" if close > made[1] else "down"
            telemetry.CALIBRATION.labels(p.model_name, telemetry.calibration_bucket(made[0]), realized).inc()
        if p.p_up is not None:
            pending[f.ts] = (p.p_up, close)
            for old in [ts for ts in pending if ts < f.ts - p.horizon * timeframe_step(f.timeframe)]:
                del pending[old]


async def _earlier(conn: AsyncConnection, f: FeaturesComputed, predictor: Predictor) -> list[dict[str, Any]]:
    """The series' feature rows before ``f`` that a windowed model reads, oldest first, from the features table
    (stored before they were published): read per candle, not kept in memory, so a restart, a redelivery or a
    swap mid-stream sees exactly the rows the runner passes."""
    window = getattr(predictor, "window", 1)
    if window <= 1:
        return []
    q = (select(features.c["values"]).where(
        features.c.exchange == f.exchange, features.c.symbol == f.symbol, features.c.timeframe == f.timeframe,
        features.c.feature_set == f.feature_set, features.c.ts < f.ts)
         .order_by(features.c.ts.desc()).limit(window - 1))
    return [dict(r[0]) for r in reversed((await conn.execute(q)).all())]


def _adopt_step(monitor: DriftMonitor, step: Step, tag: str) -> None:
    monitor.commit(step)
    if step.psi_max is not None:
        FEATURE_PSI.labels(tag).set(step.psi_max)
    for feature, psi in (step.psi_by_feature or {}).items():
        telemetry.FEATURE_PSI.labels(tag, feature).set(psi)
    if step.error_ratio is not None:
        ERROR_RATIO.labels(tag).set(step.error_ratio)
    if step.alert is not None:
        for reason in step.alert.reasons:
            DRIFT_ALERTS.labels(tag, reason).inc()


async def _stored(conn: AsyncConnection, *, lock: bool = False) -> Any:
    """The stored selection (locked for the transaction: swaps are applied one at a time)."""
    q = select(model_selection).where(model_selection.c.scope == SCOPE)
    return (await conn.execute(q.with_for_update() if lock else q)).first()


async def _store(ctx: Context, serving: Serving, actor: str) -> None:
    cur, prev = serving.current, serving.previous
    values = {"scope": SCOPE, "model_name": cur.name, "version": cur.version, "run_id": cur.run_id,
              "source": cur.source, "previous_model_name": prev.name if prev else None,
              "previous_version": prev.version if prev else None, "previous_source": prev.source if prev else None,
              "updated_by": actor, "updated_at": cur.since}
    await ctx.conn.execute(insert(model_selection).values(values).on_conflict_do_update(
        index_elements=["scope"], set_=values))
