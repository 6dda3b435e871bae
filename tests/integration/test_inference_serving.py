"""Inference serves the champion, over real NATS, PostgreSQL and an MLflow registry holding models trained here with
``quorum.learning.train`` on four months of real BTC and ETH hourly candles: the champion at start with its
lineage on every prediction, a promotion through the gateway under a stream of features with exactly one
prediction per candle, an operator's rollback, an automatic rollback off a model that fails on a prediction,
refusals of an incompatible, unknown or too old model, and drift on a shifted feature distribution."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from quorum.backtest.data import from_files
from quorum.db.tables import audit_log, model_selection, predictions
from quorum.events.base import Payload, decode
from quorum.events.control import (
    ControlRefused,
    DriftDetected,
    ModelPromoted,
    ModelRolledBack,
    PromoteModel,
    RollBackModel,
)
from quorum.events.features import FeaturesComputed
from quorum.events.predictions import PredictionMade
from quorum.indicators import FeatureEngine
from quorum.indicators.decide import features_of
from quorum.indicators.spec import FeatureSetSpec
from quorum.infra.embedded import free_port
from quorum.learning.dataset import DatasetSpec
from quorum.learning.families import Family, ModelSpec, fit
from quorum.learning.registry import ModelVersionInfo, Registry
from quorum.learning.train import FoldPlan, TrainingRequest, train
from quorum.subjects import subject
from sqlalchemy import select

from services.inference.service import InferenceService, InferenceSettings
from tests.integration.helpers import publish, rows
from tests.integration.test_gateway_security import client, gateway
from tests.integration.test_market_data_service import running, until
from tests.integration.test_natural_keys import announced, settled
from tests.integration.test_venue_market_time import send
from tests.support import data_file

pytestmark = pytest.mark.integration

NAME = "quorum-global"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
START, END = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 5, 1, tzinfo=UTC)
STREAM_HOURS = 40  # candles per symbol after the training range, each one FeaturesComputed


@dataclass(frozen=True)
class Trained:
    state: Path  # the registry's state folder: each test serves from a copy of it
    versions: dict[str, ModelVersionInfo]  # good, other, broken, lagged, sequence, policy
    features: tuple[FeaturesComputed, ...]  # the features service's vectors for the candles after training
    before: tuple[FeaturesComputed, ...] = ()  # and for the month before them


SMALL_LSTM = {"window": 6, "hidden_size": 4, "max_epochs": 2, "patience": 1, "batch_size": 1024}


def _request(family: Family, params: dict[str, Any] | None = None, **dataset: Any) -> TrainingRequest:
    return TrainingRequest(model_name=NAME, dataset=DatasetSpec(symbols=SYMBOLS, symbol_feature=True, **dataset),
                           model=ModelSpec(family=family, params=params or {"n_estimators": 20}),
                           folds=FoldPlan(train_days=60, test_days=20, warmup_days=10), strategy_backtest=False)


def _break(registry: Registry, info: ModelVersionInfo) -> None:
    """Swap the version's stored estimator for one fitted on three columns: it loads and passes every check, and
    raises on its first prediction (LightGBM refuses rows of another width)."""
    assert registry.artifact_root is not None
    [path] = [p for p in registry.artifact_root.rglob("estimator.txt") if info.run_id in p.parts]
    rng = np.random.default_rng(0)
    narrow = fit(ModelSpec(family=Family.LIGHTGBM, params={"n_estimators": 2}), rng.normal(size=(50, 3)),
                 rng.normal(size=50), ("x", "y", "z"), "fs-none")
    narrow.estimator.save_model(str(path))


def _stream(candles: list[Any]) -> tuple[tuple[FeaturesComputed, ...], tuple[FeaturesComputed, ...]]:
    """What the features service publishes for the candles: those after training, and the month before them."""
    spec = FeatureSetSpec()
    engines = {s: FeatureEngine(spec) for s in SYMBOLS}
    out = [features_of(engines[c.symbol], c, spec.version) for c in candles]
    return tuple(f for f in out if f.ts >= END), tuple(f for f in out if f.ts < END)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    files = [data_file("ohlcv", f"binance_{s.replace('/', '')}_1h.csv") for s in SYMBOLS]
    candles = from_files(files, now=datetime(2030, 1, 1, tzinfo=UTC), start=START - timedelta(days=1),
                         end=END + timedelta(hours=STREAM_HOURS - 1)).candles
    history = [c for c in candles if c.ts < END]
    state = tmp_path_factory.mktemp("registry")
    registry = Registry.local(state)
    runs = {"good": _request(Family.LIGHTGBM), "other": _request(Family.XGBOOST), "broken": _request(Family.LIGHTGBM),
            "lagged": _request(Family.LIGHTGBM, lags=(1,)), "sequence": _request(Family.LSTM, SMALL_LSTM),
            "policy": _request(Family.SHARPE_POLICY, {"hidden_size": 4, "epochs": 10, "patience": 3})}
    versions = {key: train(req, history, registry, code_version="test").version for key, req in runs.items()}
    _break(registry, versions["broken"])
    registry.set_alias(NAME, "champion", versions["good"].version)
    return Trained(state, versions, *_stream([c for c in candles if c.ts >= END - timedelta(days=30)]))


@pytest.fixture
def registry(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """A copy of the trained registry (aliases start as trained: champion = good) that inference and the gateway
    read through QUORUM_MLFLOW_STATE_DIR."""
    state = tmp_path / "state"
    shutil.copytree(trained.state, state)
    monkeypatch.setenv("QUORUM_MLFLOW_STATE_DIR", str(state))
    yield Registry.local(state)


def _inference(**settings: Any) -> InferenceService:
    return InferenceService(InferenceSettings(http_port=free_port(), **settings))


def _champion(registry: Registry) -> str | None:
    return next((v.version for v in registry.versions(NAME) if "champion" in v.aliases), None)


async def _publish(js: Any, features: Any, *, pause: float = 0.0) -> None:
    for f in features:
        await send(js, f, key=f"features:{f.symbol}:{f.ts.isoformat()}")
        if pause:
            await asyncio.sleep(pause)


async def _per_candle(url: str) -> Counter[tuple[str, datetime]]:
    return Counter((r.symbol, r.ts) for r in await rows(url, select(predictions.c.symbol, predictions.c.ts)))


async def _last(js: Any, cls: type[Payload]) -> Any:
    return decode((await js.get_last_msg("CONTROL", subject(cls))).data).payload


async def _predicted(url: str, n: int) -> bool:
    return sum((await _per_candle(url)).values()) >= n


def _tag(info: ModelVersionInfo) -> str:
    return f"{NAME}@{info.version}"


# --- serving, promotion, rollback ------------------------------------------------------------------------------

async def test_the_champion_serves_from_the_start_and_every_prediction_carries_its_lineage(
        infra: Any, database_url: str, registry: Registry, trained: Trained) -> None:
    good = trained.versions["good"]
    async with running(_inference()):
        await _publish(infra, trained.features[:10])
        await settled(infra, database_url, "inference-features")

    made = await rows(database_url, select(predictions))
    [selection] = await rows(database_url, select(model_selection))
    assert len(made) == 10
    assert {(p.model_name, p.model_version, p.run_id) for p in made} == {(NAME, _tag(good), good.run_id)}
    assert all(p.p_up is not None and p.expected_return is not None for p in made)
    assert (selection.model_name, selection.version, selection.run_id, selection.source) == (
        NAME, good.version, good.run_id, "champion")


async def test_a_promotion_under_a_stream_of_features_loses_and_doubles_no_prediction_and_a_rollback_restores(
        infra: Any, database_url: str, registry: Registry, trained: Trained) -> None:
    good, other = trained.versions["good"], trained.versions["other"]
    features = trained.features
    path = f"/models/{NAME}/versions/{other.version}/promote"
    gw = gateway(control_timeout_s=30)
    async with running(_inference(), gw), client(gw) as api:
        first = await api.post(path, json={"reason": "better direction accuracy"})
        await _publish(infra, features[:20])
        await until("the first predictions", lambda: _predicted(database_url, 10))
        streaming = asyncio.create_task(_publish(infra, features[20:], pause=0.01))
        promoted = await api.post(path, json={"confirmation_token": first.json()["confirmation_token"]})
        await streaming
        await settled(infra, database_url, "inference-features")
        listed = (await api.get("/models")).json()
        status_after_promotion = (await api.get("/status")).json()["model_in_service"]
        rolled = await api.post(f"/models/{NAME}/rollback", json={"reason": "operator's call"})
        refused = await api.post(f"/models/{NAME}/rollback")  # nothing before the restored one
        status_after_rollback = (await api.get("/status")).json()["model_in_service"]

    per_candle = await _per_candle(database_url)
    by_model = Counter(r.model_version for r in await rows(database_url, select(predictions.c.model_version)))
    assert first.status_code == 202 and "confirmation_token" in first.json(), first.text
    assert promoted.status_code == 200 and promoted.json()["confirmation"] == "ModelPromoted", promoted.text
    assert set(per_candle) == {(f.symbol, f.ts) for f in features} and set(per_candle.values()) == {1}
    assert await announced(infra, "PREDICTIONS", PredictionMade) == len(features)
    assert by_model[_tag(good)] >= 10 and by_model[_tag(other)] >= 1  # the swap happened mid-stream
    assert sum(by_model.values()) == len(features)
    event = await _last(infra, ModelPromoted)
    assert (event.version, event.run_id, event.previous, event.previous_champion) == (
        other.version, other.run_id, _tag(good), good.version)
    assert status_after_promotion["version"] == other.version and status_after_promotion["source"] == "champion"
    assert status_after_promotion["previous"] == _tag(good)
    assert {v["version"]: v["aliases"] for v in listed["versions"]}[other.version] == ["champion"]
    assert listed["in_service"]["run_id"] == other.run_id
    assert rolled.status_code == 200 and rolled.json()["confirmation"] == "ModelRolledBack", rolled.text
    assert refused.status_code == 409 and "no model before" in refused.json()["detail"], refused.text
    assert status_after_rollback["version"] == good.version and _champion(registry) == good.version
    audited = {(r.action, r.status) for r in await rows(database_url, select(audit_log.c.action, audit_log.c.status))}
    assert {("model_promote", "PENDING_CONFIRM"), ("model_promote", "REQUESTED"), ("model_promote", "CONFIRMED"),
            ("model_rollback", "REQUESTED"), ("model_rollback", "CONFIRMED"), ("model_rollback", "REFUSED")} <= audited


async def test_a_model_that_fails_on_a_prediction_is_rolled_back_and_that_candle_predicted_once_by_the_previous(
        infra: Any, database_url: str, registry: Registry, trained: Trained) -> None:
    good, broken = trained.versions["good"], trained.versions["broken"]
    inference = _inference()
    async with running(inference):
        await _publish(infra, trained.features[:6])
        await until("the champion's predictions", lambda: _predicted(database_url, 6))
        await publish(infra, PromoteModel(actor="USER:test", model_name=NAME, version=broken.version))
        await until("the broken model in service", lambda: _is_served(inference, broken))
        await _publish(infra, trained.features[6:12])
        await settled(infra, database_url, "inference-features")

    per_candle = await _per_candle(database_url)
    made = await rows(database_url, select(predictions.c.model_version))
    [selection] = await rows(database_url, select(model_selection))
    rolled = await _last(infra, ModelRolledBack)
    audited = await rows(database_url, select(audit_log).where(audit_log.c.action == "model_rollback"))
    assert set(per_candle) == {(f.symbol, f.ts) for f in trained.features[:12]} and set(per_candle.values()) == {1}
    assert {r.model_version for r in made} == {_tag(good)}  # the failing candle too: predicted again, by good
    assert rolled.automatic and rolled.version == broken.version and rolled.restored == _tag(good)
    assert rolled.error is not None and "LightGBMError" in rolled.error
    assert await announced(infra, "CONTROL", ModelRolledBack) == 1
    assert (selection.version, selection.source) == (good.version, "champion") and _champion(registry) == good.version
    assert [(a.actor, a.status) for a in audited] == [("SYSTEM:inference", "CONFIRMED")]


async def _is_served(inference: InferenceService, info: ModelVersionInfo) -> bool:
    return inference.serving.current.version == info.version


async def test_an_incompatible_an_unknown_and_a_too_old_model_are_refused_with_their_reasons(
        infra: Any, database_url: str, registry: Registry, trained: Trained) -> None:
    good, lagged = trained.versions["good"], trained.versions["lagged"]
    inference = _inference()
    async with running(inference):
        await publish(infra, PromoteModel(actor="USER:test", model_name=NAME, version=lagged.version))
        await until("a refusal", lambda: _refusals(infra, 1))
        incompatible = await _last(infra, ControlRefused)
        await publish(infra, PromoteModel(actor="USER:test", model_name=NAME, version="99"))
        await until("a second refusal", lambda: _refusals(infra, 2))
        unknown = await _last(infra, ControlRefused)
        await publish(infra, RollBackModel(actor="USER:test", model_name=NAME))
        await until("a third refusal", lambda: _refusals(infra, 3))
        nothing_before = await _last(infra, ControlRefused)
        served_then = inference.serving.current.tag
    strict = _inference(max_model_age_days=1e-9)  # a millisecond-old model is too old
    async with running(strict):
        served_when_strict = strict.serving.current
        await publish(infra, PromoteModel(actor="USER:test", model_name=NAME, version=good.version))
        await until("a fourth refusal", lambda: _refusals(infra, 4))
        too_old = await _last(infra, ControlRefused)

    assert (incompatible.reason_code, incompatible.command_type) == ("INCOMPATIBLE_FEATURES", "PromoteModel")
    assert "_lag1" in incompatible.detail
    assert unknown.reason_code == "UNKNOWN_MODEL" and "99" in unknown.detail
    assert nothing_before.reason_code == "NO_PREVIOUS_MODEL"
    assert served_then == _tag(good) and _champion(registry) == good.version  # the alias never moved
    assert (served_when_strict.name, served_when_strict.source) == ("baseline-momentum", "baseline")
    assert too_old.reason_code == "MODEL_TOO_OLD" and "limit" in too_old.detail


async def _refusals(js: Any, n: int) -> bool:
    return await announced(js, "CONTROL", ControlRefused) >= n


# --- drift -----------------------------------------------------------------------------------------------------

def _resampled(trained: Trained, n: int, start: datetime, seed: int, shift: float = 0.0) -> list[FeaturesComputed]:
    """``n`` hourly BTC vectors drawn from the real ones (a stationary stream); ``shift`` moves every feature by
    that many of its standard deviations."""
    pool = [f for f in trained.features if f.symbol == "BTC/USDT"]
    names = [k for k, v in pool[0].values.items() if v is not None]
    spread = {k: float(np.std([f.values[k] for f in pool])) or 1.0 for k in names}
    rng = np.random.default_rng(seed)
    out = []
    for i, j in enumerate(rng.integers(0, len(pool), size=n)):
        f = pool[int(j)]
        values = {k: (v + shift * spread[k] if v is not None else None) for k, v in f.values.items()}
        out.append(f.model_copy(update={"ts": start + i * timedelta(hours=1), "values": values}))
    return out


async def test_a_shifted_feature_distribution_raises_one_drift_alert_audited_and_counted(
        infra: Any, database_url: str, registry: Registry, trained: Trained) -> None:
    good = trained.versions["good"]
    t = datetime(2022, 6, 1, tzinfo=UTC)
    stable = _resampled(trained, 120, t, seed=1)
    shifted = _resampled(trained, 60, t + timedelta(hours=120), seed=2, shift=3.0)
    metric = {"model": _tag(good), "reason": "feature_drift"}
    before = REGISTRY.get_sample_value("quorum_drift_detected_total", metric) or 0.0
    drift = {"drift_reference": "live", "drift_reference_rows": 60, "drift_window": 60, "drift_bins": 4,
             "drift_psi_limit": 1.0,
             "drift_error_window": 10_000, "drift_cooldown_hours": 1000}
    async with running(_inference(**drift)):
        await _publish(infra, stable)
        await settled(infra, database_url, "inference-features")
        alerts_while_stable = await announced(infra, "CONTROL", DriftDetected)
        await _publish(infra, shifted)
        await settled(infra, database_url, "inference-features")

    alert = await _last(infra, DriftDetected)
    audited = await rows(database_url, select(audit_log).where(audit_log.c.action == "drift_detected"))
    assert alerts_while_stable == 0
    assert await announced(infra, "CONTROL", DriftDetected) == 1  # the cooldown holds back the rest
    assert alert.reasons == ("feature_drift",) and alert.reference == "live" and alert.max_psi > 1.0
    assert shifted[0].ts <= alert.at <= shifted[-1].ts and alert.rows == 60
    assert (alert.model_name, alert.model_version, alert.run_id) == (NAME, good.version, good.run_id)
    assert [(a.actor, a.status) for a in audited] == [("SYSTEM:inference", "DETECTED")]
    assert REGISTRY.get_sample_value("quorum_drift_detected_total", metric) == before + 1


# --- a sequence model ------------------------------------------------------------------------------------------

async def _store_features(url: str, found: Any) -> None:
    """The features service's rows for these vectors (it stores each before publishing it)."""
    import uuid

    from quorum.db.engine import create_engine
    from quorum.db.tables import features
    from sqlalchemy import insert

    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(insert(features), [{
            "exchange": f.exchange, "symbol": f.symbol, "timeframe": f.timeframe, "ts": f.ts,
            "feature_set": f.feature_set, "close": f.close, "values": f.values, "event_id": uuid.uuid4()}
            for f in found])
    await engine.dispose()


