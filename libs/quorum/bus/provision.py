"""Create or update the declared topology. Run explicitly (``quorum provision``), never by services."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from quorum.topology import TOPOLOGY, ConsumerSpec, StreamSpec, Topology

log = logging.getLogger("quorum.provision")


def stream_config(spec: StreamSpec) -> api.StreamConfig:
    return api.StreamConfig(
        name=spec.name,
        description=spec.description or None,
        subjects=list(spec.subjects),
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        max_age=spec.max_age_s,
        duplicate_window=spec.duplicate_window_s,
        discard=api.DiscardPolicy.OLD,
    )


def consumer_config(spec: ConsumerSpec) -> api.ConsumerConfig:
    single = len(spec.filters) == 1
    return api.ConsumerConfig(
        durable_name=spec.durable,
        description=spec.description or f"{spec.service}: {', '.join(spec.filters)}",
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        filter_subject=spec.filters[0] if single else None,
        filter_subjects=None if single else list(spec.filters),
    )


async def provision(js: JetStreamContext, topology: Topology = TOPOLOGY) -> list[str]:
    """Idempotent: creates what is missing, updates what changed. Returns a line per object."""
    report: list[str] = []
    for s in topology.streams:
        cfg = stream_config(s)
        try:
            await js.stream_info(s.name)
        except NotFoundError:
            await js.add_stream(cfg)
            report.append(f"stream {s.name}: created")
        else:
            await js.update_stream(cfg)
            report.append(f"stream {s.name}: up to date")
    for c in topology.consumers:
        await js.add_consumer(c.stream, consumer_config(c))  # create-or-update for a durable
        report.append(f"consumer {c.stream}/{c.durable}: ok")
    for kv in topology.kv:
        await js.create_key_value(
            api.KeyValueConfig(bucket=kv.bucket, ttl=kv.ttl_s, history=kv.history, description=kv.description,
                               storage=api.StorageType.FILE)
        )
        report.append(f"kv {kv.bucket}: ok")
    for line in report:
        log.info(line)
    return report
