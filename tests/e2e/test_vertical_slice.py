"""End to end: every service as its own OS process over real NATS JetStream and PostgreSQL, replaying real
BTC/USDT hourly candles into paper fills, the ledger and the gateway; then an operator halt stops new orders."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from quorum.devstack import SERVICES, Stack

from tests.support import data_file, run_sql

pytestmark = pytest.mark.e2e

TOKEN = "e2e-operator-token-0123456789"
FIRST, SECOND = 300, 600


def wait_for(what: str, check: Callable[[], bool], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def count(db: str, sql: str) -> int:
    return int(run_sql(db, sql)[0]["n"])


@pytest.fixture
def stack(tmp_path: Path, nats_url: str, database_url: str) -> Iterator[Stack]:
    csv = data_file("ohlcv", "binance_BTCUSDT_1h.csv")
    s = Stack.with_free_ports(
        tmp_path / "stack", nats_url=nats_url, database_url=database_url, log=sys.stderr,
        env={"QUORUM_ENVIRONMENT": "test", "QUORUM_GATEWAY_API_TOKEN": TOKEN,
             "QUORUM_MARKET_DATA_REPLAY_FILE": str(csv), "QUORUM_MARKET_DATA_REPLAY_LIMIT": str(FIRST)},
    )
    s.prepare()
    try:
        yield s
    finally:
        s.stop()


def test_replayed_candles_become_paper_fills_in_the_ledger_and_halt_stops_new_orders(
    stack: Stack, database_url: str
) -> None:
    db = database_url
    # Everything but the data source first, so routing can be authorized before the first candle.
    others = tuple(n for n in SERVICES if n != "market_data")
    stack.start_services(others)
    stack.wait_ready(timeout=90)
    api = httpx.Client(base_url=f"http://127.0.0.1:{stack.ports['gateway']}", timeout=30,
                       headers={"Authorization": f"Bearer {TOKEN}"})
    anonymous = httpx.Client(base_url=api.base_url, timeout=10)

    for path in ("/status", "/positions", "/balances", "/orders", "/fills", "/audit"):
        assert anonymous.get(path).status_code == 401, path
    for path in ("/controls/halt", "/controls/resume", "/controls/routing/authorize"):
        assert anonymous.post(path).status_code == 401, path
        assert anonymous.post(path, headers={"Authorization": "Bearer wrong-token-000000"}).status_code == 401

    assert api.get("/status").json()["routing_connected"] is False  # cold start: disconnected
    authorized = api.post("/controls/routing/authorize", json={"reason": "e2e"})
    assert authorized.status_code == 200 and authorized.json()["status"] == "CONFIRMED"
    # Solo RSI trades often enough on 300 hourly candles to show fills; the default Council mode is choosier.
    solo = api.post("/controls/council/mode", json={"mode": "SOLO", "solo_strategy": "rsi", "reason": "e2e"})
    assert solo.status_code == 200 and solo.json()["confirmation"] == "CouncilModeChanged"

    stack.start_service("market_data")
    wait_for(f"{FIRST} decisions", lambda: count(db, "SELECT count(*) AS n FROM decisions") == FIRST)
    wait_for("every order to finish", lambda: count(
        db, "SELECT count(*) AS n FROM orders WHERE status NOT IN ('FILLED','REJECTED','CANCELED','EXPIRED')") == 0)

    assert count(db, "SELECT count(*) AS n FROM orders WHERE status = 'FILLED'") >= 1
    assert run_sql(db, "SELECT txn_id, currency FROM ledger_entries GROUP BY 1, 2 HAVING sum(amount) <> 0") == []
    opening_balance = 1
    fills_booked = count(db, "SELECT count(*) AS n FROM fills")
    assert count(db, "SELECT count(*) AS n FROM ledger_transactions") == opening_balance + fills_booked

    # The gateway's positions and balances are exactly what the fills imply.
    fills = api.get("/fills", params={"limit": 500}).json()["items"]
    assert fills
    qty = sum((Decimal(f["quantity"]) * (1 if f["side"] == "BUY" else -1) for f in fills), Decimal(0))
    cash = Decimal("10000") + sum(
        (Decimal(f["quantity"]) * Decimal(f["price"]) * (-1 if f["side"] == "BUY" else 1) - Decimal(f["fee"])
         for f in fills), Decimal(0))
    balances = {(b["kind"], b["currency"]): Decimal(b["amount"]) for b in api.get("/balances").json()}
    assert balances[("cash", "USDT")] == cash
    assert balances.get(("asset", "BTC"), Decimal(0)) == qty
    positions = {p["symbol"]: Decimal(p["quantity"]) for p in api.get("/positions").json()}
    assert positions.get("BTC/USDT", Decimal(0)) == qty

    # Halt: confirmed by risk, visible in status, audited; then more candles produce no new orders.
    halted = api.post("/controls/halt", json={"reason": "e2e halt"})
    assert halted.status_code == 200 and halted.json()["confirmation"] == "TradingHalted"
    assert api.get("/status").json()["halted"] is True
    orders_before = count(db, "SELECT count(*) AS n FROM orders")

    assert stack.stop_service("market_data") == 0
    stack.env = {**stack.env, "QUORUM_MARKET_DATA_REPLAY_LIMIT": str(SECOND)}
    stack.start_service("market_data")  # resumes from its checkpoint
    wait_for(f"{SECOND} decisions", lambda: count(db, "SELECT count(*) AS n FROM decisions") == SECOND)
    wait_for("risk to judge every actionable decision", lambda: count(
        db, "SELECT count(*) AS n FROM decisions d LEFT JOIN risk_checks r USING (decision_id) "
            "WHERE d.action <> 'HOLD' AND r.decision_id IS NULL") == 0)

    assert count(db, "SELECT count(*) AS n FROM orders") == orders_before
    refused_while_halted = count(db, "SELECT count(*) AS n FROM risk_checks WHERE reason_code = 'HALTED'")
    assert refused_while_halted >= 1  # the halt was exercised, not merely quiet markets
    assert count(db, "SELECT count(*) AS n FROM candles") == SECOND  # resumed, nothing replayed twice

    audit = [(a["action"], a["status"]) for a in api.get("/audit").json()["items"]]
    assert ("halt", "CONFIRMED") in audit and ("routing_authorize", "CONFIRMED") in audit

    # Nothing was dead-lettered anywhere, and every service shuts down cleanly.
    for name, sp in stack.procs.items():
        metrics = httpx.get(f"http://127.0.0.1:{sp.port}/metrics", timeout=10).text
        dead = [m for m in re.findall(r"^quorum_dlq_total\{[^}]*\} (\S+)$", metrics, re.M) if float(m) > 0]
        assert not dead, f"{name} dead-lettered messages"
    for name in list(stack.procs):
        assert stack.stop_service(name) == 0, name
