"""``GET /status`` over real HTTP, NATS and PostgreSQL: it holds up under concurrent load (no JetStream consumer
per request) and still shows health changes as they happen."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.integration.test_gateway_security import client, gateway
from tests.integration.test_market_data_service import running, until

pytestmark = pytest.mark.integration

HEALTH_STREAM = "KV_service_health"


async def _consumers(js: Any) -> int:
    return (await js.stream_info(HEALTH_STREAM)).state.consumer_count


async def _beat(js: Any, service: str, state: str) -> None:
    kv = await js.key_value("service_health")
    doc = {"service": service, "state": state, "ts": datetime.now(UTC).isoformat(), "details": {}}
    await kv.put(service, json.dumps(doc).encode())


async def test_many_concurrent_status_calls_create_no_consumer_and_health_changes_still_show(infra: Any) -> None:
    js = infra
    gw = gateway(rate_limit_per_s=10_000, rate_limit_burst=10_000)
    await _beat(js, "probe", "RUNNING")
    async with running(gw), client(gw) as admin:
        baseline = await _consumers(js)
        seen: list[int] = []
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                seen.append(await _consumers(js))
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        answers = await asyncio.gather(*(admin.get("/status") for _ in range(300)))
        done.set()
        await sampler
        after = await _consumers(js)
        first = answers[0].json()["services"]
        links = answers[0].json()["dashboards"]
        assert links["Quorum — trading desk"] == "http://localhost:3000/d/quorum-trading"
        assert len(links) == 4

        await _beat(js, "probe", "STOPPING")

        async def changed() -> bool:
            return (await admin.get("/status")).json()["services"]["probe"]["state"] == "STOPPING"

        await until("the health change to show in /status", changed, timeout=5)

    assert {a.status_code for a in answers} == {200}
    assert first["probe"]["state"] == "RUNNING" and "gateway" in first
    assert max(seen) == baseline and after == baseline, (baseline, max(seen), after)


async def test_a_restarted_oms_is_loud_alert_metric_status_and_audit(infra: Any, tmp_path: Any) -> None:
    from prometheus_client import REGISTRY
    from quorum.events.orders import OrderIntentApproved
    from quorum.infra.embedded import free_port
    from quorum.types import Side

    from services.oms.service import OmsService, OmsSettings
    from tests.integration.helpers import publish

    js = infra

    def oms() -> OmsService:
        return OmsService(OmsSettings(http_port=free_port(), state_file=tmp_path / "portfolio_state.json"))

    def refused_metric() -> float:
        return REGISTRY.get_sample_value("quorum_orders_refused_total",
                                         {"mode": "PAPER", "reason": "ROUTING_DISCONNECTED"}) or 0.0

    def intent(n: int) -> OrderIntentApproved:
        return OrderIntentApproved(decision_id=uuid.uuid4(), exchange="binance", symbol="BTC/USDT", side=Side.BUY,
                                   quantity=Decimal("0.1"), reference_price=Decimal("30000"),
                                   reference_ts=datetime(2024, 1, 1, n, tzinfo=UTC))

    gw = gateway()
    first = oms()
    async with running(first, gw), client(gw) as admin:
        authorized = await admin.post("/controls/routing/authorize", json={"reason": "trading"})
        before = (await admin.get("/status")).json()
        await first.stop()
        restarted_at = datetime.now(UTC)
        async with admin.stream("GET", "/stream", params={"topics": "alerts"}) as resp:
            lines = resp.aiter_lines()
            assert await anext(lines) == ": connected"
            second = oms()
            await second.start()
            try:
                alert = await _next_event(lines, "alerts")
                counted = refused_metric()
                await publish(js, intent(1), intent(2))

                async def refused_twice() -> bool:
                    return (await admin.get("/status")).json()["intents_refused"] == 2

                await until("two intents refused", refused_twice, timeout=20)
                after = (await admin.get("/status")).json()
                async with httpx.AsyncClient() as plain:
                    metrics = (await plain.get(f"http://127.0.0.1:{second.settings.http_port}/metrics")).text
                audit = (await admin.get("/audit", params={"limit": 500})).json()["items"]
            finally:
                await second.stop()

    assert authorized.status_code == 200 and before["routing_connected"] is True and before["routing"] == "connected"
    assert alert["event_type"] == "RoutingDisconnected" and alert["payload"]["actor"] == "SYSTEM:oms"
    assert after["routing_connected"] is False and after["intents_refused"] == 2
    since = datetime.fromisoformat(after["routing_disconnected_since"])
    assert restarted_at <= since <= datetime.now(UTC)
    assert after["routing"] == f"disconnected since {since.isoformat(timespec='seconds')}, 2 intents refused"
    assert 'quorum_routing_connected{mode="PAPER"} 0.0' in metrics
    assert refused_metric() - counted == 2
    cold_starts = [a for a in audit if (a["actor"], a["action"]) == ("SYSTEM:oms", "routing_disconnect")]
    assert len(cold_starts) == 2  # each start of the OMS, audited as a SYSTEM action


async def _next_event(lines: Any, topic: str) -> dict[str, Any]:
    event = None
    async with asyncio.timeout(20):
        async for line in lines:
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == topic:
                return json.loads(line.removeprefix("data: "))
    raise AssertionError(f"no {topic} event")
