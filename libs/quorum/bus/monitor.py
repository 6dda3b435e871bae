"""How far each durable consumer lags and what each stream holds, read from JetStream into gauges.

One process samples for the whole system (the gateway), so the figures do not depend on which service is
scaled to how many replicas; a consumer not created yet (``quorum provision`` not run) is skipped and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from quorum import telemetry
from quorum.topology import TOPOLOGY, Topology

log = logging.getLogger("quorum.bus.monitor")
DLQ_STREAM = "DLQ"


async def sample(js: JetStreamContext, topology: Topology = TOPOLOGY) -> list[str]:
    """One reading of every stream and consumer; returns the ones that do not exist."""
    missing = []
    for stream in topology.streams:
        try:
            info = await js.stream_info(stream.name)
        except NotFoundError:
            missing.append(stream.name)
            continue
        telemetry.STREAM_MESSAGES.labels(stream.name).set(info.state.messages)
        telemetry.STREAM_BYTES.labels(stream.name).set(info.state.bytes)
        if stream.name == DLQ_STREAM:
            telemetry.DEAD_LETTERS.set(info.state.messages)
    for consumer in topology.consumers:
        try:
            c = await js.consumer_info(consumer.stream, consumer.durable)
        except NotFoundError:
            missing.append(f"{consumer.stream}/{consumer.durable}")
            continue
        labels = (consumer.stream, consumer.durable)
        telemetry.CONSUMER_PENDING.labels(*labels).set(c.num_pending or 0)
        telemetry.CONSUMER_ACK_PENDING.labels(*labels).set(c.num_ack_pending or 0)
        telemetry.CONSUMER_REDELIVERED.labels(*labels).set(c.num_redelivered or 0)
    return missing


async def run(js: JetStreamContext, stopping: asyncio.Event, every_s: float) -> None:
    """Sample every ``every_s`` seconds until ``stopping``; a bus outage only skips a reading."""
    reported: list[str] = []
    while not stopping.is_set():
        try:
            missing = await sample(js)
            if missing != reported:
                if missing:
                    log.warning("not provisioned, so not measured: %s (run `quorum provision`)", ", ".join(missing))
                reported = missing
        except Exception as exc:  # noqa: BLE001 - the bus is away: the next reading will tell
            log.warning("bus metrics not read (%s)", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=every_s)
