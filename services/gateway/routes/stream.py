"""Live stream for operators: Server-Sent Events of equity, fills, decisions, alerts and state changes, read
straight off the bus (plain subscriptions: a viewer sees what happens from now on, nothing is replayed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from quorum.events.base import UndecodableMessage, decode
from quorum.events.control import (
    ControlRefused,
    DrawdownHaltTriggered,
    DriftDetected,
    KillSwitchEngaged,
    ModelRolledBack,
    RiskLedgerDiverged,
    RoutingDisconnected,
)
from quorum.events.fills import OrderFilled
from quorum.events.ledger import EquityMarked
from quorum.events.market_data import DataSourceSwitched
from quorum.events.orders import OrderUpdated
from quorum.events.signals import DecisionMade, StrategyDisabled
from quorum.subjects import family_wildcard, subject

from ..console.sessions import COOKIE
from ..deps import Bus, Reader

ALERT_EVENTS = (DrawdownHaltTriggered, KillSwitchEngaged, ControlRefused, StrategyDisabled, DataSourceSwitched,
                RoutingDisconnected,  # routing off (an OMS restart does it): trading has stopped
                RiskLedgerDiverged,  # risk's cash or positions disagree with the ledger's, for good
                DriftDetected, ModelRolledBack)  # the served model drifted, or failed and was taken out of service
TOPICS: dict[str, tuple[str, ...]] = {
    "equity": (subject(EquityMarked),),
    "fills": (subject(OrderFilled),),
    "decisions": (subject(DecisionMade),),
    "alerts": tuple(subject(c) for c in ALERT_EVENTS),
    "state": (family_wildcard("control"), subject(OrderUpdated)),
}
ALERTS = {c.event_type() for c in ALERT_EVENTS}
KEEPALIVE_S = 15.0


def _topic(event_type: str, wanted: set[str], subject_: str) -> str | None:
    if event_type in ALERTS and "alerts" in wanted:
        return "alerts"
    for name in ("equity", "fills", "decisions", "state"):
        if name in wanted and any(_covers(f, subject_) for f in TOPICS[name]):
            return name
    return None


def _covers(pattern: str, subject_: str) -> bool:
    p, s = pattern.split("."), subject_.split(".")
    for i, part in enumerate(p):
        if part == ">":
            return len(s) > i
        if i >= len(s) or (part != "*" and part != s[i]):
            return False
    return len(p) == len(s)


router = APIRouter(tags=["read"])


@router.get("/stream", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def stream(_: Reader, request: Request, nc: Bus, topics: str = Query(
        "equity,fills,decisions,alerts,state", pattern=r"^(equity|fills|decisions|alerts|state)"
                                                       r"(,(equity|fills|decisions|alerts|state))*$")) -> Any:
    """Server-Sent Events: ``event:`` the topic, ``id:`` the event id, ``data:`` the event's JSON envelope."""
    wanted = set(topics.split(","))
    queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue(maxsize=1000)

    async def on_message(msg: Any) -> None:
        try:
            env = decode(msg.data)
        except UndecodableMessage:
            return
        topic = _topic(env.event_type, wanted, msg.subject)
        if topic is not None and not queue.full():
            queue.put_nowait((topic, str(env.event_id), env.model_dump_json()))

    subs = []
    for filt in sorted({f for name in wanted for f in TOPICS[name]}):
        subs.append(await nc.subscribe(filt, cb=on_message))

    session_id = None if "authorization" in request.headers else request.cookies.get(COOKIE)

    def session_ended() -> bool:
        """A stream opened with the console's cookie ends with its session (expired, logged out, revoked)."""
        return session_id is not None and request.app.state.console_sessions.find(session_id) is None

    async def events() -> AsyncIterator[str]:
        seen: set[str] = set()
        loop = asyncio.get_running_loop()
        checked = loop.time()
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                if loop.time() - checked >= KEEPALIVE_S:  # a busy stream checks too, not only an idle one
                    checked = loop.time()
                    if session_ended():
                        yield "event: session\ndata: {\"ended\": true}\n\n"
                        return
                try:
                    topic, event_id, data = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if event_id in seen:  # overlapping filters deliver some events twice
                    continue
                seen.add(event_id)
                yield f"event: {topic}\nid: {event_id}\ndata: {json.dumps(json.loads(data))}\n\n"
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
