"""The ledger service over real NATS and PostgreSQL: exact books from fills, projections that equal the
journal's replay, equity marked to market, an append-only journal, and tampering caught by verify (CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY
from quorum import ledger_books, telemetry
from quorum.db.engine import create_engine
from quorum.db.tables import equity, ledger_transactions, positions
from quorum.events.fills import OrderFilled
from quorum.events.market_data import CandleClosed
from quorum.infra.embedded import free_port
from quorum.types import Liquidity, Side, TradingMode
from sqlalchemy import func, select, text

from services.ledger.service import LedgerService, LedgerSettings
from tests.integration.helpers import publish, rows
from tests.integration.test_market_data_service import running, until
from tests.support import REPO_ROOT

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 1, tzinfo=UTC)
D = Decimal


def fill(n: int, side: Side, qty: str, price: str, fee: str, fee_ccy: str = "USDT") -> OrderFilled:
    return OrderFilled(fill_id=f"f{n}", venue="paper", mode=TradingMode.PAPER, client_order_id=f"Q{n}",
                       exchange="binance", symbol="BTC/USDT", side=side, quantity=D(qty), price=D(price), fee=D(fee),
                       fee_currency=fee_ccy, liquidity=Liquidity.TAKER, ts=T0 + timedelta(minutes=n))


FILLS = (
    fill(1, Side.BUY, "0.5", "100", "0.05"),
    fill(2, Side.BUY, "0.5", "110", "0.0005", "BTC"),  # fee in the asset received
    fill(3, Side.SELL, "0.7", "120", "0.084"),
)


async def transactions(url: str) -> int:
    return (await rows(url, select(func.count()).select_from(ledger_transactions)))[0][0]


async def run_books(js: Any, url: str) -> None:
    async with running(LedgerService(LedgerSettings(http_port=free_port()))):
        await publish(js, *FILLS)
        await until("three fills posted", lambda: _is(transactions(url), 4))  # + the opening balance
        await publish(js, CandleClosed(exchange="binance", symbol="BTC/USDT", timeframe="1h", ts=T0, open=D(120),
                                       high=D(131), low=D(119), close=D(130), volume=D(10)))
        await until("the candle mark", lambda: _is(_marks(url), 1))


async def test_books_are_exact_and_the_projections_equal_the_journal_replay(infra: Any, database_url: str) -> None:
    url = database_url
    await run_books(infra, url)

    engine = create_engine(url)
    async with engine.connect() as conn:
        problems = await ledger_books.differences(conn, TradingMode.PAPER)
        key = LedgerSettings().chain_key.get_secret_value().encode()
        chain = await ledger_books.verify(conn, TradingMode.PAPER, key=key)
        books = await ledger_books.rebuild(conn, TradingMode.PAPER)
    await engine.dispose()
    assert problems == [] and chain == []

    # cash = start - cost of buys - quote fees + proceeds of sells
    assert books.balances["paper:cash:USDT"] == D(10000) - D(50) - D("0.05") - D(55) + D(84) - D("0.084")
    assert books.balances["paper:asset:BTC"] == D("0.5") + D("0.4995") - D("0.7")
    pos = (await rows(url, select(positions)))[0]
    # held 0.9995 at avg (50 + 0.4995 x 110) / 0.9995; the sell of 0.7 realizes 84 - 0.7 x avg
    avg = (D(50) + D("0.4995") * D(110)) / D("0.9995")
    assert (pos.quantity, pos.avg_cost) == (D("0.2995"), avg)
    assert pos.realized_pnl == D(84) - D("0.7") * avg
    assert pos.fees_paid == D("0.05") + D("0.0005") * D(110) + D("0.084")
    assert books.balances["paper:realized_pnl:USDT"] == -pos.realized_pnl  # a gain is a credit
    marks = await rows(url, select(equity).order_by(equity.c.ts))
    last = marks[-1]
    assert last.equity == books.balances["paper:cash:USDT"] + D("0.2995") * D(130)
    assert last.peak_equity == max(m.equity for m in marks)


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entries SET amount = amount + 1",
    "DELETE FROM ledger_entries",
    "TRUNCATE ledger_entries CASCADE",
    "UPDATE ledger_transactions SET description = 'edited'",
    "DELETE FROM ledger_transactions",
])
async def test_the_journal_refuses_every_change_but_an_insert(infra: Any, database_url: str, statement: str) -> None:
    await run_books(infra, database_url)
    engine = create_engine(database_url)
    with pytest.raises(Exception, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    await engine.dispose()
    assert await transactions(database_url) == 4


async def test_verify_and_rebuild_catch_a_row_altered_behind_the_triggers_back(infra: Any, database_url: str) -> None:
    await run_books(infra, database_url)
    engine = create_engine(database_url)
    async with engine.begin() as conn:  # a superuser bypassing the triggers, as an attacker with the keys would
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text("UPDATE ledger_entries SET amount = amount - 1 "
                                "WHERE account = 'paper:cash:USDT' AND amount = 10000"))
        await conn.execute(text("UPDATE ledger_entries SET amount = amount + 1 WHERE account = 'paper:equity:USDT'"))
    await engine.dispose()

    env = {**os.environ, "DATABASE_URL": database_url}
    verify = subprocess.run([sys.executable, "-m", "quorum.cli", "ledger", "verify"], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    rebuild = subprocess.run([sys.executable, "-m", "quorum.cli", "ledger", "rebuild"], env=env, cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=120)

    assert verify.returncode == 1 and "altered" in verify.stdout, verify.stdout + verify.stderr
    assert rebuild.returncode == 1 and "balance paper:cash:USDT" in rebuild.stdout


async def _is(value: Any, n: int) -> bool:
    return await value == n


async def _marks(url: str) -> int:
    return (await rows(url, select(func.count()).select_from(equity).where(
        equity.c.ts == T0 + timedelta(hours=1))))[0][0]


async def test_rebuild_apply_restores_damaged_projections_from_the_journal(infra: Any, database_url: str) -> None:
    await run_books(infra, database_url)
    engine = create_engine(database_url)
    async with engine.begin() as conn:  # projections are not the record: damage them
        await conn.execute(text("UPDATE ledger_balances SET amount = 0 WHERE account = 'paper:asset:BTC'"))
        await conn.execute(text("UPDATE positions SET realized_pnl = 999"))
    await engine.dispose()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "quorum.cli", "ledger", *args], cwd=REPO_ROOT, text=True,
                              env={**os.environ, "DATABASE_URL": database_url}, capture_output=True, timeout=120)

    found, restored, clean = cli("rebuild"), cli("rebuild", "--apply"), cli("rebuild")

    assert found.returncode == 1 and "balance paper:asset:BTC" in found.stdout and "position BTC/USDT" in found.stdout
    assert restored.returncode == 0 and "restored" in restored.stdout
    assert clean.returncode == 0 and "OK" in clean.stdout
    pos = (await rows(database_url, select(positions)))[0]
    assert pos.realized_pnl != 999 and pos.mark_price == D(130)  # the mark survives the restore


async def test_the_trading_gauges_show_the_stored_books_from_the_start(infra: Any, database_url: str) -> None:
    await run_books(infra, database_url)
    last = (await rows(database_url, select(equity).order_by(equity.c.ts.desc()).limit(1)))[0]
    telemetry.EQUITY.labels("PAPER").set(-1)  # as a fresh process would know nothing
    telemetry.REALIZED.labels("PAPER", "BTC/USDT").set(-1)

    async with running(LedgerService(LedgerSettings(http_port=free_port()))):  # a restart, no new message
        shown = REGISTRY.get_sample_value("quorum_trading_equity_quote", {"mode": "PAPER"})
        realized = REGISTRY.get_sample_value("quorum_trading_realized_pnl_quote", {"mode": "PAPER",
                                                                                  "symbol": "BTC/USDT"})

    pos = (await rows(database_url, select(positions)))[0]
    assert shown == float(last.equity)
    assert realized == float(pos.realized_pnl)
