"""The gateway as an operator's control plane, over real HTTP, NATS and PostgreSQL: roles and hashed tokens,
rate limits, confirmations that expire, PIN-protected encrypted exchange keys, an append-only hash-chained
audit trail and the live event stream (schemathesis over the whole API: test_gateway_contract.py)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from quorum.db.engine import create_engine
from quorum.db.tables import api_tokens, exchange_keys, master_pin
from quorum.events.control import KillSwitchEngaged
from quorum.events.fills import OrderFilled
from quorum.infra.embedded import free_port
from quorum.keyvault import PinRecord, unseal
from quorum.types import Liquidity, Side, TradingMode
from sqlalchemy import select, text

from services.gateway.auth import token_id
from services.gateway.service import GatewayService, GatewaySettings
from tests.integration.helpers import publish, rows
from tests.integration.test_market_data_service import running
from tests.support import REPO_ROOT

pytestmark = pytest.mark.integration

ADMIN = "bootstrap-admin-token-0123"


def gateway(**kw: Any) -> GatewayService:
    settings = {"control_timeout_s": 5, "pin_scrypt_n": 2**10, **kw}
    return GatewayService(GatewaySettings(http_port=free_port(), api_token=ADMIN, **settings))


def client(gw: GatewayService, token: str | None = ADMIN) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.settings.http_port}", timeout=30, headers=headers)


async def mint(http: httpx.AsyncClient, role: str) -> str:
    r = await http.post("/admin/tokens", json={"name": f"{role}-test", "role": role})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def concrete(path: str) -> str:
    return path.replace("{decision_id}", str(uuid.uuid4())).replace("{token_id_}", "nosuchtoken")


# --- auth -------------------------------------------------------------------------------------------------------

async def test_every_mutating_endpoint_is_401_without_a_token_and_403_for_a_viewer(infra: Any) -> None:
    gw = gateway()
    async with running(gw), client(gw) as admin:
        viewer = await mint(admin, "viewer")
        spec = (await admin.get("/openapi.json")).json()
        mutating = sorted(concrete(p) for p, ops in spec["paths"].items() if "post" in ops)
        admin_reads = sorted(concrete(p) for p, ops in spec["paths"].items() if p.startswith("/admin") and "get" in ops)
        async with client(gw, None) as anonymous, client(gw, viewer) as view:
            unauthenticated = {p: (await anonymous.post(p, json={})).status_code for p in mutating}
            forbidden = {p: (await view.post(p, json={})).status_code for p in mutating}
            forbidden_reads = {p: (await view.get(p)).status_code for p in admin_reads}
            allowed = (await view.get("/status")).status_code

    assert len(mutating) >= 24
    assert set(unauthenticated.values()) == {401}, unauthenticated
    assert set(forbidden.values()) == {403}, forbidden
    assert set(forbidden_reads.values()) == {403}
    assert allowed == 200


async def test_tokens_are_stored_hashed_and_a_revoked_token_stops_working(infra: Any, database_url: str) -> None:
    gw = gateway()
    async with running(gw), client(gw) as admin:
        token = await mint(admin, "operator")
        async with client(gw, token) as op:
            before = (await op.get("/status")).status_code
            listed = (await admin.get("/admin/tokens")).json()
            revoked = await admin.post(f"/admin/tokens/{listed[0]['token_id']}/revoke")
            after = (await op.get("/status")).status_code

    stored = await rows(database_url, select(api_tokens))
    assert before == 200 and revoked.status_code == 200 and after == 401
    assert token not in json.dumps([{k: str(v) for k, v in r._mapping.items()} for r in stored])
    assert all("token" not in t for t in listed)


async def test_a_token_over_its_rate_gets_429_with_retry_after(infra: Any) -> None:
    gw = gateway(rate_limit_per_s=0.1, rate_limit_burst=3)  # refills one request per 10 s
    async with running(gw), client(gw) as admin:
        codes = [(await admin.get("/status")) for _ in range(5)]

    assert [c.status_code for c in codes[:3]] == [200, 200, 200]
    assert codes[3].status_code == 429 and int(codes[3].headers["Retry-After"]) >= 1


async def test_failed_authentications_are_rate_limited_per_client_before_any_database_lookup(infra: Any) -> None:
    from sqlalchemy import event

    gw = gateway(auth_failure_burst=3, auth_failures_per_s=0.05)  # then one more guess per 20 s
    lookups: list[str] = []
    async with running(gw):
        assert gw.engine is not None
        event.listen(gw.engine.sync_engine, "before_cursor_execute",
                     lambda *args: lookups.append(args[2]) if "api_tokens" in args[2] else None)
        async with client(gw, "guess-0000000000") as guesser:
            guesses = [await guesser.get("/status") for _ in range(6)]
        async with client(gw) as admin:
            also_blocked = await admin.get("/status")  # same address: it waits like any other request from there
        async with client(gw, None) as anonymous:
            no_token = await anonymous.get("/status")  # nothing to look up: a plain 401

    assert [g.status_code for g in guesses] == [401, 401, 401, 429, 429, 429]
    assert int(guesses[3].headers["Retry-After"]) >= 1 and "failed authentications" in guesses[3].json()["detail"]
    assert len(lookups) == 3  # the refused guesses never reached the database
    assert also_blocked.status_code == 429 and no_token.status_code == 401


# --- confirmations ----------------------------------------------------------------------------------------------

async def test_a_confirmation_token_expires(infra: Any) -> None:
    gw = gateway(confirmation_ttl_s=1)
    async with running(gw), client(gw) as admin:
        first = await admin.post("/controls/emergency-halt/clear")
        await asyncio.sleep(1.5)
        late = await admin.post("/controls/emergency-halt/clear",
                                json={"confirmation_token": first.json()["confirmation_token"]})

    assert first.status_code == 202 and late.status_code == 409


async def test_panic_needs_the_token_and_the_typed_phrase(infra: Any) -> None:
    gw = gateway()
    async with running(gw), client(gw) as admin:
        first = (await admin.post("/controls/panic")).json()
        typo = await admin.post("/controls/panic", json={"confirmation_token": first["confirmation_token"],
                                                        "confirmation_phrase": "sell everything"})
        right = await admin.post("/controls/panic", json={"confirmation_token": first["confirmation_token"],
                                                         "confirmation_phrase": "SELL EVERYTHING"})
        again = await admin.post("/controls/panic", json={"confirmation_token": first["confirmation_token"],
                                                         "confirmation_phrase": "SELL EVERYTHING"})

    assert "SELL EVERYTHING" in first["warning"]
    assert (first["phrase"], first["pin_required"]) == ("SELL EVERYTHING", False)  # what a client must ask for
    assert typo.status_code == 422  # a typo does not spend the token
    assert right.status_code == 504 and right.json()["action"] == "panic_halt"  # dispatched; no risk service here
    assert again.status_code == 409


async def test_paper_live_switching_is_refused_at_runtime_and_audited(infra: Any) -> None:
    gw = gateway()
    async with running(gw), client(gw) as admin:
        refused = await admin.post("/controls/trading-mode", json={"mode": "LIVE"})
        audit = (await admin.get("/audit")).json()["items"]

    assert refused.status_code == 409 and "restart" in refused.json()["detail"]
    assert ("trading_mode_switch", "REFUSED") in {(a["action"], a["status"]) for a in audit}


# --- exchange keys ----------------------------------------------------------------------------------------------

async def test_exchange_keys_are_pin_protected_encrypted_never_returned_and_withdrawal_keys_refused(
        infra: Any, database_url: str) -> None:
    from tests.fakes.binance_account import FakeBinanceAccount
    from tests.support import data_file

    data = data_file("ohlcv", "binance_BTCUSDT_1h.csv").parent
    secret = "very-secret-value-0123456789"
    with FakeBinanceAccount(data, symbols=["BTC/USDT"], can_withdraw=False) as fake:
        gw = gateway(exchange_base_urls={"binance": fake.url})
        async with running(gw), client(gw) as admin:
            no_pin = await admin.post("/admin/exchange-keys", json=_key(secret, "123456"))
            weak = await admin.post("/admin/master-pin", json={"pin": "123456"})
            assert (await admin.post("/admin/master-pin", json={"pin": "orange-7-tree"})).status_code == 204
            first = await admin.post("/admin/exchange-keys", json=_key(secret, "orange-7-tree"))
            token = first.json()["confirmation_token"]
            bogus = await admin.post("/admin/exchange-keys", json=_key(secret, "orange-7-tree", "x" * 20))
            no_phrase = await admin.post("/admin/exchange-keys", json={**_key(secret, "orange-7-tree", token),
                                                                       "confirmation_phrase": None})
            wrong_pin = await admin.post("/admin/exchange-keys", json=_key(secret, "grape-8-bush", token))
            stored = await admin.post("/admin/exchange-keys", json=_key(secret, "orange-7-tree", token))
            listed = (await admin.get("/admin/exchange-keys")).text
            changed = await admin.post("/admin/master-pin", json={"pin": "lemon-9-river",
                                                                  "current_pin": "orange-7-tree"})
            fake.can_withdraw = True
            first = await admin.post("/admin/exchange-keys", json=_key(secret, "lemon-9-river"))
            withdraw = await admin.post("/admin/exchange-keys", json=_key(secret, "lemon-9-river",
                                                                          first.json()["confirmation_token"]))

    assert no_pin.status_code == 409 and weak.status_code == 422
    assert "REGISTER BINANCE KEY" in first.json()["warning"]
    assert first.json()["pin_required"] is True and first.json()["phrase"] == "REGISTER BINANCE KEY"
    assert (bogus.status_code, no_phrase.status_code, wrong_pin.status_code) == (409, 422, 403)
    assert stored.status_code == 201, stored.text
    assert stored.json()["api_key_hint"] == "7f3a" and stored.json()["can_withdraw"] is False
    assert secret not in stored.text and secret not in listed and "AKIA" not in listed
    assert changed.status_code == 204
    assert withdraw.status_code == 409 and "withdraw" in withdraw.json()["detail"]
    key = (await rows(database_url, select(exchange_keys)))[0]
    pin = (await rows(database_url, select(master_pin)))[0]
    assert secret.encode() not in key.ciphertext
    creds = unseal(PinRecord(pin.salt, pin.verifier, pin.n, pin.r, pin.p).key("lemon-9-river"), str(key.key_id),
                   key.nonce, key.ciphertext)  # re-encrypted under the new PIN
    assert (creds.api_key, creds.secret) == ("AKIA-test-key-7f3a", secret)


def _key(secret: str, pin: str, token: str | None = None) -> dict[str, Any]:
    """The first call (no token) or the confirming one (token, typed phrase, PIN)."""
    body: dict[str, Any] = {"exchange": "binance", "label": "trading", "api_key": "AKIA-test-key-7f3a",
                            "secret": secret}
    if token is not None:
        body.update(confirmation_token=token, confirmation_phrase="REGISTER BINANCE KEY", pin=pin)
    return body


# --- audit ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("statement", ["UPDATE audit_log SET status = 'EDITED'", "DELETE FROM audit_log",
                                       "TRUNCATE audit_log"])
async def test_the_audit_trail_refuses_changes_and_the_app_role_cannot_lift_that(
        infra: Any, database_url: str, statement: str) -> None:
    gw = gateway()
    async with running(gw), client(gw) as admin:
        await admin.post("/controls/trading-mode", json={"mode": "LIVE"})
    engine = create_engine(database_url)
    with pytest.raises(Exception, match="append-only"):
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    with pytest.raises(Exception, match="must be owner|permission denied"):
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL ROLE quorum_app"))
            await conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER ALL"))
    await engine.dispose()


async def test_verify_catches_tampering_and_exports_carry_the_chain(infra: Any, database_url: str) -> None:
    gw = gateway()
    async with running(gw), client(gw) as admin:
        for mode in ("LIVE", "PAPER"):
            await admin.post("/controls/trading-mode", json={"mode": mode})
        await mint(admin, "viewer")
        clean = (await admin.get("/audit/verify")).json()
        jsonl = (await admin.get("/audit/export", params={"format": "jsonl"})).text
        table = (await admin.get("/audit/export", params={"format": "csv"})).text
        engine = create_engine(database_url)
        async with engine.begin() as conn:  # a superuser editing behind the triggers' back
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text("UPDATE audit_log SET actor = 'USER:someone-else' WHERE id = "
                                    "(SELECT min(id) FROM audit_log)"))
        await engine.dispose()
        tampered = (await admin.get("/audit/verify")).json()
    cli = await asyncio.create_subprocess_exec(sys.executable, "-m", "quorum.cli", "audit", "verify",
                                               env={**os.environ, "DATABASE_URL": database_url}, cwd=REPO_ROOT,
                                               stdout=asyncio.subprocess.PIPE)
    out, _ = await cli.communicate()

    assert clean == {"ok": True, "rows": 3, "problems": []}
    records = [json.loads(line) for line in jsonl.splitlines()]
    assert [r["action"] for r in records] == ["trading_mode_switch", "trading_mode_switch", "token_create"]
    assert records[1]["prev_hash"] == records[0]["hash"]
    assert len(list(csv.DictReader(io.StringIO(table)))) == 3
    assert tampered["ok"] is False and "altered" in tampered["problems"][0]
    assert cli.returncode == 1 and b"altered" in out


# --- live stream --------------------------------------------------------------------------------------------------

async def test_the_event_stream_delivers_fills_and_alerts_as_they_happen(infra: Any) -> None:
    gw = gateway()
    fill = OrderFilled(fill_id="sse-1", venue="paper", mode=TradingMode.PAPER, client_order_id="Qsse",
                       exchange="binance", symbol="BTC/USDT", side=Side.BUY, quantity=Decimal("0.1"),
                       price=Decimal("30000"), fee=Decimal("3"), fee_currency="USDT", liquidity=Liquidity.TAKER,
                       ts=datetime(2024, 1, 1, tzinfo=UTC))
    seen: dict[str, dict[str, Any]] = {}
    async with running(gw), client(gw) as admin:
        async with admin.stream("GET", "/stream", params={"topics": "fills,alerts"}) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.aiter_lines()
            assert await anext(lines) == ": connected"
            await publish(infra, fill, KillSwitchEngaged(actor="SYSTEM:risk", symbol="BTC/USDT", automatic=True))
            event = None
            async with asyncio.timeout(20):
                async for line in lines:
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: ") and event:
                        seen[event] = json.loads(line.removeprefix("data: "))
                        if len(seen) == 2:
                            break

    assert seen["fills"]["payload"]["fill_id"] == "sse-1"
    assert seen["alerts"]["event_type"] == "KillSwitchEngaged"


# --- model selection, shutdown ----------------------------------------------------------------------------------

async def test_models_are_selected_by_the_owning_service_and_a_service_shuts_down_on_command(infra: Any) -> None:
    from services.inference.service import InferenceService, InferenceSettings

    gw = gateway()
    inference = InferenceService(InferenceSettings(http_port=free_port()))
    async with running(inference, gw), client(gw) as admin:
        unknown = await admin.post("/controls/model/select", json={"model_name": "xgb", "version": "9"})
        known = await admin.post("/controls/model/select", json={"model_name": "baseline-momentum", "version": "1"})
        status_ = (await admin.get("/status")).json()
        stop = await admin.post("/controls/shutdown", json={"service": "inference", "reason": "maintenance"})
        # The service confirms (and the gateway answers) first, then stops: give it a moment to get there.
        for _ in range(100):
            if inference.stopping.is_set():
                break
            await asyncio.sleep(0.05)
        stopping = inference.stopping.is_set()

    assert (unknown.status_code, known.status_code) == (409, 200)
    assert "not registered" in unknown.json()["detail"]
    assert status_["model"] == "baseline-momentum@1"
    assert (stop.status_code, stop.json()["confirmation"], stopping) == (200, "ShutdownAcknowledged", True)


async def test_the_audit_trail_filters_by_actor_action_status_and_time_on_the_server(infra: Any) -> None:
    gw = gateway()
    async with running(gw), client(gw) as admin:
        start = datetime.now(UTC)
        operator = await mint(admin, "operator")
        async with client(gw, operator) as op:
            await op.post("/controls/panic")  # PENDING_CONFIRM, by the operator
        everything = (await admin.get("/audit", params={"limit": 500})).json()["items"]
        panics = (await admin.get("/audit", params={"action": "PANIC", "status": "PENDING_CONFIRM"})).json()
        by_admin = (await admin.get("/audit", params={"actor": token_id(ADMIN)})).json()["items"]
        literal = (await admin.get("/audit", params={"actor": "%"})).json()["items"]
        later = (await admin.get("/audit", params={"since": datetime.now(UTC).isoformat()})).json()["items"]
        since = (await admin.get("/audit", params={"since": start.isoformat()})).json()["items"]
        backwards = await admin.get("/audit", params={"since": start.isoformat(), "until": start.isoformat()})

    assert [r["action"] for r in panics["items"]] == ["panic"]
    assert panics["items"][0]["actor"] == f"USER:{token_id(operator)}"
    assert by_admin and all(token_id(ADMIN) in r["actor"] for r in by_admin)
    assert len(by_admin) < len(everything)
    assert literal == []  # a wildcard character is matched as itself
    assert later == [] and len(since) == len(everything)
    assert backwards.status_code == 200 and backwards.json()["items"] == []
