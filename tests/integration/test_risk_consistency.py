"""Risk's consumers run concurrently over the same rows and must never deadlock each other; and risk's view of
cash and positions is checked against the ledger's, continuously, with an alert when they part for good."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from quorum.clock import LiveClock
from quorum.db.engine import create_engine
from quorum.db.tables import risk_balances, risk_checks, risk_positions
from quorum.events.base import Payload, decode, new_envelope
from quorum.events.control import RiskLedgerDiverged
from quorum.events.market_data import CandleClosed
from quorum.events.orders import OrderUpdated
from quorum.events.signals import DecisionMade
from quorum.infra.embedded import free_port
from quorum.runtime.handling import Context, sqlstate
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.subjects import subject
from quorum.types import Action, CouncilMode, Intent, OrderStatus, OrderType, Side, TradingMode
from sqlalchemy import insert, select, update

from services.ledger.service import LedgerService, LedgerSettings
from services.risk.service import RiskService, RiskSettings
from tests.integration.helpers import assert_risk_matches_ledger, rows
from tests.integration.test_bus import stream_messages
from tests.integration.test_market_data_service import running, until
from tests.integration.test_trading_services import authorize, candle, decision, order_states
from tests.integration.test_trading_services import publish as publish_market
from tests.integration.test_trading_services import stack as trading_stack

pytestmark = pytest.mark.integration

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOLS = ("BTC/USDT", "ETH/USDT")


def _candle(symbol: str, i: int) -> CandleClosed:
    return CandleClosed(exchange="binance", symbol=symbol, timeframe="1h", ts=T0 + timedelta(hours=i), open=D(100),
                        high=D(100), low=D(100), close=D(100), volume=D(1000))


def _bought(symbol: str, i: int) -> OrderUpdated:
    """A filled buy risk did not place (a protective or liquidation order's is booked just the same)."""
    return OrderUpdated(client_order_id=f"Qbuy-{symbol}-{i}", mode=TradingMode.PAPER, exchange="binance",
                        symbol=symbol, side=Side.BUY, order_type=OrderType.MARKET, purpose="ENTRY",
                        quantity=D("0.1"), status=OrderStatus.FILLED, previous_status=OrderStatus.ACCEPTED,
                        filled_quantity=D("0.1"), average_price=D(100), fees=D("0.01"), fee_currency="USDT",
                        quote_spent=D(10))


def _sell(symbol: str, i: int) -> DecisionMade:
    return DecisionMade(exchange="binance", symbol=symbol, timeframe="1h", ts=T0 + timedelta(hours=i),
                        mode=CouncilMode.COUNCIL, action=Action.SELL, intent=Intent.EXIT, fraction=D(1),
                        confidence=0.9, threshold=0.4, votes=(), feature_set="fs-test", price=D(100), atr=D(2))


async def test_the_consumers_running_at_once_over_two_symbols_never_deadlock(infra: Any, database_url: str) -> None:
    """Each handler in its own transaction, all at once (as the four consumer loops run them), with no retry to
    hide a lost lock race: candles, settlements and decisions of two symbols interleaved."""
    risk = RiskService(RiskSettings(http_port=free_port()))
    n = 12
    work: list[tuple[Callable[[Context], Awaitable[None]], Payload]] = []
    for s in SYMBOLS:
        work += [(risk.on_order_update, _bought(s, i)) for i in range(n)]
        work += [(risk.on_candle, _candle(s, i)) for i in range(n)]
        work += [(risk.on_decision, _sell(s, i)) for i in range(n)]
    random.Random(7).shuffle(work)
    engine = create_engine(database_url, pool_size=len(work))
    clock = LiveClock()

    async def one(handler: Callable[[Context], Awaitable[None]], payload: Payload) -> str | None:
        env = new_envelope(payload, clock=clock, source="test", key=uuid.uuid4())
        try:
            async with engine.begin() as conn:
                await handler(Context(conn=conn, clock=clock, service="risk", envelope=env))
                await asyncio.sleep(0)  # let the others take their locks before this one commits
            return None
        except Exception as exc:  # noqa: BLE001 - what went wrong is the result
            return sqlstate(exc) or repr(exc)

    # one settlement first, so candles find something held and take their locks from the start
    assert await one(*work.pop(next(i for i, w in enumerate(work) if w[0] == risk.on_order_update))) is None
    errors = [e for e in await asyncio.gather(*(one(h, p) for h, p in work)) if e]
    await engine.dispose()

    assert errors == []  # 40P01 here is a deadlock between risk's own handlers
    cash = (await rows(database_url, select(risk_balances.c.amount)))[0].amount
    assert cash == D(10000) - 2 * n * D("10.01")
    held = {r.symbol: r.quantity for r in await rows(database_url, select(risk_positions))}
    assert held == {s: n * D("0.1") for s in SYMBOLS}
    checks = await rows(database_url, select(risk_checks))
    assert len(checks) == 2 * n
    for s in SYMBOLS:
        assert sum(1 for c in checks if c.symbol == s and c.outcome == "APPROVED") <= 1  # then ORDER_PENDING


class _Probe(Service):
    NAME = "probe"


async def test_a_transaction_outside_any_consumer_that_loses_a_deadlock_is_run_again(
        infra: Any, database_url: str) -> None:
    """Two ``Service.transact`` calls lock two rows in opposite orders; PostgreSQL aborts one with 40P01 and it
    runs again (by then the other has committed) instead of failing its caller."""
    svc = _Probe(ServiceSettings(http_port=free_port()))
    svc.engine = create_engine(database_url)
    svc.relay = SimpleNamespace(wake=lambda: None)  # type: ignore[assignment] - nothing is emitted here
    async with svc.engine.begin() as conn:
        await conn.execute(insert(risk_balances), [{"currency": "AAA", "amount": 0}, {"currency": "BBB", "amount": 0}])
    attempts: list[str] = []
    held = {"AAA": asyncio.Event(), "BBB": asyncio.Event()}

    def crossing(first: str, second: str) -> Callable[[Context], Awaitable[None]]:
        async def work(ctx: Context) -> None:
            attempts.append(first)
            for ccy in (first, second):
                await ctx.conn.execute(update(risk_balances).where(risk_balances.c.currency == ccy)
                                       .values(amount=risk_balances.c.amount + 1))
                held[ccy].set()
                await held[second].wait()  # both hold their first row before either asks for its second
        return work

    try:
        await asyncio.wait_for(asyncio.gather(svc.transact(crossing("AAA", "BBB")),
                                              svc.transact(crossing("BBB", "AAA"))), timeout=30)
    finally:
        await svc.engine.dispose()

    assert {r.currency: r.amount for r in await rows(database_url, select(risk_balances))} == {"AAA": 2, "BBB": 2}
    assert len(attempts) == 3  # one of the two lost the race once and went through on its second run


async def test_risk_and_the_ledger_agree_after_a_trade_and_a_corrupted_balance_raises_the_alert(
        infra: Any, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = database_url
    services = trading_stack(tmp_path, risk={"consistency_interval_s": 0.2})
    risk = services[0]
    gauge = {"kind": "cash", "asset": "USDT"}

    async def checks(n: int) -> None:
        target = risk.ledger_checks + n
        await until(f"{n} more consistency checks", lambda: _true(risk.ledger_checks >= target))

    with caplog.at_level(logging.INFO, logger="quorum"):
        async with running(*services, LedgerService(LedgerSettings(http_port=free_port()))):
            await authorize(infra)
            await publish_market(infra, url, candle(0, "100"))
            await publish_market(infra, url, decision(0, Action.BUY, Intent.ENTRY, "100", stop="95"))
            await until("the entry fills and risk settles it", lambda: _settled(url))
            await checks(3)
            agreed = await _alerts(infra)
            await assert_risk_matches_ledger(url)
            gauge_before = REGISTRY.get_sample_value("quorum_risk_ledger_divergence", gauge)

            engine = create_engine(url)
            async with engine.begin() as conn:  # a lost settlement, as a deadlock once left it
                await conn.execute(update(risk_balances).values(amount=risk_balances.c.amount - 100))
            await engine.dispose()
            await until("the alert is raised", lambda: _true_async(_alerts(infra)))
            alerts = await _alerts(infra)
            await checks(3)
            alerts_later = await _alerts(infra)
            with pytest.raises(AssertionError, match="risk and the ledger disagree"):
                await assert_risk_matches_ledger(url)

    assert agreed == [] and gauge_before in (None, 0.0)
    (alert,) = alerts
    assert alerts_later == alerts  # one alert for one divergence, not one per check
    ledger_cash = alert.differences[0].ledger
    assert [(d.kind, d.asset, d.risk) for d in alert.differences] == [("cash", "USDT", ledger_cash - 100)]
    assert alert.mode is TradingMode.PAPER
    assert REGISTRY.get_sample_value("quorum_risk_ledger_divergence", gauge) == -100.0
    assert any(r.levelno == logging.WARNING and "risk disagrees with the ledger" in r.getMessage()
               for r in caplog.records)
    assert not [r.getMessage() for r in caplog.records if "lock race" in r.getMessage()]  # no deadlock retried


async def _true(value: bool) -> bool:
    return value


async def _true_async(pending: Awaitable[list[Any]]) -> bool:
    return bool(await pending)


async def _settled(url: str) -> bool:
    states = await order_states(url)
    pos = await rows(url, select(risk_positions))
    return (states.get("ENTRY", ("", "", 0))[1] == "FILLED" and states.get("STOP_LOSS", ("", "", 0))[1] == "ACCEPTED"
            and bool(pos) and pos[0].pending_client_order_id is None and pos[0].quantity > 0)


async def _alerts(js: Any) -> list[RiskLedgerDiverged]:
    return [decode(m.data).payload for m in await stream_messages(js, "CONTROL", subject(RiskLedgerDiverged))]
