"""Streams, durable consumers and KV buckets, declared once; and, with a reason, every event type that is
stored in a stream but that no durable consumer reads (a test keeps that list complete and true).

Provisioned by ``quorum provision`` (a Makefile target and a compose one-off job), like migrations.
Services only *bind* to what is declared here; a missing consumer keeps a service un-ready, it never
creates one behind the operator's back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quorum.events.base import Payload
from quorum.events.control import (
    ActivateCouncilConfiguration,
    ApproveProposal,
    AuthorizeRouting,
    CancelAllOrders,
    ClearEmergencyHalt,
    CloseAllPositions,
    DisconnectRouting,
    DriftDetected,
    EngageKillSwitch,
    HaltTrading,
    PromoteModel,
    RejectProposal,
    ReleaseKillSwitch,
    ResumeTrading,
    RiskProfileChanged,
    RollBackModel,
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
    idle_poll_s: float = 2.0  # how long an idle pull waits; a pull made while the consumer is paused never returns


@dataclass(frozen=True)
class KvSpec:
    bucket: str
    ttl_s: float | None = None
    history: int = 1
    description: str = ""


def subjects_overlap(a: str, b: str) -> bool:
    """True when some concrete subject matches both NATS filters (``*`` one token, ``>`` the rest)."""
    x, y = a.split("."), b.split(".")
    for i in range(max(len(x), len(y))):
        p, q = (x[i] if i < len(x) else None), (y[i] if i < len(y) else None)
        if p is None or q is None:
            return False
        if ">" in (p, q):
            return True
        if "*" not in (p, q) and p != q:
            return False
    return True


@dataclass(frozen=True)
class Topology:
    streams: tuple[StreamSpec, ...]
    consumers: tuple[ConsumerSpec, ...]
    kv: tuple[KvSpec, ...] = field(default_factory=tuple)
    # event type -> why no durable consumer reads it (the stream keeps it for live readers, audit and replay)
    consumed_by_none_reason: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def readers(self, subject_filter: str) -> tuple[ConsumerSpec, ...]:
        """The durable consumers that receive at least some messages on ``subject_filter``."""
        return tuple(c for c in self.consumers if any(subjects_overlap(f, subject_filter) for f in c.filters))

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
    # A settled replay pauses this one for each candle's market side: a short idle pull resumes it at once.
    ConsumerSpec("features-candles", "MD", (_all(CandleClosed),), "features", idle_poll_s=0.05),
    ConsumerSpec("inference-features", "FEATURES", (_all(FeaturesComputed),), "inference"),
    ConsumerSpec("inference-control", "CONTROL", (_all(SelectModel), _all(PromoteModel), _all(RollBackModel)),
                 "inference"),
    ConsumerSpec("council-predictions", "PREDICTIONS", (_all(PredictionMade),), "council"),
    ConsumerSpec("risk-decisions", "COUNCIL", (_all(DecisionMade),), "risk"),
    ConsumerSpec("risk-orders", "ORDERS", (_all(OrderUpdated),), "risk"),
    ConsumerSpec("council-fills", "FILLS", (_all(OrderFilled),), "council"),
    ConsumerSpec("council-control", "CONTROL", (_all(SetCouncilMode), _all(RiskProfileChanged),
                                                _all(ActivateCouncilConfiguration)), "council"),
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
    # Every trainer binds this one durable: a work queue, each command goes to one of them.
    ConsumerSpec("trainer-jobs", "CONTROL", (_all(StartTraining),), "trainer",
                 description="training commands, shared by every trainer (a work queue)"),
    ConsumerSpec("trainer-drift", "CONTROL", (_all(DriftDetected),), "trainer",
                 description="inference's drift reports: a retraining job each (QUORUM_TRAINER_RETRAIN_ON_DRIFT)"),
)

KV_BUCKETS = (KvSpec("service_health", ttl_s=60.0, description="heartbeats: service -> state"),)

_CONFIRMATION = ("the owning service's confirmation of a command: its own table holds the state; the gateway "
                 "awaits it live (plain subscription on the control family) and the SSE stream shows it")
_ALERT = "an alert for operators: shown live on the SSE stream (alerts topic); nothing trades on it"
_RECORD = "published for outside readers only: the row written in the same transaction is the record"
_TRAINING = ("the trainer's report on a job: its training_jobs row, written in the same transaction, holds the "
             "state (GET /training/jobs); the SSE stream shows it live")
UNCONSUMED = (
    *((name, _CONFIRMATION) for name in (
        "BackfillStarted", "CouncilConfigurationActivated", "CouncilModeChanged", "EmergencyHaltCleared",
        "KillSwitchReleased", "ModelPromoted", "ModelRolledBack", "ModelSelected",
        "OperatingModeChanged", "OrdersCancelRequested", "PositionsCloseRequested", "ProposalApproved",
        "ProposalRejected", "RoutingAuthorized", "ShutdownAcknowledged", "TradingHalted", "TradingResumed")),
    *((name, _ALERT) for name in (
        "ControlRefused", "DataSourceSwitched", "DrawdownHaltTriggered", "KillSwitchEngaged", "RiskLedgerDiverged",
        "RoutingDisconnected", "StrategyDisabled")),
    *((name, _TRAINING) for name in (
        "TrainingCanceled", "TrainingCompleted", "TrainingFailed", "TrainingProgressed", "TrainingStarted")),
    ("ActionAudited", _RECORD + " (audit_log, hash-chained)"),
    ("TransactionPosted", _RECORD + " (the ledger journal, hash-chained)"),
    ("EquityMarked", _RECORD + " (equity); the SSE equity topic shows it live"),
    ("OrderIntentRefused", _RECORD + " (risk_checks); read back through the gateway's decisions"),
    ("TradeProposed", _RECORD + " (the OMS's proposals); operators list and approve them through the gateway"),
    ("ProposalExpired", _RECORD + " (the OMS's proposals, marked expired); audited as a SYSTEM action"),
    ("ShutdownService", "delivered live only (each service's plain subscription), so a restarted service never "
                        "replays an old shutdown; stored for the record"),
    ("CandleCorrected", "market_data stores the revised candle; downstream services do not recompute features, "
                        "decisions or marks from a revision (what was decided stands); kept for audit and replay"),
)

TOPOLOGY = Topology(streams=STREAMS, consumers=CONSUMERS, kv=KV_BUCKETS, consumed_by_none_reason=UNCONSUMED)
