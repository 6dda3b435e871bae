"""The optimizer end to end over real candles, PostgreSQL, NATS and HTTP: a study (Optuna's storage on the
project's database) whose drawdown limit rejects a candidate proposes its best; an operator approves it through
the gateway in two steps; the council decides with it from its next candle, and again after a restart. A
rejection and, without approval, an activation at once audited as SYSTEM."""

from __future__ import annotations

import argparse
import asyncio
import io
import uuid
from decimal import Decimal
from typing import Any

import pytest
from quorum.backtest import optimize_cli
from quorum.backtest.optimize import OPTUNA_SCHEMA
from quorum.db.engine import create_engine
from quorum.db.tables import audit_log, configurations, decisions, outbox
from quorum.events.control import ActivateCouncilConfiguration
from quorum.risk.profiles import DEFAULT_PROFILES, RiskConfig
from quorum.subjects import subject
from quorum.types import RiskProfile
from sqlalchemy import insert, select, text

from services.gateway.service import GatewayService
from tests.integration.helpers import publish, rows
from tests.integration.test_council_service import _count_is, client, council_service, gateway, prediction, seed
from tests.integration.test_market_data_service import running, until
from tests.support import data_file

pytestmark = pytest.mark.integration

LIMIT_PCT = Decimal("0.5")  # the MEDIUM optimizer drawdown limit here: some candidates of this study go deeper


@pytest.fixture(autouse=True)
def whole_council(monkeypatch: pytest.MonkeyPatch) -> None:
    """The council deciding by consensus (the default is Solo on a 480-bar trend, which 600 candles never get out
    of warm-up for): the study searches the threshold the decisions then show."""
    monkeypatch.setenv("QUORUM_COUNCIL_MODE", "COUNCIL")


