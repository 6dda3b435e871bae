"""The trainer service end to end, in-process over real NATS, PostgreSQL and the real gateway, on real BTC/USDT and
ETH/USDT hourly candles stored in the ``candles`` table: a job posted to the gateway runs to DONE with its
progress reported, registers a ``challenger`` in MLflow (a local store in the test's folder) with its promotion
verdict; a running job is canceled; bad requests are refused; a job whose trainer died is taken over."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from quorum.backtest.data import from_files
from quorum.db.engine import create_engine
from quorum.db.tables import audit_log, candles, inbox, training_jobs
from quorum.events import decode
from quorum.events.control import DriftDetected, StartTraining
from quorum.infra.embedded import free_port
from quorum.learning.settings import RegistrySettings
from sqlalchemy import insert, select

from services.trainer.service import TrainerService
from services.trainer.settings import TrainerSettings
from tests.integration.helpers import publish, rows
from tests.integration.test_bus import stream_messages
from tests.integration.test_gateway_security import client, gateway
from tests.integration.test_market_data_service import running, until
from tests.support import data_file

pytestmark = pytest.mark.integration

STORED = (datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 7, 1, tzinfo=UTC))
MODEL = "test-global"


def job_body(end: str = "2022-05-01T00:00:00Z", **kw: Any) -> dict[str, Any]:
    """Two folds of 60 training and 20 test days with the strategy backtest: a few seconds of work."""
    return {"model_name": MODEL, "reason": "integration",
            "dataset": {"symbols": ["BTC/USDT", "ETH/USDT"], "symbol_feature": True, "start": "2022-01-15T00:00:00Z",
                        "end": end},
            "model": {"family": "lightgbm", "task": "classification"},
            "folds": {"train_days": 60, "test_days": 20, "warmup_days": 10}, "strategy_backtest": True, **kw}


@pytest.fixture
def registry_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The trainer's MLflow store: local, in this test's folder."""
    monkeypatch.delenv("QUORUM_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("QUORUM_MLFLOW_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path / "state"


@pytest.fixture
async def stored_candles(infra: Any, database_url: str) -> None:
    """Half a year of real hourly candles of both symbols, as market data stores them."""
    paths = [data_file("ohlcv", f"binance_{s}USDT_1h.csv") for s in ("BTC", "ETH")]
    loaded = from_files(paths, now=datetime.now(UTC), start=STORED[0], end=STORED[1])
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(insert(candles), [{**c.model_dump(include={"exchange", "symbol", "timeframe", "ts", "open",
                                                                       "high", "low", "close", "volume"}),
                                              "event_id": uuid.uuid4()} for c in loaded.candles])
    await engine.dispose()


def trainer(**kw: Any) -> TrainerService:
    return TrainerService(TrainerSettings(http_port=free_port(), **kw))


async def job_row(url: str, job_id: str) -> Any:
    found = await rows(url, select(training_jobs).where(training_jobs.c.id == uuid.UUID(job_id)))
    return found[0] if found else None


async def training_events(js: Any, job_id: str) -> list[Any]:
    """The job's Training* events as the CONTROL stream stored them, in order."""
    found = [decode(m.data) for m in await stream_messages(js, "CONTROL", "quorum.control.>")]
    return [e for e in found if e.event_type.startswith("Training") and str(e.payload.job_id) == job_id]


async def until_status(url: str, job_id: str, status: str, timeout: float = 60.0) -> Any:
    async def finished() -> bool:
        row = await job_row(url, job_id)
        return row is not None and row.status in (status, "DONE", "FAILED", "CANCELED")

    await until(f"job {job_id} to be {status}", finished, timeout=timeout)
    row = await job_row(url, job_id)
    assert row.status == status, (row.status, row.error)
    return row


async def test_a_job_posted_to_the_gateway_reports_progress_and_registers_a_challenger_with_its_verdict(
        infra: Any, database_url: str, stored_candles: None, registry_dir: Path) -> None:
    js = infra
    worker, gw = trainer(), gateway()
    async with running(worker, gw), client(gw) as api:
        posted = await api.post("/controls/training", json=job_body())
        assert posted.status_code == 202, posted.text
        job_id = posted.json()["id"]
        seen: list[float] = []

        async def done() -> bool:  # follow it through the API as an operator would
            job = (await api.get(f"/training/jobs/{job_id}")).json()
            seen.append(job["progress"])
            return job["status"] in ("DONE", "FAILED", "CANCELED")

        await until("the job to finish", done, timeout=90)
        job = (await api.get(f"/training/jobs/{job_id}")).json()
        listed = (await api.get("/training/jobs", params={"status": "DONE"})).json()["items"]
        # The command again (a new message for the same job, as a redelivery elsewhere): a finished job stays so.
        await publish(js, StartTraining(actor="USER:test", job_id=uuid.UUID(job_id), request=job["request"],
                                        reason="again"))
        await until("the repeated command to be handled", lambda: commands_handled(database_url, 2))
        after = (await api.get(f"/training/jobs/{job_id}")).json()

    assert posted.json()["status"] == "QUEUED" and posted.json()["request"]["model_name"] == MODEL
    assert job["status"] == "DONE", job["error"]
    assert seen == sorted(seen) and job["progress"] == 100.0
    assert job["model_name"] == MODEL and job["version"] == "1" and job["claimed_by"] == worker.trainer_id
    result = job["result"]
    assert result["aliases"] == ["challenger"] and result["folds"] == 2
    assert {c["name"] for c in result["verdict"]["checks"]} == {"beats_naive_mse", "beats_champion", "validation_gates"}
    assert set(result["strategy"]) == {"BTC/USDT", "ETH/USDT"}
    assert [j["id"] for j in listed] == [job_id]
    assert after == job

    events = await training_events(js, job_id)
    kinds = [e.event_type for e in events]
    assert kinds[0] == "TrainingStarted" and kinds[-1] == "TrainingCompleted"
    assert kinds.count("TrainingStarted") == 1 and set(kinds[1:-1]) == {"TrainingProgressed"}
    progressed = [e for e in events if e.event_type == "TrainingProgressed"]
    assert [e.payload.percent for e in progressed] == sorted(e.payload.percent for e in progressed)
    gaps = [(b.ingest_time - a.ingest_time).total_seconds() for a, b in zip(progressed, progressed[1:], strict=False)]
    assert all(g >= 0.9 for g in gaps), gaps  # at most once a second
    completed = events[-1].payload
    assert (completed.model_name, completed.version, completed.run_id) == (MODEL, "1", job["run_id"])
    assert completed.verdict == result["verdict"] and completed.promoted is False

    registry = RegistrySettings(state_dir=registry_dir).registry()
    [version] = registry.versions(MODEL)
    assert version.aliases == ("challenger",) and version.run_id == job["run_id"]
    assert version.tags["promotion"].startswith(("passed", "failed"))
    audited = await rows(database_url, select(audit_log.c.actor, audit_log.c.status).where(
        audit_log.c.action == "training"))
    assert [tuple(a) for a in audited] == [(job["created_by"], "REQUESTED")]


async def commands_handled(url: str, n: int) -> bool:
    """The trainers' inbox holds ``n`` commands: their handler ran and committed."""
    return len(await rows(url, select(inbox.c.event_id).where(inbox.c.consumer == "trainer-jobs"))) >= n


async def test_a_running_job_that_is_canceled_stops_and_registers_nothing(
        infra: Any, database_url: str, stored_candles: None, registry_dir: Path) -> None:
    js = infra
    worker, gw = trainer(), gateway()
    async with running(worker, gw), client(gw) as api:
        job_id = (await api.post("/controls/training", json=job_body(end="2022-07-01T00:00:00Z"))).json()["id"]

        async def reporting() -> bool:
            job = (await api.get(f"/training/jobs/{job_id}")).json()
            return job["status"] == "RUNNING" and job["stage"] is not None

        await until("the job to report progress", reporting, timeout=60)
        cancel = await api.post(f"/training/jobs/{job_id}/cancel", json={"reason": "wrong range"})
        row = await until_status(database_url, job_id, "CANCELED")
        late = await api.post(f"/training/jobs/{job_id}/cancel")

    assert cancel.status_code == 202 and cancel.json()["cancel_requested"] is True
    assert row.stage != "done" and row.version is None and row.finished_at is not None
    assert (late.status_code, late.json()["status"]) == (409, "REFUSED") and "CANCELED" in late.json()["detail"]
    kinds = [e.event_type for e in await training_events(js, job_id)]
    assert kinds[0] == "TrainingStarted" and kinds[-1] == "TrainingCanceled" and "TrainingCompleted" not in kinds
    assert RegistrySettings(state_dir=registry_dir).registry().versions() == []


async def test_bad_requests_are_refused_by_the_gateway_naming_the_field_and_by_the_trainer(
        infra: Any, database_url: str) -> None:
    js = infra
    worker, gw = trainer(), gateway()
    async with running(worker, gw), client(gw) as api:
        unknown = await api.post("/controls/training", json={"model": {"family": "xgboost", "params": {"depth": 3}}})
        family = await api.post("/controls/training", json={"model": {"family": "perceptron"}})
        stray = await api.post("/controls/training", json={"epochs": 3})
        job_id = uuid.uuid4()  # a command from elsewhere with a request this build cannot run
        await publish(js, StartTraining(actor="USER:test", job_id=job_id, request={"folds": {"train_days": -1}}))
        row = await until_status(database_url, str(job_id), "FAILED", timeout=30)
        listed = (await api.get("/training/jobs")).json()["items"]

    assert [r.status_code for r in (unknown, family, stray)] == [422, 422, 422]
    assert "model" in unknown.text and "depth" in unknown.text
    assert "family" in family.text and "epochs" in stray.text
    assert "folds.train_days" in row.error
    refused = [decode(m.data).payload for m in await stream_messages(js, "CONTROL", "quorum.control.control_refused")]
    assert [(r.command_type, r.reason_code) for r in refused] == [("StartTraining", "INVALID_TRAINING_REQUEST")]
    assert "folds.train_days" in refused[0].detail
    assert [j["id"] for j in listed] == [str(job_id)]  # nothing queued for the refused posts


async def test_a_job_whose_trainer_died_mid_run_is_taken_over_and_finished(
        infra: Any, database_url: str, stored_candles: None, registry_dir: Path) -> None:
    js = infra
    job_id = uuid.uuid4()
    body = {k: v for k, v in job_body().items() if k != "reason"}
    engine = create_engine(database_url)
    async with engine.begin() as conn:  # what a trainer killed at 40 % leaves: RUNNING, its heartbeat long past
        stale = datetime.now(UTC) - timedelta(minutes=10)
        await conn.execute(insert(training_jobs).values(
            id=job_id, created_at=stale, created_by="USER:test", request=body, status="RUNNING", stage="folds",
            progress=40.0, claimed_by="dead-trainer", heartbeat_at=stale, started_at=stale))
    await engine.dispose()
    worker = trainer(lease_s=30)
    async with running(worker):
        row = await until_status(database_url, str(job_id), "DONE", timeout=90)
        await publish(js, StartTraining(actor="USER:test", job_id=job_id, request=body))  # a late redelivery
        await until("the late command to be handled", lambda: commands_handled(database_url, 1))

    assert row.claimed_by == worker.trainer_id and row.version == "1" and row.progress == 100.0
    events = await training_events(js, str(job_id))
    started = [e.payload for e in events if e.event_type == "TrainingStarted"]
    assert [(s.takeover, s.trainer, s.reason) for s in started] == [(True, worker.trainer_id,
                                                                     "taken over from dead-trainer")]
    assert [e.event_type for e in events].count("TrainingCompleted") == 1
    assert (await job_row(database_url, str(job_id))).finished_at == row.finished_at


async def test_a_trainer_that_stops_mid_job_lets_it_go_and_another_trainer_finishes_it(
        infra: Any, database_url: str, stored_candles: None, registry_dir: Path) -> None:
    js = infra
    first, second, gw = trainer(), trainer(takeover_every_s=0.5), gateway()
    async with running(gw):
        async with running(first), client(gw) as api:
            job_id = (await api.post("/controls/training", json=job_body(end="2022-07-01T00:00:00Z"))).json()["id"]

            async def reporting() -> bool:
                row = await job_row(database_url, job_id)
                return row is not None and row.stage is not None and row.claimed_by == first.trainer_id

            await until("the first trainer to report progress", reporting, timeout=60)
            async with running(second):
                await first.stop()  # mid-job: it lets the job go instead of leaving it to its lease
                row = await until_status(database_url, job_id, "DONE", timeout=90)

    assert row.claimed_by == second.trainer_id and row.version == "1"
    started = [e.payload for e in await training_events(js, job_id) if e.event_type == "TrainingStarted"]
    assert [(s.trainer, s.takeover) for s in started] == [(first.trainer_id, False), (second.trainer_id, True)]


async def test_scheduled_and_drift_retraining_queue_one_system_job_each_through_the_command_path(
        infra: Any, database_url: str, registry_dir: Path) -> None:
    js = infra
    every = {"retrain_every_h": 24, "retrain_on_drift": True, "default_request": {"model_name": MODEL}}
    workers = [trainer(**every), trainer(**every)]  # both try the schedule's slot: one job
    drift = DriftDetected(model_name=MODEL, model_version="1", run_id=None, reasons=("feature_drift",),
                          at=STORED[1], reference="training", psi={"rsi_14": 0.4}, max_psi=0.4, psi_limit=0.25,
                          error_ratio=None, error_limit=1.5, rows=500, error_rows=0)
    async with running(*workers):
        async def jobs_ended(n: int) -> bool:  # no candles are stored: each job fails at once
            found = await rows(database_url, select(training_jobs.c.status))
            return len(found) == n and all(r.status == "FAILED" for r in found)

        await until("the scheduled job", lambda: jobs_ended(1))
        await publish(js, drift)
        await until("the drift job", lambda: jobs_ended(2))

    found = await rows(database_url, select(training_jobs).order_by(training_jobs.c.created_at))
    assert {r.created_by for r in found} == {"SYSTEM:trainer"}
    assert all(r.request["model_name"] == MODEL and "no stored 1h candles" in r.error for r in found)
    audited = await rows(database_url, select(audit_log.c.actor, audit_log.c.details).where(
        audit_log.c.action == "training").order_by(audit_log.c.id))
    assert [(a.actor, a.details["trigger"], a.details["job_id"]) for a in audited] == [
        ("SYSTEM:trainer", "schedule", str(found[0].id)), ("SYSTEM:trainer", "drift", str(found[1].id))]
    commands = [decode(m.data).payload for m in await stream_messages(js, "CONTROL", "quorum.control.start_training")]
    assert sorted(str(c.job_id) for c in commands) == sorted(str(r.id) for r in found)


@pytest.fixture
async def predictable_candles(infra: Any, database_url: str) -> None:
    """Four months of an hourly BTC/USDT close that alternates 100 and 101: the next bar's direction is in the
    current bar's features, so a trained model beats the zero-return predictor out of sample (real prices rarely
    let a test rely on that)."""
    t0 = datetime(2022, 1, 1, tzinfo=UTC)
    values = []
    for i in range(24 * 120):
        close = 101 if i % 2 else 100
        values.append({"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h", "ts": t0 + timedelta(hours=i),
                       "open": 201 - close, "high": 101.2, "low": 99.8, "close": close, "volume": 10 + i % 3,
                       "event_id": uuid.uuid4()})
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(insert(candles), values)
    await engine.dispose()


async def test_a_challenger_that_passes_every_check_is_promoted_automatically_through_inference_audited_as_system(
        infra: Any, database_url: str, predictable_candles: None, registry_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from quorum.events.control import ModelPromoted, PromoteModel

    from services.inference.service import InferenceService, InferenceSettings

    js = infra
    monkeypatch.setenv("QUORUM_LEARNING_AUTO_PROMOTE", "true")
    monkeypatch.setenv("QUORUM_LEARNING_REQUIRE_GATES", "false")  # gates need months of real trading to pass
    body = job_body(end="2022-04-20T00:00:00Z", strategy_backtest=False)
    body["dataset"] = {"symbols": ["BTC/USDT"], "start": "2022-01-25T00:00:00Z", "end": "2022-04-20T00:00:00Z"}
    worker, gw = trainer(), gateway()
    inference = InferenceService(InferenceSettings(http_port=free_port(), model_name=MODEL))
    async with running(worker, inference, gw), client(gw) as api:
        job_id = (await api.post("/controls/training", json=body)).json()["id"]
        row = await until_status(database_url, job_id, "DONE", timeout=90)

        async def served() -> bool:
            return inference.serving.current.version == row.version

        await until("inference to serve the promoted model", served, timeout=60)
        status = (await api.get("/status")).json()

    assert row.result["verdict"]["promote"] is True and row.result["promoted"] is True
    assert row.result["oos"]["mse_vs_naive"] < 1
    control = [decode(m.data) for m in await stream_messages(js, "CONTROL", "quorum.control.>")]
    [asked] = [e.payload for e in control if isinstance(e.payload, PromoteModel)]
    [done] = [e.payload for e in control if isinstance(e.payload, ModelPromoted)]
    assert (asked.actor, asked.model_name, asked.version) == ("SYSTEM:trainer", MODEL, row.version)
    assert done.version == row.version
    [version] = RegistrySettings(state_dir=registry_dir).registry().versions(MODEL)
    assert set(version.aliases) == {"challenger", "champion"}  # moved by inference once it loaded and checked it
    assert status["model_in_service"]["version"] == row.version
    audited = await rows(database_url, select(audit_log.c.actor, audit_log.c.status).where(
        audit_log.c.action == "model_promote"))
    assert sorted(tuple(a) for a in audited) == [("SYSTEM:inference", "CONFIRMED"), ("SYSTEM:trainer", "REQUESTED")]
