"""Streams, durable consumers and KV buckets, declared once.

Provisioned by ``quorum provision`` (a Makefile target and a compose one-off job), like migrations.
Services only *bind* to what is declared here; a missing consumer keeps a service un-ready, it never
creates one behind the operator's back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quorum.events.base import Payload
from quorum.events.control import (
    ApproveProposal,
    AuthorizeRouting,
    CancelAllOrders,
    ClearEmergencyHalt,
    CloseAllPositions,
    DisconnectRouting,
    EngageKillSwitch,
    HaltTrading,
    RejectProposal,
    ReleaseKillSwitch,
    ResumeTrading,
    RiskProfileChanged,
    SelectModel,
    SetCouncilMode,
    SetOperatingMode,
    SetRiskProfile,
    StartBackfill,
    StartTraining,
)
from quorum.events.features import FeaturesComputed
from quorum.events.fills import OrderFilled
from quorum.events.market_data import CandleClosed, OrderBookSnapshotted
from quorum.events.orders import (
    CancelOrder,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderIntentApproved,
    OrderRejected,
    OrderUpdated,
    SubmitOrder,
)
from quorum.events.predictions import PredictionMade
from quorum.events.signals import DecisionMade
from quorum.subjects import DEAD_LETTER_WILDCARD, family_wildcard, subject

DAY = 86400.0


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    max_age_s: float = 30 * DAY
    duplicate_window_s: float = 600.0  # a replay restart within 10 min is de-duplicated by the server too
    description: str = ""


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer. ``max_deliver`` bounds redelivery; the last failure goes to the DLQ."""

    durable: str
    stream: str
    filters: tuple[str, ...]
    service: str
    max_deliver: int = 5
    ack_wait_s: float = 30.0
    max_ack_pending: int = 1000
    description: str = ""


@dataclass(frozen=True)
class KvSpec:
    bucket: str
    ttl_s: float | None = None
    history: int = 1
    description: str = ""


@dataclass(frozen=True)
class Topology:
    streams: tuple[StreamSpec, ...]
    consumers: tuple[ConsumerSpec, ...]
    kv: tuple[KvSpec, ...] = field(default_factory=tuple)

    def consumer(self, durable: str) -> ConsumerSpec:
        for c in self.consumers:
            if c.durable == durable:
                return c
        raise KeyError(f"consumer {durable!r} is not declared in the topology")

    def consumers_of(self, service: str) -> tuple[ConsumerSpec, ...]:
        return tuple(c for c in self.consumers if c.service == service)


def _all(cls: type[Payload]) -> str:
    return subject(cls)


def _stream(name: str, family: str, description: str, **kw: float) -> StreamSpec:
    return StreamSpec(name=name, subjects=(family_wildcard(family),), description=description, **kw)


STREAMS = (
    _stream("MD", "md", "closed candles and market data"),
    _stream("FEATURES", "features", "feature vectors"),
    _stream("PREDICTIONS", "predictions", "model predictions"),
    _stream("COUNCIL", "council", "signals and council decisions"),
    _stream("ORDERS", "orders", "risk verdicts and OMS order updates"),
    _stream("VENUE", "venue", "commands to venues and their answers"),
    _stream("FILLS", "fills", "executions", max_age_s=365 * DAY),
    _stream("LEDGER", "ledger", "posted journal transactions", max_age_s=365 * DAY),
    _stream("CONTROL", "control", "operator commands and confirmations", max_age_s=365 * DAY),
    _stream("AUDIT", "audit", "audited actions", max_age_s=365 * DAY),
    StreamSpec("DLQ", (DEAD_LETTER_WILDCARD,), max_age_s=90 * DAY, description="dead letters with their error"),
)

CONSUMERS = (
    ConsumerSpec("market-data-control", "CONTROL", (_all(StartBackfill),), "market_data"),
    ConsumerSpec("features-candles", "MD", (_all(CandleClosed),), "features"),
    ConsumerSpec("inference-features", "FEATURES", (_all(FeaturesComputed),), "inference"),
    ConsumerSpec("inference-control", "CONTROL", (_all(SelectModel), _all(StartTraining)), "inference"),
    ConsumerSpec("council-predictions", "PREDICTIONS", (_all(PredictionMade),), "council"),
    ConsumerSpec("risk-decisions", "COUNCIL", (_all(DecisionMade),), "risk"),
    ConsumerSpec("risk-orders", "ORDERS", (_all(OrderUpdated),), "risk"),
    ConsumerSpec("council-fills", "FILLS", (_all(OrderFilled),), "council"),
    ConsumerSpec("council-control", "CONTROL", (_all(SetCouncilMode), _all(RiskProfileChanged)), "council"),
    ConsumerSpec("risk-control", "CONTROL", tuple(_all(c) for c in (
        HaltTrading, ResumeTrading, SetRiskProfile, EngageKillSwitch, ReleaseKillSwitch, ClearEmergencyHalt)), "risk"),
    ConsumerSpec("risk-candles", "MD", (_all(CandleClosed),), "risk"),
    ConsumerSpec("oms-intents", "ORDERS", (_all(OrderIntentApproved),), "oms"),
    ConsumerSpec("oms-fills", "FILLS", (_all(OrderFilled),), "oms"),
    ConsumerSpec("oms-venue", "VENUE", tuple(_all(c) for c in (
        OrderAccepted, OrderRejected, OrderCanceled, OrderExpired)), "oms"),
    ConsumerSpec("oms-control", "CONTROL", tuple(_all(c) for c in (
        AuthorizeRouting, DisconnectRouting, SetOperatingMode, ApproveProposal, RejectProposal, CancelAllOrders,
        CloseAllPositions)), "oms"),
    ConsumerSpec("matching-orders", "VENUE", (subject(SubmitOrder, venue="paper"),
                                              subject(CancelOrder, venue="paper")), "matching"),
    ConsumerSpec("matching-candles", "MD", (_all(CandleClosed),), "matching"),
    ConsumerSpec("matching-books", "MD", (_all(OrderBookSnapshotted),), "matching"),
    ConsumerSpec("ledger-fills", "FILLS", (_all(OrderFilled),), "ledger"),
    ConsumerSpec("ledger-candles", "MD", (_all(CandleClosed),), "ledger"),
)

KV_BUCKETS = (KvSpec("service_health", ttl_s=60.0, description="heartbeats: service -> state"),)

TOPOLOGY = Topology(streams=STREAMS, consumers=CONSUMERS, kv=KV_BUCKETS)
