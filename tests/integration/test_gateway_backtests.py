"""Backtests through the gateway over real HTTP and PostgreSQL: queued by an operator (audited), run in a worker
process, followed until DONE and read back; a walk-forward's gate reports in ``/gates`` and ``/status``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from quorum.backtest.config import RunnerConfig
from quorum.backtest.optimize import council_overrides, runner_config
from quorum.council.settings import CouncilConfig
from quorum.db.engine import app_database_url, create_engine
from quorum.db.tables import configurations, gate_reports
from quorum.types import RiskProfile
from sqlalchemy import insert, text

from tests.integration.test_gateway_security import client, gateway, mint
from tests.integration.test_market_data_service import running, until
from tests.support import data_file

pytestmark = pytest.mark.integration

SOLO_RSI = {"council": {"mode": "SOLO", "solo_strategy": "rsi"}}
BTC = "binance_BTCUSDT_1h.csv"
FIRST_300 = {"since": "2021-04-05T00:00:00Z", "until": "2021-04-17T11:00:00Z"}  # 300 hourly candles, open times


async def _done(http: Any, backtest_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def finished() -> bool:
        found.update((await http.get(f"/backtests/{backtest_id}")).json())
        return found["status"] in ("DONE", "FAILED")

    await until(f"backtest {backtest_id} to finish", finished, timeout=180)
    return found


async def test_a_backtest_of_a_data_file_is_queued_run_in_a_worker_and_read_back(infra: Any, tmp_path: Path) -> None:
    data = data_file("ohlcv", BTC).parents[1]
    gw = gateway(data_dir=data, backtest_report_dir=tmp_path)
    async with running(gw), client(gw) as admin:
        viewer = await mint(admin, "viewer")
        operator = await mint(admin, "operator")
        async with client(gw, operator) as op, client(gw, viewer) as view:
            queued = await op.post("/backtests", json={"configuration": "solo-rsi", "data_file": BTC,
                                                       "reason": "smoke", **FIRST_300})
            done = await _done(view, queued.json()["id"])
            listed = (await view.get("/backtests")).json()
            refused = await view.post("/backtests", json={"data_file": BTC})
            unknown = [await op.post("/backtests", json=body) for body in (
                {"configuration": "nope", "data_file": BTC}, {"data_file": "binance_NOPEUSDT_1h.csv"},
                {"data_file": "../ohlcv/binance_BTCUSDT_1h.csv"})]  # a name, never a path
            empty = await op.post("/backtests", json={"symbols": ["BTC/USDT"]})  # nothing stored in this database
            empty_done = await _done(view, empty.json()["id"])
            audit = [r for r in (await admin.get("/audit", params={"limit": 500})).json()["items"]
                     if r["action"] == "backtest"]

    assert queued.status_code == 202, queued.text
    assert queued.json()["status"] == "QUEUED" and queued.json()["created_by"] == audit[-1]["actor"]
    assert done["status"] == "DONE", done["error"]
    assert done["config_name"] == "solo-rsi"
    assert done["config_hash"] == RunnerConfig.from_env(**SOLO_RSI).config_hash
    assert done["configuration"]["council"]["mode"] == "SOLO"
    assert done["symbols"] == ["BTC/USDT"] and done["timeframe"] == "1h" and done["source"] == BTC
    assert done["range_start"].startswith("2021-04-05T00:00") and done["range_end"].startswith("2021-04-17T11:00")
    assert done["bars"] == done["metrics"]["bars"] == 300 and done["progress"] == 1.0
    assert done["metrics"]["fills"] > 0 and "sharpe" in done["metrics"] and done["code_version"]
    assert Path(done["report_path"]).is_file() and Path(done["report_path"]).parent.name == done["id"]
    assert [b["id"] for b in listed["items"]] == [done["id"]] and "configuration" not in listed["items"][0]
    assert refused.status_code == 403
    assert [r.status_code for r in unknown] == [404, 404, 422]
    assert empty.status_code == 202 and empty_done["status"] == "FAILED"
    assert "no stored candles" in empty_done["error"]
    statuses = sorted((r["details"]["backtest_id"], r["status"]) for r in audit)
    assert statuses == sorted([(done["id"], "REQUESTED"), (done["id"], "DONE"),
                               (empty_done["id"], "REQUESTED"), (empty_done["id"], "FAILED")])


async def test_a_walk_forward_files_a_gate_report_per_asset_shown_in_gates_and_status(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    data = data_file("ohlcv", BTC).parents[1]
    active = RunnerConfig.from_env().config_hash
    gw = gateway(data_dir=data, backtest_report_dir=tmp_path)
    async with running(gw), client(gw) as admin:
        queued = await admin.post("/backtests", json={
            "data_file": BTC, "since": "2021-04-05T00:00:00Z", "until": "2021-05-04T23:00:00Z",
            "walk_forward": {"train_bars": 200, "test_bars": 100, "embargo_bars": 5}})
        done = await _done(admin, queued.json()["id"])
        engine = create_engine(database_url)
        async with engine.begin() as conn:  # reports from elsewhere (the command line, the learning loop)
            for asset, config_hash in (("SOL/USDT", active), ("ETH/USDT", "0123456789abcdef")):
                await conn.execute(insert(gate_reports).values(asset=asset, config_hash=config_hash, passed=True,
                                                               criteria=[], walk_forward={}))
        await engine.dispose()
        gates = (await admin.get("/gates")).json()
        other = (await admin.get("/gates", params={"config_hash": "0123456789abcdef"})).json()
        status = (await admin.get("/status")).json()
        base = f"/backtests/{done['id']}/report/"
        served = {name: await admin.get(base + name) for name in (
            "", "BTC-USDT/report.html", "BTC-USDT/metrics.json", "../../etc/passwd", "BTC-USDT/nope.html")}
        escaped = await admin.get(base + "..%2F..%2F" + done["id"] + "%2Findex.html")

    assert done["status"] == "DONE", done["error"]
    assert done["walk_forward"]["train_bars"] == 200
    index = Path(done["report_path"])
    assert index.name == "index.html" and index.parent.name == done["id"]
    assert 'href="BTC-USDT/report.html"' in index.read_text() and "failed" in index.read_text()
    assert (index.parent / "BTC-USDT" / "report.html").is_file()
    assert (index.parent / "BTC-USDT" / "metrics.json").is_file()
    assert set(done["metrics"]) == {"BTC/USDT"} and done["progress"] == 1.0
    assert gates["config_hash"] == active == status["config_hash"]
    reports = {r["asset"]: r for r in gates["reports"]}
    assert set(reports) == {"BTC/USDT", "SOL/USDT"}
    btc = reports["BTC/USDT"]
    assert btc["backtest_id"] == done["id"] and btc["passed"] is False  # far fewer than 500 trades
    criteria = {c["name"]: c for c in btc["criteria"]}
    assert criteria["trades"]["threshold"] == 500 and criteria["trades"]["passed"] is False
    assert criteria["sharpe"]["figure"] == done["metrics"]["BTC/USDT"]["sharpe"]
    assert criteria["max_drawdown"]["threshold"] == 0.15 and criteria["max_drawdown"]["op"] == "<="
    assert [f["test_start"][:13] for f in btc["walk_forward"]["folds"]][:2] == ["2021-04-13T13", "2021-04-17T17"]
    assert [r["asset"] for r in other["reports"]] == ["ETH/USDT"]
    assert status["gates"] == {"BTC/USDT": "failed", "ETH/USDT": "no gate report", "SOL/USDT": "passed"}
    # the reports are served from the backtest's own folder, and from nowhere else
    assert served[""].status_code == 200 and 'href="BTC-USDT/report.html"' in served[""].text
    assert served["BTC-USDT/report.html"].headers["content-type"].startswith("text/html")
    assert served["BTC-USDT/metrics.json"].status_code == 200
    assert [served[n].status_code for n in ("../../etc/passwd", "BTC-USDT/nope.html")] == [404, 404]
    assert escaped.status_code == 404


@pytest.mark.parametrize("statement", ["DELETE FROM backtests", "TRUNCATE backtests",
                                       "UPDATE gate_reports SET passed = true", "DELETE FROM gate_reports",
                                       "TRUNCATE gate_reports"])
async def test_the_service_login_role_may_append_gate_reports_but_never_rewrite_them_nor_delete_backtests(
        database_url: str, statement: str) -> None:
    engine = create_engine(app_database_url(database_url))
    try:
        async with engine.begin() as conn:  # what the gateway does: queue and update a run, file its reports
            await conn.execute(text("INSERT INTO backtests (id, created_by, config_name, config_hash, configuration, "
                                    "source, symbols, code_version, status) VALUES (gen_random_uuid(), 'op', "
                                    "'active', 'h', '{}', 'candles', '[]', 'v', 'QUEUED')"))
            await conn.execute(text("UPDATE backtests SET status = 'DONE', progress = 1"))
            await conn.execute(text("INSERT INTO gate_reports (asset, config_hash, passed, criteria, walk_forward) "
                                    "VALUES ('BTC/USDT', 'h', false, '[]', '{}')"))
        with pytest.raises(Exception, match="permission denied"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def test_an_active_optimizer_configuration_is_what_status_gates_and_an_active_backtest_refer_to(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    overrides = council_overrides(CouncilConfig(), {"threshold": 0.31})
    active_hash = runner_config(overrides, RiskProfile.MEDIUM).config_hash
    engine = create_engine(database_url)
    async with engine.begin() as conn:  # what an operator's approval leaves (test_optimizer_approval does it live)
        config_id = (await conn.execute(insert(configurations).values(
            id=uuid.uuid4(), created_by="optimizer", config_hash=active_hash, overrides=overrides,
            params={"threshold": 0.31}, status="ACTIVE", profile="MEDIUM", metrics={})
            .returning(configurations.c.id))).scalar_one()
    await engine.dispose()
    gw = gateway(data_dir=data_file("ohlcv", BTC).parents[1], backtest_report_dir=tmp_path)
    async with running(gw), client(gw) as admin:
        queued = await admin.post("/backtests", json={
            "configuration": "active", "data_file": BTC, "since": "2021-04-05T00:00:00Z",
            "until": "2021-05-04T23:00:00Z", "walk_forward": {"train_bars": 200, "test_bars": 100}})
        done = await _done(admin, queued.json()["id"])
        by_id = await admin.post("/backtests", json={"configuration": str(config_id), "data_file": BTC, **FIRST_300})
        missing = await admin.post("/backtests", json={"configuration": str(uuid.uuid4()), "data_file": BTC})
        gates = (await admin.get("/gates")).json()
        status = (await admin.get("/status")).json()

    assert active_hash != RunnerConfig.from_env().config_hash
    assert done["status"] == "DONE", done["error"]
    assert done["config_name"] == str(config_id) and done["config_hash"] == active_hash
    assert done["configuration"]["council"]["threshold"] == 0.31
    assert by_id.status_code == 202 and by_id.json()["config_hash"] == active_hash
    assert missing.status_code == 404
    assert status["config_hash"] == gates["config_hash"] == active_hash
    assert [r["asset"] for r in gates["reports"]] == ["BTC/USDT"]
    assert status["gates"]["BTC/USDT"] == "failed"
