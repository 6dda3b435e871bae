"""The council service over real NATS and PostgreSQL: its decisions equal the pure council's over the same
history; operators switch modes and profiles through the gateway; a failing strategy is contained; fills
fold into a campaign whose close scores every conviction cast about it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from quorum.council.base import FeatureRow, PredictionView, RiskTag, StrategyInput
from quorum.council.engine import Council, SymbolControl
from quorum.council.settings import CouncilConfig
from quorum.council.simulate import feature_history
from quorum.council.strategies import default_strategies
from quorum.db.engine import create_engine
from quorum.db.tables import (
    audit_log,
    council_campaigns,
    council_risk_profile,
    decisions,
    features,
    karma_votes,
    predictions,
    signals,
    strategy_failures,
)
from quorum.domain.models import MomentumBaseline
from quorum.events.fills import OrderFilled
from quorum.events.predictions import PredictionMade
from quorum.indicators import FeatureSetSpec
from quorum.infra.embedded import free_port
from quorum.marketdata.files import read_rows
from quorum.types import Action, CouncilMode, Liquidity, RiskProfile, Side, TradingMode
from sqlalchemy import func, insert, select

from services.council.service import CouncilService, CouncilSettings
from services.gateway.service import GatewayService, GatewaySettings
from services.risk.service import RiskService, RiskSettings
from tests.council_scripts import FlipFlop, Raising
from tests.integration.helpers import publish, rows
from tests.integration.test_market_data_service import running, until
from tests.support import data_file

pytestmark = pytest.mark.integration

TOKEN = "council-test-token-0123"
SPEC = FeatureSetSpec()
MODEL = MomentumBaseline()
SERIES = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h"}


# --- fixtures as functions: seed the features a prediction refers to, then publish the predictions -------------

async def seed(url: str, n: int) -> list[FeatureRow]:
    """Store ``n`` real feature rows and their baseline predictions, as features and inference would."""
    history = feature_history(read_rows(data_file("ohlcv", "binance_BTCUSDT_1h.csv")).head(n), SPEC)
    engine = create_engine(url)
    async with engine.begin() as conn:
        for r in history:
            await conn.execute(insert(features).values(**SERIES, ts=r.ts, feature_set=SPEC.version, close=r.close,
                                                       values=r.values, event_id=new_id(r.ts)))
            await conn.execute(insert(predictions).values(
                **SERIES, ts=r.ts, model_name=MODEL.name, model_version=version(), feature_set=SPEC.version,
                horizon=1, p_up=MODEL.predict(r.values), event_id=new_id(r.ts, "p")))
    await engine.dispose()
    return history


def version() -> str:
    return f"{MODEL.name}@{MODEL.version}"


def new_id(ts: datetime, tag: str = "f") -> Any:
    from quorum.ids import stable_uuid

    return stable_uuid("test", tag, ts.isoformat())


def prediction(row: FeatureRow) -> PredictionMade:
    return PredictionMade(**SERIES, ts=row.ts, model_name=MODEL.name, model_version=version(),
                          feature_set=SPEC.version, horizon=1, p_up=MODEL.predict(row.values))


async def count(url: str, table: Any, *where: Any) -> int:
    return (await rows(url, select(func.count()).select_from(table).where(*where)))[0][0]


def council_service() -> CouncilService:
    return CouncilService(CouncilSettings(http_port=free_port()))


def gateway() -> GatewayService:
    return GatewayService(GatewaySettings(http_port=free_port(), api_token=TOKEN, control_timeout_s=20))


def client(gw: GatewayService) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.settings.http_port}", timeout=30,
                             headers={"Authorization": f"Bearer {TOKEN}"})


# --- tests ------------------------------------------------------------------------------------------------------

async def test_service_decisions_equal_the_pure_council_over_the_same_history(infra: Any, database_url: str) -> None:
    n = 120
    history = await seed(database_url, n)
    async with running(council_service()):
        await publish(infra, *(prediction(r) for r in history))
        await until(f"{n} decisions", lambda: _count_is(database_url, decisions, n))

    stored = {r.ts: r for r in await rows(database_url, select(decisions))}
    council = Council(default_strategies())
    for i, row in enumerate(history):
        window = tuple(history[max(0, i + 1 - council.lookback):i + 1])
        preds = (PredictionView(MODEL.name, version(), 1, MODEL.predict(row.values)),)
        want = council.decide(StrategyInput("binance", "BTC/USDT", "1h", window, preds),
                              control=CouncilConfig().params().default_control, profile=RiskProfile.MEDIUM)
        got = stored[row.ts]
        assert (got.action, got.intent, tuple(got.reason_codes)) == (
            want.action.value, want.intent.value, want.reason_codes), row.ts
        assert got.confidence == pytest.approx(want.confidence, abs=1e-12)
        assert got.agreement == pytest.approx({k.value: v for k, v in want.agreement.items()}, abs=1e-12)
        assert got.model_versions == [version()] and got.feature_set == SPEC.version
    votes = await rows(database_url, select(signals.c.strategy, func.count()).group_by(signals.c.strategy))
    assert dict(votes) == {s.name: n for s in default_strategies()}  # every strategy voted on every candle
    directional = await count(database_url, signals, signals.c.action != "HOLD")
    assert directional > 0, "real data should move some voter off HOLD"


async def test_operators_switch_mode_and_profile_through_the_gateway_and_every_decision_shows_it(
        infra: Any, database_url: str) -> None:
    history = await seed(database_url, 60)
    gw = gateway()
    async with running(council_service(), RiskService(RiskSettings(http_port=free_port())), gw), client(gw) as http:
        off = await http.post("/controls/council/mode", json={"symbol": "BTC/USDT", "mode": "OFF", "reason": "test"})
        bad = await http.post("/controls/council/mode", json={"mode": "SOLO", "solo_strategy": "nope"})
        low = await http.post("/controls/risk-profile", json={"profile": "LOW"})
        assert (off.status_code, off.json()["confirmation"]) == (200, "CouncilModeChanged")
        assert (bad.status_code, bad.json()["status"]) == (409, "REFUSED")
        assert "nope" in bad.json()["detail"]
        assert (low.status_code, low.json()["confirmation"]) == (200, "RiskProfileChanged")
        await until("the council follows the profile", lambda: _count_is(
            database_url, council_risk_profile, 1, council_risk_profile.c.profile == "LOW"))

        await publish(infra, *(prediction(r) for r in history))
        await until("60 decisions", lambda: _count_is(database_url, decisions, 60))

        council = (await http.get("/council")).json()
        page = (await http.get("/decisions", params={"symbol": "BTC/USDT", "limit": 5})).json()
        one = (await http.get(f"/decisions/{page['items'][0]['decision_id']}")).json()
        status = (await http.get("/status")).json()
        audit = (await http.get("/audit")).json()["items"]

    assert council["risk_profile"] == "LOW" and status["risk_profile"] == "LOW"
    assert [(c["symbol"], c["mode"]) for c in council["controls"]] == [("BTC/USDT", "OFF")]
    stored = await rows(database_url, select(decisions))
    assert {(r.mode, r.action, r.risk_profile) for r in stored} == {("OFF", "HOLD", "LOW")}
    assert all(r.reason_codes[0] == "MODE_OFF" for r in stored)
    assert len(page["items"]) == 5 and one == page["items"][0]
    tags = {v["strategy"]: (v["risk_tag"], v["eligible"], v["filtered_reason"]) for v in one["votes"]}
    assert len(tags) == len(default_strategies())
    assert all(f == "TAG_NOT_ALLOWED" for tag, _, f in tags.values() if tag != RiskTag.LOW)
    assert all(f != "TAG_NOT_ALLOWED" for tag, _, f in tags.values() if tag == RiskTag.LOW)
    actions = {(a["action"], a["status"], a["risk_profile"]) for a in audit}
    assert {("council_mode", "CONFIRMED", "MEDIUM"), ("council_mode", "REFUSED", "MEDIUM"),
            ("risk_profile", "REQUESTED", "MEDIUM"), ("risk_profile", "CONFIRMED", "LOW")} <= actions


async def test_a_campaign_folds_its_fills_scores_karma_on_close_and_contains_a_failing_strategy(
        infra: Any, database_url: str) -> None:
    first, second = await seed(database_url, 2)
    svc = council_service()
    svc.params = svc.council_params(Council([FlipFlop(name="flip", risk_tag=RiskTag.LOW), Raising(name="broken")]),
                                    SymbolControl(CouncilMode.SOLO, 0.4, "flip"))
    gw = gateway()
    async with running(svc, gw), client(gw) as http:
        await publish(infra, prediction(first))
        await until("the entry decision", lambda: _count_is(database_url, decisions, 1))
        entry = (await rows(database_url, select(decisions)))[0]
        assert (entry.action, entry.intent) == ("BUY", "ENTRY")
        assert await count(database_url, strategy_failures, strategy_failures.c.strategy == "broken") == 1

        await publish(infra, fill(entry.client_order_id, Side.BUY, "0.1", "30000", first.ts))
        await until("the campaign opens", lambda: _count_is(
            database_url, council_campaigns, 1, council_campaigns.c.quantity == Decimal("0.1")))

        await publish(infra, prediction(second))
        await until("the exit decision", lambda: _count_is(database_url, decisions, 2))
        exit_ = next(r for r in await rows(database_url, select(decisions)) if r.decision_id != entry.decision_id)
        assert (exit_.action, exit_.intent, exit_.fraction) == ("SELL", "EXIT", Decimal(1))
        exit_votes = await rows(database_url, select(signals.c.strategy).where(
            signals.c.decision_id == exit_.decision_id))
        assert [v.strategy for v in exit_votes] == ["flip"]  # the broken one no longer votes here

        await publish(infra, fill(exit_.client_order_id, Side.SELL, "0.1", "33000", second.ts))
        await until("the convictions are scored", lambda: _count_is(
            database_url, karma_votes, 2, karma_votes.c.outcome_return.is_not(None)))
        karma = (await http.get("/karma")).json()
        reenabled = await http.post("/controls/council/mode", json={
            "symbol": "BTC/USDT", "mode": "SOLO", "solo_strategy": "flip", "reenable_strategies": True})

    campaign = (await rows(database_url, select(council_campaigns)))[0]
    assert (campaign.quantity, campaign.position_id) == (0, None)
    scored = {r.direction: r for r in await rows(database_url, select(karma_votes))}
    expected = Decimal("3296.7") / Decimal("3003") - 1  # (3300 - 3.3 fee) / (3000 + 3 fee) - 1
    assert scored["BUY"].outcome_return == pytest.approx(float(expected))
    assert scored["BUY"].position_id == scored["SELL"].position_id == str(entry.decision_id)
    row = next(r for r in karma["rows"] if r["key"] == "flip")
    assert (row["n"], row["hits"], row["pending"]) == (2, 1, 0)  # the BUY was right, the SELL (to exit) was not
    assert reenabled.status_code == 200
    assert await count(database_url, strategy_failures) == 0


def fill(coid: str, side: Side, qty: str, price: str, ts: datetime) -> OrderFilled:
    fee = (Decimal(qty) * Decimal(price) * Decimal("0.001")).normalize()
    return OrderFilled(fill_id=f"f-{coid}", venue="paper", mode=TradingMode.PAPER, client_order_id=coid,
                       exchange="binance", symbol="BTC/USDT", side=side, quantity=Decimal(qty), price=Decimal(price),
                       fee=fee, fee_currency="USDT", liquidity=Liquidity.TAKER, ts=ts)


async def _count_is(url: str, table: Any, n: int, *where: Any) -> bool:
    return await count(url, table, *where) == n


__all__ = ["Action", "audit_log"]