@pytest.fixture
def tight_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Risk's configuration with a MEDIUM optimizer drawdown limit the study's candidates straddle."""
    profiles = dict(DEFAULT_PROFILES)
    profiles[RiskProfile.MEDIUM] = profiles[RiskProfile.MEDIUM].model_copy(
        update={"optimizer_max_strategy_drawdown": LIMIT_PCT})
    monkeypatch.setenv("QUORUM_RISK_CONFIG", RiskConfig(profiles=profiles).model_dump_json())


def study_args(url: str, *extra: str, trials: int = 4, study: str = "it-study") -> argparse.Namespace:
    """``quorum optimize`` over 600 real hourly candles (4 folds of 200 train / 100 test bars)."""
    parser = argparse.ArgumentParser()
    optimize_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["optimize", "--data", str(data_file("ohlcv", "binance_BTCUSDT_1h.csv")),
                              "--from", "2021-04-05T00:00", "--to", "2021-04-29T23:00", "--database-url", url,
                              "--trials", str(trials), "--profile", "MEDIUM", "--seed", "0", "--study", study,
                              "--train-bars", "200", "--test-bars", "100", *extra])


async def optimize(args: argparse.Namespace) -> tuple[int, str]:
    """The command line, in a thread of its own (it runs its own event loops)."""
    out = io.StringIO()
    code = await asyncio.to_thread(optimize_cli.run, args, out, io.StringIO())
    return code, out.getvalue()


async def insert_proposal(url: str, overrides: dict[str, Any]) -> uuid.UUID:
    config_id = uuid.uuid4()
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(insert(configurations).values(
            id=config_id, created_by="test", config_hash="0" * 16, overrides=overrides, params={}, status="PROPOSED",
            profile="MEDIUM", metrics={}))
    await engine.dispose()
    return config_id


async def thresholds(url: str) -> list[float]:
    return [r.threshold for r in await rows(url, select(decisions.c.threshold).order_by(decisions.c.ts))]


async def test_a_study_proposes_its_best_an_operator_approves_it_and_the_council_decides_with_it(
        infra: Any, database_url: str, tight_limit: None) -> None:
    code, printed = await optimize(study_args(database_url))
    assert code == 0, printed
    assert "REJECTED: out-of-sample drawdown" in printed and "PROPOSED" in printed

    [row] = await rows(database_url, select(configurations))
    assert row.status == "PROPOSED" and row.profile == "MEDIUM" and row.study == "it-study"
    assert row.metrics["feasible"] and row.metrics["max_drawdown"] <= 0.005 == row.metrics["drawdown_limit"]
    assert row.metrics["score"] == row.metrics["backtest_score"] and row.metrics["live_weight"] == 0.0
    assert row.active_metrics["params"]["threshold"] == 0.4 and row.active_metrics["score"] is not None
    new_threshold = row.overrides["threshold"]
    assert new_threshold == row.params["threshold"] != 0.4
    stored = await rows(database_url, text(f"SELECT t.state, a.value_json FROM {OPTUNA_SCHEMA}.trials t LEFT JOIN "
                                           f"{OPTUNA_SCHEMA}.trial_user_attributes a ON a.trial_id = t.trial_id "
                                           "AND a.key = 'evaluation' ORDER BY t.number"))
    assert len(stored) == 4 and {s.state for s in stored} == {"COMPLETE", "PRUNED"}  # the shared RDB storage

    history = await seed(database_url, 40)
    gw = gateway()
    async with running(council_service(), gw), client(gw) as http:
        await publish(infra, *(prediction(r) for r in history[:20]))
        await until("20 decisions", lambda: _count_is(database_url, decisions, 20))
        listed = (await http.get("/configurations")).json()
        first = await http.post(f"/configurations/{row.id}/approve", json={"reason": "better out of sample"})
        token = first.json()["confirmation_token"]
        approved = await http.post(f"/configurations/{row.id}/approve",
                                   json={"reason": "better out of sample", "confirmation_token": token})
        again = await http.post(f"/configurations/{row.id}/approve", json={"reason": "twice"})
        await publish(infra, *(prediction(r) for r in history[20:]))
        await until("40 decisions", lambda: _count_is(database_url, decisions, 40))
        after = (await http.get("/configurations")).json()
        audit = [(a["action"], a["status"], a["actor"]) for a in (await http.get(
            "/audit", params={"limit": 500})).json()["items"] if a["action"].startswith("configuration_")]

    assert listed["active"] is None and [p["id"] for p in listed["proposed"]] == [str(row.id)]
    side = listed["proposed"][0]
    assert side["metrics"]["score"] == row.metrics["score"] and side["active_metrics"] == row.active_metrics
    assert first.status_code == 202 and "configuration" in first.json()["warning"]
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "CONFIRMED"
    assert approved.json()["confirmation"] == "CouncilConfigurationActivated"
    assert again.status_code == 409 and "ACTIVE" in again.json()["detail"]
    assert after["active"]["id"] == str(row.id) and after["active"]["decided_by"].startswith("USER:")
    assert after["proposed"] == []
    assert await thresholds(database_url) == [0.4] * 20 + [new_threshold] * 20
    used = [r.configuration_id for r in await rows(database_url, select(decisions.c.configuration_id)
                                                   .order_by(decisions.c.ts))]
    assert used == [None] * 20 + [row.id] * 20  # what ``quorum replay`` follows
    assert {("configuration_propose", "PROPOSED", "SYSTEM:optimizer"),
            ("configuration_approve", "PENDING_CONFIRM", after["active"]["decided_by"]),
            ("configuration_approve", "CONFIRMED", after["active"]["decided_by"])} <= set(audit)

    restarted = council_service()
    async with running(restarted):
        assert restarted.params.default_control.threshold == new_threshold  # the ACTIVE row, loaded at start


async def test_a_proposal_is_rejected_on_record_and_without_approval_the_best_is_active_at_once_as_system(
        infra: Any, database_url: str) -> None:
    code, printed = await optimize(study_args(database_url, trials=2, study="it-proposed"))
    assert code == 0, printed
    [proposed] = await rows(database_url, select(configurations.c.id))
    gw: GatewayService = gateway()
    async with running(gw), client(gw) as http:
        rejected = await http.post(f"/configurations/{proposed.id}/reject", json={"reason": "not now"})
        twice = await http.post(f"/configurations/{proposed.id}/reject", json={"reason": "again"})
        unknown = await http.post("/configurations/00000000-0000-0000-0000-000000000000/approve", json={})
        broken = await insert_proposal(database_url, {"threshold": 5})
        unbuildable = await http.post(f"/configurations/{broken}/approve", json={})

    assert rejected.status_code == 200 and rejected.json()["status"] == "REJECTED"
    assert rejected.json()["reason"] == "not now" and rejected.json()["decided_by"].startswith("USER:")
    assert twice.status_code == 409 and unknown.status_code == 404
    assert unbuildable.status_code == 409 and "does not build" in unbuildable.json()["detail"]

    code, printed = await optimize(study_args(database_url, "--no-approval", trials=2, study="it-auto"))
    assert code == 0, printed
    assert "ACTIVE (audited as SYSTEM)" in printed
    active = await rows(database_url, select(configurations).where(configurations.c.status == "ACTIVE"))
    assert len(active) == 1 and active[0].decided_by == "SYSTEM:optimizer"
    audited = await rows(database_url, select(audit_log.c.action, audit_log.c.status, audit_log.c.actor))
    assert ("configuration_activate", "CONFIRMED", "SYSTEM:optimizer") in {tuple(a) for a in audited}
    queued = await rows(database_url, select(outbox.c.service, outbox.c.subject))
    assert ("gateway", subject(ActivateCouncilConfiguration)) in {tuple(q) for q in queued}  # the gateway relays it