async def test_a_selected_sequence_model_reads_each_series_earlier_rows_and_predicts_as_the_runner_through_a_restart(
        infra: Any, database_url: str, registry: Registry, trained: Trained) -> None:
    from quorum.events.control import SelectModel
    from quorum.learning.artifacts import Windowed
    from quorum.learning.train import served

    lstm = trained.versions["sequence"]
    stream = trained.features[:24]
    await _store_features(database_url, (*trained.before, *trained.features))
    first = _inference()
    async with running(first):
        await publish(infra, SelectModel(actor="USER:test", model_name=NAME, version=lstm.version))
        await until("the LSTM in service", lambda: _is_served(first, lstm))
        await _publish(infra, stream[:12])
        await settled(infra, database_url, "inference-features")
    async with running(_inference()):  # a restart: nothing of the window is kept in memory
        await _publish(infra, stream[12:])
        await settled(infra, database_url, "inference-features")

    made = {(p.symbol, p.ts): p for p in await rows(database_url, select(predictions))}
    model, info = registry.load(f"{NAME}:{lstm.version}")
    predictor = served(model, info)
    seen: dict[str, list[dict[str, Any]]] = {}
    for f in (*trained.before, *trained.features[:24]):  # as the runner passes them: from memory, in order
        earlier = seen.setdefault(f.symbol, [])
        if f in stream:
            got = made[(f.symbol, f.ts)]
            want = predictor.predict_features(f, earlier)
            assert want is not None and (got.expected_return, got.p_up) == want
            assert got.model_version == _tag(lstm) and got.run_id == lstm.run_id
        earlier.append(f.values)
    assert isinstance(model, Windowed) and model.window == SMALL_LSTM["window"] and len(made) == 24


async def test_a_selected_position_policy_publishes_target_positions_and_no_return_prediction(
        infra: Any, database_url: str, registry: Registry, trained: Trained) -> None:
    from quorum.events.control import SelectModel

    policy = trained.versions["policy"]
    inference = _inference()
    async with running(inference):
        await publish(infra, SelectModel(actor="USER:test", model_name=NAME, version=policy.version))
        await until("the policy in service", lambda: _is_served(inference, policy))
        await _publish(infra, trained.features[:8])
        await settled(infra, database_url, "inference-features")

    made = await rows(database_url, select(predictions))
    assert len(made) == 8 and {p.model_version for p in made} == {_tag(policy)}
    assert all(p.p_up is None and p.expected_return is None and 0 <= p.position_target <= 1 for p in made)
    assert len({p.position_target for p in made}) > 1  # it follows the features, not a constant
