"""Consumer lag and stream depths read from a real JetStream into the pipeline gauges."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY
from quorum.bus import monitor
from quorum.bus.publisher import Publisher
from quorum.clock import TestClock
from quorum.events.base import new_envelope
from quorum.events.control import HaltTrading
from quorum.topology import TOPOLOGY, ConsumerSpec, Topology

pytestmark = pytest.mark.integration


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_a_published_command_shows_as_pending_for_the_consumer_that_reads_it(js: Any) -> None:
    halt = new_envelope(HaltTrading(actor="USER:test", reason="lag"), clock=TestClock(), source="test", key="lag")
    await Publisher(js, "test").publish(halt)

    missing = await monitor.sample(js)

    assert missing == []
    risk_control = TOPOLOGY.consumer("risk-control")
    assert gauge("quorum_consumer_pending_messages", stream=risk_control.stream, consumer="risk-control") == 1
    assert gauge("quorum_consumer_ack_pending_messages", stream=risk_control.stream, consumer="risk-control") == 0
    assert gauge("quorum_stream_messages", stream=risk_control.stream) >= 1
    assert gauge("quorum_dead_letters") == 0


async def test_a_consumer_that_was_never_provisioned_is_named_not_measured(js: Any) -> None:
    ghost = Topology(streams=TOPOLOGY.streams[:1],
                     consumers=(ConsumerSpec(durable="ghost", stream=TOPOLOGY.streams[0].name,
                                   filters=TOPOLOGY.streams[0].subjects, service="nobody"),))

    missing = await monitor.sample(js, ghost)

    assert missing == [f"{TOPOLOGY.streams[0].name}/ghost"]
