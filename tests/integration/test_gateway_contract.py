"""The gateway as a new user meets it, over real HTTP: the docs page, the README's ``curl -d`` examples as curl
sends them (a form content type on a JSON body), bad input refused with a message that says what is wrong, and
the whole API against its own OpenAPI document (schemathesis, every check)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from quorum.infra.embedded import free_port

from tests.integration.test_gateway_security import ADMIN, client, gateway
from tests.integration.test_market_data_service import running

pytestmark = pytest.mark.integration


async def curl(port: int, path: str, *args: str) -> tuple[int, Any]:
    """``curl -s -X POST -H "Authorization: Bearer $TOKEN" <args> localhost:<port><path>``: (status, body)."""
    exe = shutil.which("curl")
    if exe is None:
        pytest.skip("curl is not installed")
    proc = await asyncio.create_subprocess_exec(
        exe, "-s", "-X", "POST", "-H", f"Authorization: Bearer {ADMIN}", *args, "-w", "\n%{http_code}",
        f"localhost:{port}{path}", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    body, _, code = out.decode().rpartition("\n")
    return int(code), json.loads(body) if body else None


async def test_the_docs_page_is_served(infra: Any) -> None:
    gw = gateway()
    async with running(gw), client(gw, None) as anonymous:
        docs = await anonymous.get("/docs")

    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in docs.text and "/openapi.json" in docs.text


async def test_readme_curl_examples_work_as_curl_sends_them(infra: Any) -> None:
    gw = gateway()
    port = gw.settings.http_port
    async with running(gw):
        form = await curl(port, "/admin/tokens", "-d", '{"name":"grafana","role":"viewer"}')
        untyped = await curl(port, "/admin/tokens", "-H", "Content-Type:", "-d", '{"name":"ci","role":"viewer"}')
        refused = await curl(port, "/controls/trading-mode", "-d", '{"mode":"LIVE"}')
        not_json = await curl(port, "/admin/tokens", "-d", "name=grafana&role=viewer")

    assert form[0] == 201 and form[1]["name"] == "grafana" and form[1]["token"]
    assert untyped[0] == 201 and untyped[1]["name"] == "ci"
    assert refused[0] == 409 and "restart" in refused[1]["detail"]
    assert not_json[0] == 422 and "JSON" in json.dumps(not_json[1])


@pytest.mark.parametrize("pin", ["<your PIN>", "<master-pin>", "your PIN here", "yourpin"])
async def test_a_placeholder_master_pin_is_refused_with_a_clear_message(infra: Any, pin: str) -> None:
    gw = gateway()
    port = gw.settings.http_port
    async with running(gw), client(gw) as admin:
        code, body = await curl(port, "/admin/master-pin", "-d", json.dumps({"pin": pin}))
        chosen = await admin.post("/admin/master-pin", json={"pin": "orange-7-tree"})

    assert code == 422 and "placeholder" in json.dumps(body["detail"]), body
    assert chosen.status_code == 204



async def test_nul_characters_timestamps_booleans_refusals_and_allow_keep_to_the_documented_contract(
        infra: Any) -> None:
    gw = gateway()
    async with running(gw), client(gw) as admin:
        nul_query = await admin.get("/orders", params={"symbol": "BTC\x00USDT"})
        nul_path = await admin.post("/admin/tokens/a%00b/revoke")
        nul_body = await admin.post("/controls/trading-mode", json={"mode": "LIVE", "reason": "a\x00b"})
        numbers = [await admin.get(path, params=q) for path, q in (
            ("/decisions", {"until": "0.5"}), ("/equity", {"since": "0"}))]
        backfill = await admin.post("/controls/backfill", json={"symbols": ["BTC/USDT"], "since": 0})
        not_bool = await admin.post("/controls/council/mode", json={"mode": "COUNCIL", "reenable_strategies": 0})
        first = await admin.post("/controls/emergency-halt/clear")
        spent = await admin.post("/controls/emergency-halt/clear", json={"confirmation_token": "x" * 20})
        options = {p: await admin.options(p) for p in ("/admin/tokens", "/admin/exchange-keys")}

    assert [r.status_code for r in (nul_query, nul_path, nul_body)] == [400, 400, 400]
    assert "NUL" in nul_query.json()["detail"]
    assert [r.status_code for r in numbers] == [422, 422] and "ISO 8601" in numbers[0].text
    assert backfill.status_code == 422 and "ISO 8601" in backfill.text
    assert not_bool.status_code == 422 and "reenable_strategies" in not_bool.text
    assert first.status_code == 202
    assert spent.status_code == 409 and set(spent.json()) == {"action", "status", "command_id", "confirmation",
                                                              "detail"}
    assert spent.json()["status"] == "REFUSED" and "confirmation token" in spent.json()["detail"]
    assert {p: (r.status_code, r.headers["allow"]) for p, r in options.items()} == {
        "/admin/tokens": (405, "GET, POST"), "/admin/exchange-keys": (405, "GET, POST")}


# --- the contract ---------------------------------------------------------------------------------------------

async def test_the_api_keeps_to_its_contract_under_schemathesis_with_every_check(
        infra: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--checks all`` over every operation but the endless stream and shutdown, every phase, a fixed seed and a
    few examples per operation (the coverage phase still sends each boundary and NUL case). Every service runs, so
    controls are confirmed and a 504 would be a real failure. The rules the schema cannot express are listed in
    schemathesis.toml next to this file."""
    from services.council.service import CouncilService, CouncilSettings
    from services.inference.service import InferenceService, InferenceSettings
    from services.ledger.service import LedgerService, LedgerSettings
    from services.market_data.service import MarketDataService
    from services.market_data.settings import MarketDataSettings
    from services.matching.service import MatchingService, MatchingSettings
    from services.oms.service import OmsService, OmsSettings
    from services.risk.service import RiskService, RiskSettings

    monkeypatch.chdir(tmp_path)  # the OMS writes its snapshot under the working directory
    gw = gateway(rate_limit_per_s=1000, rate_limit_burst=1000, control_timeout_s=20,  # ignored_auth sends bad
                 auth_failure_burst=100_000, auth_failures_per_s=1000)                # tokens from one address
    services = [RiskService(RiskSettings(http_port=free_port())), OmsService(OmsSettings(http_port=free_port())),
                CouncilService(CouncilSettings(http_port=free_port())),
                InferenceService(InferenceSettings(http_port=free_port())),
                MatchingService(MatchingSettings(http_port=free_port())),
                LedgerService(LedgerSettings(http_port=free_port())),
                MarketDataService(MarketDataSettings(http_port=free_port(), source="none",
                                                     backfill_base_url="http://127.0.0.1:9")), gw]  # offline
    async with running(*services):
        url = f"http://127.0.0.1:{gw.settings.http_port}/openapi.json"
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("st")), "--config-file", str(Path(__file__).with_name(
                "schemathesis.toml")), "run", url, "-H", f"Authorization: Bearer {ADMIN}", "--checks", "all",
            "--max-examples", "3", "--seed", "20241121", "--exclude-path", "/stream",
            "--exclude-path", "/controls/shutdown", "--request-timeout", "30",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        async with httpx.AsyncClient() as http:
            spec = (await http.get(url)).json()

    report = out.decode()
    print(report[-1500:])  # the summary: operations, cases generated, failures
    assert proc.returncode == 0, report[-6000:]
    operations = sum(len(ops) for ops in spec["paths"].values())
    assert f"Tested: {operations - 2}" in report  # every operation but the two left out
