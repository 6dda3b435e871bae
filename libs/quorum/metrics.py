"""Prometheus metrics shared by every service; the ``service`` label tells them apart in one registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter(
    "quorum_events_in_total", "Messages taken from the bus", ["service", "consumer", "event_type"]
)
EVENTS_OUT = Counter("quorum_events_out_total", "Messages published", ["service", "event_type"])
DUPLICATES = Counter(
    "quorum_duplicates_total", "Messages skipped because the inbox had them", ["service", "consumer"]
)
HANDLER_SECONDS = Histogram(
    "quorum_handler_seconds",
    "Handler time including its database transaction",
    ["service", "consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HANDLER_ERRORS = Counter("quorum_handler_errors_total", "Handler failures", ["service", "consumer"])
REDELIVERIES = Counter("quorum_redeliveries_total", "Messages seen more than once", ["service", "consumer"])
DLQ = Counter("quorum_dlq_total", "Messages sent to the dead-letter stream", ["service", "consumer"])
OUTBOX_PENDING = Gauge("quorum_outbox_pending", "Outbox rows not yet published", ["service"])
SERVICE_STATE = Gauge("quorum_service_state", "1 for the lifecycle state the service is in", ["service", "state"])
ROUTING_CONNECTED = Gauge("quorum_routing_connected", "1 while the OMS routes orders, 0 while routing is disconnected",
                          ["mode"])
ORDERS_REFUSED = Counter("quorum_orders_refused_total", "Orders the OMS refused without sending them to a venue",
                         ["mode", "reason"])
