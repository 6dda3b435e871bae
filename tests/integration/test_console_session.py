"""The console's session over real HTTP and PostgreSQL: an API token logs in to an HttpOnly, SameSite=Strict cookie
that every route accepts in its place; changes need the session's CSRF token; the session ends when idle, on
log-out or when its token is revoked; bearer clients work as before. Also the page itself and its reads."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from quorum.db.tables import audit_log, candles, positions
from sqlalchemy import insert, select

from services.gateway.service import GatewayService
from tests.integration.helpers import rows
from tests.integration.test_gateway_security import ADMIN, client, gateway, mint
from tests.integration.test_market_data_service import running

pytestmark = pytest.mark.integration

CONSOLE = {"X-Quorum-Console": "1"}
REFUSED_AT_RUNTIME = ("/controls/trading-mode", {"mode": "LIVE"})  # answered by the gateway alone: 409, audited


@contextlib.asynccontextmanager
async def logged_in(gw: GatewayService, token: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any],
                                                                          httpx.Response]]:
    """A browser-like client holding the session cookie (no bearer token), the session and the log-in answer."""
    async with client(gw, None) as browser:
        answer = await browser.post("/console/session", json={"token": token}, headers=CONSOLE)
        assert answer.status_code == 200, answer.text
        yield browser, answer.json(), answer


@pytest.fixture
async def gw(infra: Any) -> AsyncIterator[GatewayService]:
    service = gateway()
    async with running(service):
        yield service


async def test_log_in_sets_an_httponly_samesite_strict_cookie_that_reads_like_the_token(gw: GatewayService) -> None:
    async with client(gw) as admin:
        operator = await mint(admin, "operator")
    async with logged_in(gw, operator) as (browser, session, answer):
        status = await browser.get("/status")
        again = await browser.get("/console/session")

    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain http here; https gets Secure
    assert operator not in answer.headers["set-cookie"]  # the cookie is a session id, never the token
    assert session["role"] == "operator" and session["csrf_token"]
    assert status.status_code == 200 and status.json()["trading_mode"] == "PAPER"
    assert again.json()["csrf_token"] == session["csrf_token"]


async def test_a_change_made_with_the_cookie_needs_the_sessions_csrf_token_and_is_audited_as_its_token(
        gw: GatewayService, database_url: str) -> None:
    async with client(gw) as admin:
        operator = await mint(admin, "operator")
    path, body = REFUSED_AT_RUNTIME
    async with logged_in(gw, operator) as (browser, session, _):
        missing = await browser.post(path, json=body)
        wrong = await browser.post(path, json=body, headers={"X-CSRF-Token": "not-the-token"})
        right = await browser.post(path, json=body, headers={"X-CSRF-Token": session["csrf_token"]})

    assert missing.status_code == 403 and "X-CSRF-Token" in missing.json()["detail"]
    assert wrong.status_code == 403
    assert right.status_code == 409 and right.json()["action"] == "trading_mode_switch"  # through to the route
    audit = await rows(database_url, select(audit_log.c.actor, audit_log.c.action))
    actors = {a.actor for a in audit if a.action in ("trading_mode_switch", "console_login")}
    assert actors == {f"USER:{session['token_id']}"}


async def test_log_in_refuses_a_wrong_token_a_foreign_page_and_too_many_guesses(infra: Any) -> None:
    gw = gateway(auth_failure_burst=3, auth_failures_per_s=0.05)
    async with running(gw), client(gw, None) as browser:
        foreign = await browser.post("/console/session", json={"token": ADMIN})  # no console header: a form post
        guesses = [await browser.post("/console/session", json={"token": f"guess-{i:012d}"}, headers=CONSOLE)
                   for i in range(4)]
        empty = await browser.post("/console/session", json={}, headers=CONSOLE)

    assert foreign.status_code == 403 and "X-Quorum-Console" in foreign.json()["detail"]
    assert [g.status_code for g in guesses] == [401, 401, 401, 429]
    assert "set-cookie" not in guesses[0].headers
    assert empty.status_code == 422


async def test_a_session_ends_after_its_idle_timeout_and_the_consoles_own_refreshes_do_not_extend_it(
        infra: Any) -> None:
    gw = gateway(console_idle_timeout_s=1.5)
    async with running(gw):
        async with logged_in(gw, ADMIN) as (idle, _, _), logged_in(gw, ADMIN) as (active, _, _):
            await asyncio.sleep(0.9)
            refreshed = await idle.get("/status", headers={"X-Quorum-Background": "1"})
            used = await active.get("/status")
            await asyncio.sleep(0.9)  # 1.8 s after log-in, 0.9 s after the operator's last request
            after_refresh = await idle.get("/status")
            after_use = await active.get("/status")

    assert refreshed.status_code == 200 and used.status_code == 200
    assert after_refresh.status_code == 401 and "expired" in after_refresh.json()["detail"]
    assert after_use.status_code == 200


async def test_log_out_needs_the_csrf_token_ends_the_session_and_clears_the_cookie(gw: GatewayService) -> None:
    async with logged_in(gw, ADMIN) as (browser, session, _):
        session_cookie = browser.cookies["quorum_session"]
        forged = await browser.delete("/console/session")
        out = await browser.delete("/console/session", headers={"X-CSRF-Token": session["csrf_token"]})
        browser.cookies.set("quorum_session", session_cookie)  # a copy of the old cookie is worth nothing now
        replayed = await browser.get("/status")

    assert forged.status_code == 403
    assert out.status_code == 204 and 'quorum_session=""' in out.headers["set-cookie"]
    assert replayed.status_code == 401


async def test_revoking_the_token_ends_its_console_sessions_at_once(gw: GatewayService) -> None:
    async with client(gw) as admin:
        operator = await mint(admin, "operator")
        async with logged_in(gw, operator) as (browser, session, _):
            before = await browser.get("/status")
            await admin.post(f"/admin/tokens/{session['token_id']}/revoke")
            after = await browser.get("/status")

    assert before.status_code == 200
    assert after.status_code == 401 and "revoked" in after.json()["detail"]


async def test_a_viewer_session_reads_but_may_not_act(gw: GatewayService) -> None:
    async with client(gw) as admin:
        viewer = await mint(admin, "viewer")
    async with logged_in(gw, viewer) as (browser, session, _):
        read = await browser.get("/risk")
        halt = await browser.post("/controls/halt", json={}, headers={"X-CSRF-Token": session["csrf_token"]})

    assert session["role"] == "viewer" and read.status_code == 200
    assert halt.status_code == 403 and "viewer" in halt.json()["detail"]


async def test_bearer_clients_need_no_csrf_token_and_the_bearer_wins_over_a_cookie(gw: GatewayService) -> None:
    async with client(gw) as admin:
        viewer = await mint(admin, "viewer")
    path, body = REFUSED_AT_RUNTIME
    async with logged_in(gw, viewer) as (browser, _, _), client(gw) as bearer:
        plain = await bearer.post(path, json=body)
        both = await browser.post(path, json=body, headers={"Authorization": f"Bearer {ADMIN}"})

    assert plain.status_code == 409
    assert both.status_code == 409  # the admin's bearer token decides, not the viewer's cookie


async def test_the_page_is_served_with_a_strict_policy_and_stays_out_of_the_api_document(gw: GatewayService) -> None:
    async with client(gw, None) as browser:
        bare = await browser.get("/console")
        page = await browser.get("/console/")
        script = await browser.get("/console/static/js/app.js")
        missing = await browser.get("/console/static/js/nope.js")
        spec = (await browser.get("/openapi.json")).json()

    assert bare.status_code == 308 and bare.headers["location"] == "/console/"
    assert page.status_code == 200 and "<title>Quorum console</title>" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["x-content-type-options"] == "nosniff"
    assert missing.status_code == 404
    assert not [p for p in spec["paths"] if p.startswith("/console")]


async def test_the_chart_shows_a_symbols_candles_and_its_positions_entry(gw: GatewayService, database_url: str,
                                                                          engine: Any) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(insert(candles), [
            {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h", "ts": t0 + timedelta(hours=i),
             "open": 100 + i, "high": 101 + i, "low": 99 + i, "close": 100.5 + i, "volume": 5, "event_id": uuid.uuid4()}
            for i in range(3)])
        await conn.execute(insert(positions).values(mode="PAPER", symbol="BTC/USDT", quantity=Decimal("0.5"),
                                                    avg_cost=Decimal("101"), realized_pnl=0, fees_paid=0,
                                                    mark_price=Decimal("102.5"), updated_at=t0))
    async with client(gw) as api:
        markets = (await api.get("/console/markets")).json()
        chart = (await api.get("/console/chart", params={"symbol": "BTC/USDT", "timeframe": "1h"})).json()
        bad = await api.get("/console/chart", params={"symbol": "btc"})

    assert markets == [{"symbol": "BTC/USDT", "timeframe": "1h", "last_ts": "2024-01-01T02:00:00Z"}]
    assert [c["close"] for c in chart["candles"]] == ["100.5", "101.5", "102.5"]
    assert chart["levels"] == [{"kind": "ENTRY", "price": "101", "client_order_id": None}]
    assert bad.status_code == 422 and "symbol" in bad.text


async def test_a_live_stream_opened_with_the_cookie_ends_when_its_session_does(
        gw: GatewayService, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.gateway.routes import stream

    monkeypatch.setattr(stream, "KEEPALIVE_S", 0.2)
    async with logged_in(gw, ADMIN) as (browser, session, _):
        async with browser.stream("GET", "/stream", params={"topics": "alerts"}) as live:
            lines = live.aiter_lines()
            assert await anext(lines) == ": connected"
            out = await browser.delete("/console/session", headers={"X-CSRF-Token": session["csrf_token"]})

            async def until_ended() -> list[str]:
                seen = []
                async for line in lines:
                    seen.append(line)
                return seen

            rest = await asyncio.wait_for(until_ended(), timeout=10)

    assert out.status_code == 204
    assert "event: session" in rest and 'data: {"ended": true}' in rest
