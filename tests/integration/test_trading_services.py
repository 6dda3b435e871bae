"""Risk, OMS and the paper venue over real NATS and PostgreSQL, controlled through the real gateway: OCO
protection, Semi-Auto proposals, kill switch, drawdown emergency halt, and a restart mid-order."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from quorum.db.engine import create_engine
from quorum.db.tables import candles, orders, reconciliation_discrepancies, risk_checks, risk_positions, trade_proposals
from quorum.events.base import Payload
from quorum.events.control import AuthorizeRouting
from quorum.events.market_data import CandleClosed
from quorum.events.signals import DecisionMade
from quorum.infra.embedded import free_port
from quorum.types import Action, CouncilMode, Intent
from sqlalchemy import insert, select

from services.gateway.service import GatewayService, GatewaySettings
from services.matching.service import MatchingService, MatchingSettings
from services.oms.service import OmsService, OmsSettings
from services.risk.service import RiskService, RiskSettings
from tests.integration.helpers import publish as bus_publish
from tests.integration.helpers import rows
from tests.integration.test_market_data_service import running, until

pytestmark = pytest.mark.integration

TOKEN = "trading-test-token-0123"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
D = Decimal


# --- building blocks ---------------------------------------------------------------------------------------------

def candle(i: int, close: str, *, high: str | None = None, low: str | None = None, symbol: str = "BTC/USDT",
           volume: str = "100000") -> CandleClosed:
    c = D(close)
    return CandleClosed(exchange="binance", symbol=symbol, timeframe="1h", ts=T0 + timedelta(hours=i), open=c,
                        high=D(high) if high else c, low=D(low) if low else c, close=c, volume=D(volume))


def decision(i: int, action: Action, intent: Intent, price: str, *, symbol: str = "BTC/USDT",
             stop: str | None = None, target: str | None = None, fraction: str = "1") -> DecisionMade:
    return DecisionMade(exchange="binance", symbol=symbol, timeframe="1h", ts=T0 + timedelta(hours=i),
                        mode=CouncilMode.COUNCIL, action=action, intent=intent, fraction=D(fraction), confidence=0.9,
                        threshold=0.4, votes=(), feature_set="fs-test", price=D(price),
                        stop_loss=D(stop) if stop else None, take_profit=D(target) if target else None,
                        atr=D("2"))


async def publish(js: Any, url: str, *payloads: Payload) -> None:
    """Candles are stored first (as market data does) so the venue can warm up from them."""
    engine = create_engine(url)
    async with engine.begin() as conn:
        for p in payloads:
            if isinstance(p, CandleClosed):
                await conn.execute(insert(candles).values(
                    exchange=p.exchange, symbol=p.symbol, timeframe=p.timeframe, ts=p.ts, open=p.open, high=p.high,
                    low=p.low, close=p.close, volume=p.volume, event_id=uuid.uuid4()))
    await engine.dispose()
    await bus_publish(js, *payloads)


async def order_states(url: str) -> dict[str, tuple[str, str, Decimal]]:
    return {r.purpose: (r.side, r.status, r.filled_quantity)
            for r in await rows(url, select(orders).order_by(orders.c.created_at))}


def stack(tmp_path: Path, *, risk: dict[str, Any] | None = None, oms: dict[str, Any] | None = None) -> list[Any]:
    return [
        RiskService(RiskSettings(http_port=free_port(), **(risk or {}))),
        OmsService(OmsSettings(http_port=free_port(), state_file=tmp_path / "portfolio_state.json", **(oms or {}))),
        MatchingService(MatchingSettings(http_port=free_port())),
    ]


def gateway() -> GatewayService:
    return GatewayService(GatewaySettings(http_port=free_port(), api_token=TOKEN, control_timeout_s=20))


def client(gw: GatewayService) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.settings.http_port}", timeout=30,
                             headers={"Authorization": f"Bearer {TOKEN}"})


async def authorize(js: Any) -> None:
    await bus_publish(js, AuthorizeRouting(actor="USER:test", reason=f"test {uuid.uuid4()}"))


def purposes(states: dict[str, Any], wanted: Iterable[str]) -> dict[str, Any]:
    return {k: v for k, v in states.items() if k in wanted}


# --- tests -------------------------------------------------------------------------------------------------------

async def test_a_filled_entry_is_protected_by_an_oco_that_sells_exactly_once(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    url = database_url
    async with running(*stack(tmp_path)):
        await authorize(infra)
        await publish(infra, url, candle(0, "100"))
        await publish(infra, url, decision(0, Action.BUY, Intent.ENTRY, "100", stop="95", target="110"))
        await until("the OCO legs rest", lambda: _has(url, {"STOP_LOSS": "ACCEPTED", "TAKE_PROFIT": "ACCEPTED"}))
        await publish(infra, url, candle(1, "105", high="112", low="94"))  # through both: only one may sell
        await until("the group resolves", lambda: _has(url, {"TAKE_PROFIT": "FILLED", "STOP_LOSS": "CANCELED"}))

    states = await order_states(url)
    # 10000 x 1% risk / (100 - 95) = 20 units; the synthetic ask is 100.01 (2 bps spread)
    assert states["ENTRY"] == ("BUY", "FILLED", D(20))
    assert states["TAKE_PROFIT"] == ("SELL", "FILLED", D(20)) and states["STOP_LOSS"][1] == "CANCELED"
    pos = (await rows(url, select(risk_positions)))[0]
    assert (pos.quantity, pos.pending_client_order_id, pos.reserved_cash) == (0, None, 0)


async def test_semi_auto_proposals_are_approved_rejected_or_expire_and_autonomy_needs_confirmation(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    url = database_url
    gw = gateway()
    services = stack(tmp_path, oms={"proposal_ttl_s": 4.0, "expiry_check_s": 0.2})
    async with running(*services, gw), client(gw) as http:
        semi = await http.post("/controls/operating-mode", json={"mode": "SEMI_AUTO"})
        assert semi.status_code == 200, semi.text  # less autonomy: no confirmation needed
        await authorize(infra)
        await publish(infra, url, *(candle(0, "100", symbol=s) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")))
        await publish(infra, url, *(decision(0, Action.BUY, Intent.ENTRY, "100", symbol=s, stop="95")
                                    for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")))
        await until("three proposals", lambda: _proposals(url, {"PENDING": 3}))
        pending = {p["symbol"]: p["decision_id"]
                   for p in (await http.get("/proposals", params={"status": "PENDING"})).json()["items"]}
        approved = await http.post(f"/proposals/{pending['BTC/USDT']}/approve", json={"reason": "looks right"})
        rejected = await http.post(f"/proposals/{pending['ETH/USDT']}/reject")
        await until("the third expires", lambda: _proposals(url, {"APPROVED": 1, "REJECTED": 1, "EXPIRED": 1}))
        late = await http.post(f"/proposals/{pending['SOL/USDT']}/approve")
        await until("the approved one fills", lambda: _has(url, {"ENTRY": "FILLED"}))

        first = await http.post("/controls/operating-mode", json={"mode": "FULL_AUTO"})
        token = first.json()["confirmation_token"]
        forged = await http.post("/controls/operating-mode", json={"mode": "OBSERVE", "confirmation_token": token})
        confirmed = await http.post("/controls/operating-mode", json={"mode": "FULL_AUTO",
                                                                      "confirmation_token": token})
        status = (await http.get("/status")).json()
        audit = {(a["actor"], a["action"]) for a in (await http.get("/audit", params={"limit": 500})).json()["items"]}
        await http.post("/controls/operating-mode", json={"mode": "OBSERVE"})
        replayed = await http.post("/controls/operating-mode", json={"mode": "FULL_AUTO",
                                                                     "confirmation_token": token})

    assert (approved.status_code, approved.json()["confirmation"]) == (200, "ProposalApproved")
    assert (rejected.status_code, rejected.json()["confirmation"]) == (200, "ProposalRejected")
    assert (late.status_code, late.json()["status"]) == (409, "REFUSED")
    placed = {(o.symbol, o.purpose) for o in await rows(url, select(orders))}
    assert placed == {("BTC/USDT", "ENTRY"), ("BTC/USDT", "STOP_LOSS")}  # only the approved one traded
    assert first.status_code == 202 and "less operator review" in first.json()["warning"]
    assert forged.status_code == 200  # OBSERVE is less autonomous: no token needed, and the token stays unspent
    assert confirmed.status_code == 200 and replayed.status_code == 409  # single use
    assert status["operating_mode"] == "FULL_AUTO"
    assert {("SYSTEM:oms", "proposal_expire"), ("SYSTEM:oms", "routing_disconnect")} <= audit


async def test_the_kill_switch_blocks_new_entries_but_lets_the_exit_through(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    url = database_url
    gw = gateway()
    async with running(*stack(tmp_path), gw), client(gw) as http:
        await authorize(infra)
        await publish(infra, url, candle(0, "100"))
        await publish(infra, url, decision(0, Action.BUY, Intent.ENTRY, "100", stop="95"))
        await until("the entry fills", lambda: _has(url, {"ENTRY": "FILLED"}))
        killed = await http.post("/controls/kill-switch/engage", json={"symbol": "BTC/USDT", "reason": "test"})
        await publish(infra, url, candle(1, "101"), decision(1, Action.BUY, Intent.REENTRY, "101", stop="96",
                                                             fraction="0.5"))
        await until("the top-up is refused", lambda: _refused(url, "KILL_SWITCH_CLOSE_ONLY"))
        await publish(infra, url, decision(2, Action.SELL, Intent.EXIT, "101"))
        await until("the exit fills", lambda: _has(url, {"EXIT": "FILLED", "STOP_LOSS": "CANCELED"}))
        risk = (await http.get("/risk")).json()

    assert killed.status_code == 200 and killed.json()["confirmation"] == "KillSwitchEngaged"
    assert [(k["scope"], k["engaged"]) for k in risk["kill_switches"]] == [("BTC/USDT", True)]
    assert (await rows(url, select(risk_positions)))[0].quantity == 0


async def test_a_drawdown_breach_halts_liquidates_and_only_a_confirmed_clear_lifts_it(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    url = database_url
    config = {"drawdown_action": "MARKET_CLOSE_ALL_AND_HALT", "market_close_acknowledged": True,
              "profiles": {p: {**_profile(p), "max_drawdown_pct": "0.5", "max_stop_distance_pct": "15"}
                           for p in ("LOW", "MEDIUM", "HIGH")}}
    gw = gateway()
    async with running(*stack(tmp_path, risk={"config": config}), gw), client(gw) as http:
        await authorize(infra)
        await publish(infra, url, candle(0, "100"))
        await publish(infra, url, decision(0, Action.BUY, Intent.ENTRY, "100", stop="86"))  # 100 / 14 = 7.14285
        await until("the entry fills", lambda: _has(url, {"ENTRY": "FILLED", "STOP_LOSS": "ACCEPTED"}))
        await publish(infra, url, candle(1, "100"))  # marks the peak
        await publish(infra, url, candle(2, "88", low="88"))  # -12 x 7.14 = -86 of ~10000: past -0.5%, stop intact
        await until("the liquidation fills", lambda: _has(url, {"LIQUIDATION": "FILLED"}))
        resumed = await http.post("/controls/resume")
        first = await http.post("/controls/emergency-halt/clear")
        cleared = await http.post("/controls/emergency-halt/clear",
                                  json={"confirmation_token": first.json()["confirmation_token"]})
        status = (await http.get("/status")).json()
        audit = [(a["actor"], a["action"], a["status"]) for a in (await http.get("/audit")).json()["items"]]

    states = await order_states(url)
    assert states["STOP_LOSS"][1] == "CANCELED" and states["LIQUIDATION"] == ("SELL", "FILLED", D("7.14285"))
    assert (resumed.status_code, resumed.json()["status"]) == (409, "REFUSED")
    assert first.status_code == 202 and cleared.status_code == 200
    assert status["halted"] is False and status["emergency_halt"] is False
    assert ("SYSTEM:risk", "drawdown_halt", "CONFIRMED") in audit


async def test_a_restart_in_the_middle_of_an_open_order_reconciles_to_the_venues_state(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    url = database_url
    risk, oms, matching = stack(tmp_path)
    async with running(risk, oms, matching):
        await authorize(infra)
        await publish(infra, url, candle(0, "100"))
        await publish(infra, url, decision(0, Action.BUY, Intent.ENTRY, "100", stop="95", target="110"))
        await until("the protection rests", lambda: _has(url, {"STOP_LOSS": "ACCEPTED", "TAKE_PROFIT": "ACCEPTED"}))
        await oms.stop()  # graceful: flushes (cancels) every open order, writes the snapshot
        await until("the flush is done", lambda: _has(url, {"STOP_LOSS": "ACCEPTED"}, venue_status="CANCELED"))
        snapshot = (tmp_path / "portfolio_state.json").read_text()
        oms2 = OmsService(OmsSettings(http_port=free_port(), state_file=tmp_path / "portfolio_state.json"))
        async with running(oms2):
            await until("the cancels are booked", lambda: _has(url, {"STOP_LOSS": "CANCELED",
                                                                     "TAKE_PROFIT": "CANCELED"}))

    assert '"BTC/USDT": "20"' in snapshot
    kinds = [r.kind for r in await rows(url, select(reconciliation_discrepancies))]
    assert "VENUE_ENDED_ORDER" in kinds  # the venue cancelled while the OMS was down: recorded at start-up


def _profile(name: str) -> dict[str, Any]:
    from quorum.risk.profiles import DEFAULT_PROFILES
    from quorum.types import RiskProfile

    return DEFAULT_PROFILES[RiskProfile(name)].model_dump(mode="json")


async def _has(url: str, want: dict[str, str], venue_status: str | None = None) -> bool:
    if venue_status is not None:
        from quorum.db.tables import paper_orders

        got = {r.status for r in await rows(url, select(paper_orders.c.status).join(
            orders, orders.c.client_order_id == paper_orders.c.client_order_id).where(
            orders.c.purpose.in_(list(want))))}
        return got == {venue_status}
    states = await order_states(url)
    return all(states.get(k, ("", "", 0))[1] == v for k, v in want.items())


async def _proposals(url: str, want: dict[str, int]) -> bool:
    got: dict[str, int] = {}
    for r in await rows(url, select(trade_proposals.c.status)):
        got[r.status] = got.get(r.status, 0) + 1
    return got == want


async def _refused(url: str, reason: str) -> bool:
    return any(r.reason_code == reason for r in await rows(url, select(risk_checks)))


async def test_the_paper_venue_refuses_to_sell_more_than_is_held(infra: Any, database_url: str) -> None:
    from quorum.db.tables import paper_orders
    from quorum.events.orders import SubmitOrder
    from quorum.types import OrderType, Side, TradingMode

    def order(coid: str, side: Side, qty: str) -> SubmitOrder:
        return SubmitOrder(venue="paper", mode=TradingMode.PAPER, client_order_id=coid, exchange="binance",
                           symbol="BTC/USDT", side=side, order_type=OrderType.MARKET, quantity=D(qty), reference_ts=T0)

    async with running(MatchingService(MatchingSettings(http_port=free_port()))):
        await publish(infra, database_url, candle(0, "100"))
        await publish(infra, database_url, order("Qbuy", Side.BUY, "1"))
        await publish(infra, database_url, order("Qsell-too-much", Side.SELL, "1.5"), order("Qsell", Side.SELL, "1"))

        async def settled() -> bool:
            done = paper_orders.c.status.in_(("FILLED", "REJECTED"))
            return len(await rows(database_url, select(paper_orders).where(done))) == 3

        await until("all three are decided", settled)

    status = {r.client_order_id: r.status for r in await rows(database_url, select(paper_orders))}
    assert status == {"Qbuy": "FILLED", "Qsell-too-much": "REJECTED", "Qsell": "FILLED"}
