"""A NATS connection that reconnects forever (the client's default gives up after ~2 minutes)."""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

log = logging.getLogger("quorum.bus")


async def connect(url: str, *, name: str, initial_retry_s: float = 1.0) -> NATS:
    """Connect, retrying the *first* connection forever too (a service may start before NATS)."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    client: list[NATS] = []

    async def on_disconnected() -> None:
        if client and (client[0].is_closed or client[0].is_draining):
            return  # our own shutdown, not an outage
        log.warning("nats disconnected; reconnecting")

    async def on_reconnected() -> None:
        log.info("nats reconnected")

    attempt = 0
    while True:
        try:
            nc = await nats.connect(
                servers=[url],
                name=name,
                max_reconnect_attempts=-1,  # forever
                reconnect_time_wait=1,
                connect_timeout=3,
                allow_reconnect=True,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                drain_timeout=10,
            )
            client.append(nc)
            return nc
        except Exception as exc:  # noqa: BLE001 - any failure to connect is retried
            attempt += 1
            delay = min(initial_retry_s * 2 ** min(attempt, 5), 15.0)
            log.warning("cannot reach NATS at %s (%s); retrying in %.1fs", url, exc, delay)
            await asyncio.sleep(delay)


def jetstream(nc: NATS) -> JetStreamContext:
    return nc.jetstream(timeout=10)
