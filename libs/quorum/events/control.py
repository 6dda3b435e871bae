"""Control family: operator commands (imperative) and the owning service's confirmations (past tense)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, Field

from quorum.events.base import EVERY_SERVICE, Frozen, Payload
from quorum.types import CouncilMode, OperatingMode, RiskProfile, TradingMode


class _Command(Payload):
    KIND = "command"

    actor: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=2000)


class _Confirmation(Payload):
    actor: str
    reason: str = ""


class HaltTrading(_Command):
    FAMILY = "control"
    PRODUCERS = ("gateway",)


class ResumeTrading(_Command):
    FAMILY = "control"
    PRODUCERS = ("gateway",)


class TradingHalted(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("risk",)


class TradingResumed(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("risk",)


class AuthorizeRouting(_Command):
    FAMILY = "control"
    PRODUCERS = ("gateway",)


class DisconnectRouting(_Command):
    FAMILY = "control"
    PRODUCERS = ("gateway",)


class RoutingAuthorized(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("oms",)


class RoutingDisconnected(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("oms",)


class ControlRefused(Payload):
    """A command the owning service would not carry out; a refusal is an event, never an exception."""

    FAMILY = "control"
    PRODUCERS = ("risk", "oms", "inference", "council", "trainer")

    command_type: str
    reason_code: str
    detail: str = ""


class StartBackfill(_Command):
    """Ask market data to backfill history (REST, paginated, resumable) for these series."""

    FAMILY = "control"
    PRODUCERS = ("gateway",)

    exchange: str = Field(pattern=r"^[a-z0-9_]+$")
    symbols: tuple[str, ...] = Field(min_length=1, max_length=100)
    timeframes: tuple[str, ...] = Field(min_length=1, max_length=8)
    since: AwareDatetime
    until: AwareDatetime | None = None


class BackfillStarted(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("market_data",)

    series: int = Field(ge=0, description="number of (symbol, timeframe) series scheduled")


class SetCouncilMode(_Command):
    """Council / Solo / Off for one symbol (or the default for all, when ``symbol`` is None)."""

    FAMILY = "control"
    PRODUCERS = ("gateway",)

    exchange: str = Field(pattern=r"^[a-z0-9_]+$")
    symbol: str | None = Field(default=None, pattern=r"^[A-Z0-9]+/[A-Z0-9]+$")
    mode: CouncilMode
    threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    solo_strategy: str | None = Field(default=None, max_length=64)
    reenable_strategies: bool = Field(default=False, description="let strategies disabled by errors vote again")


class CouncilModeChanged(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("council",)

    exchange: str
    symbol: str | None
    mode: CouncilMode
    threshold: float
    solo_strategy: str | None


class ActivateCouncilConfiguration(_Command):
    """Decide with this configuration from now on: the council's settings with ``overrides`` applied (threshold,
    strategies, campaign parameters), as the optimizer scored it. The ``configurations`` row it names became
    ACTIVE in the same transaction; the council confirms once it decides with it."""

    FAMILY = "control"
    PRODUCERS = ("gateway",)

    configuration_id: UUID
    config_hash: str = Field(pattern=r"^[0-9a-f]{16}$")
    overrides: dict[str, Any] = Field(description="CouncilConfig field -> value (as the runner's council section)")


class CouncilConfigurationActivated(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("council",)

    configuration_id: UUID
    config_hash: str


class SetRiskProfile(_Command):
    FAMILY = "control"
    PRODUCERS = ("gateway",)

    profile: RiskProfile


class RiskProfileChanged(_Confirmation):
    """Owned by risk; the council follows it to filter voters."""

    FAMILY = "control"
    PRODUCERS = ("risk",)

    profile: RiskProfile
    previous: RiskProfile


class SetOperatingMode(_Command):
    """Observe / Semi-Auto / Full-Auto; owned by the OMS."""

    FAMILY = "control"
    PRODUCERS = ("gateway",)

    mode: OperatingMode


class OperatingModeChanged(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("oms",)

    mode: OperatingMode
    previous: OperatingMode


class ApproveProposal(_Command):
    FAMILY = "control"
    PRODUCERS = ("gateway",)

    decision_id: UUID


class RejectProposal(_Command):
    FAMILY = "control"
    PRODUCERS = ("gateway",)

    decision_id: UUID


class ProposalApproved(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("oms",)

    decision_id: UUID
    client_order_id: str


class ProposalRejected(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("oms",)

    decision_id: UUID


class ProposalExpired(_Confirmation):
    """A Semi-Auto proposal nobody approved in time; it never becomes an order."""

    FAMILY = "control"
    PRODUCERS = ("oms",)

    decision_id: UUID


class _SymbolScoped(_Command):
    symbol: str | None = Field(default=None, pattern=r"^[A-Z0-9]+/[A-Z0-9]+$", description="None: every symbol")


class EngageKillSwitch(_SymbolScoped):
    """Close-only for one symbol, or for everything when ``symbol`` is None: exits and stops still work."""

    FAMILY = "control"
    PRODUCERS = ("gateway",)


class ReleaseKillSwitch(_SymbolScoped):
    FAMILY = "control"
    PRODUCERS = ("gateway",)


class KillSwitchEngaged(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("risk",)

    symbol: str | None
    automatic: bool = False


class KillSwitchReleased(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("risk",)

    symbol: str | None


class DrawdownHaltTriggered(Payload):
    """Risk's emergency halt: the portfolio fell ``drawdown_pct`` from its peak, past the profile's limit."""

    FAMILY = "control"
    PRODUCERS = ("risk",)

    peak: Decimal
    equity: Decimal
    drawdown_pct: Decimal
    limit_pct: Decimal
    action: str


class ClearEmergencyHalt(_Command):
    FAMILY = "control"
    PRODUCERS = ("gateway",)


class EmergencyHaltCleared(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("risk",)


class CancelAllOrders(_SymbolScoped):
    """Cancel every open order (a symbol's only, when given)."""

    FAMILY = "control"
    PRODUCERS = ("gateway", "risk")


class CloseAllPositions(_Command):
    """Market-sell every position (spot long-only: closing is selling what is held)."""

    FAMILY = "control"
    PRODUCERS = ("gateway", "risk")


class OrdersCancelRequested(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("oms",)

    orders: int = Field(ge=0, description="open orders a cancel was sent for")


class PositionsCloseRequested(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("oms",)

    orders: int = Field(ge=0, description="market sells sent")


class ShutdownService(_Command):
    """Ask one service to stop gracefully. Delivered live only (no durable consumer): a restarted service must
    never replay an old shutdown."""

    FAMILY = "control"
    PRODUCERS = ("gateway",)
    ROUTING = ("service",)

    service: str = Field(pattern=r"^[a-z_]+$")


class ShutdownAcknowledged(_Confirmation):
    FAMILY = "control"
    PRODUCERS = (EVERY_SERVICE,)

    service: str


class SelectModel(_Command):
    """Make this model version the one inference serves (it must be registered)."""

    FAMILY = "control"
    PRODUCERS = ("gateway",)

    model_name: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)


class ModelSelected(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("inference",)

    model_name: str
    version: str
    previous: str | None


class PromoteModel(_Command):
    """Make this registered version the champion and serve it. Inference loads and checks it first (feature set,
    columns, age) and only then moves the registry's ``champion`` alias, so the alias never names a model that
    was refused."""

    FAMILY = "control"
    PRODUCERS = ("gateway", "trainer")

    model_name: str = Field(min_length=1, max_length=64)
    version: str = Field(pattern=r"^[0-9]{1,9}$")


class RollBackModel(_Command):
    """Serve the model served before the current one again (the ``champion`` alias moves back with it)."""

    FAMILY = "control"
    PRODUCERS = ("gateway",)

    model_name: str = Field(min_length=1, max_length=64, description="the model in service (a guard)")


class ModelPromoted(_Confirmation):
    FAMILY = "control"
    PRODUCERS = ("inference",)

    model_name: str
    version: str
    run_id: str | None
    previous: str | None = Field(description="the model served before, name@version")
    previous_champion: str | None = Field(description="the version the champion alias named before (None: none)")


class ModelRolledBack(_Confirmation):
    """Inference went back to the model served before: an operator asked, or the new one failed on a prediction
    (``automatic``, with the ``error``; that candle was predicted by the restored model)."""

    FAMILY = "control"
    PRODUCERS = ("inference",)

    model_name: str = Field(description="the model taken out of service")
    version: str
    run_id: str | None
    restored: str = Field(description="the model in service now, name@version")
    automatic: bool = False
    error: str | None = Field(default=None, max_length=2000)


class DriftDetected(Payload):
    """The served model's inputs or errors moved beyond the configured limits (at most once per cooldown):
    ``psi`` holds the features past the PSI limit against the reference distribution, ``error_ratio`` the rolling
    MSE of the expected return over the zero-return predictor's on the same realised returns."""

    FAMILY = "control"
    PRODUCERS = ("inference",)

    model_name: str
    model_version: str = Field(description="the registry version (or a built-in model's version)")
    run_id: str | None
    reasons: tuple[str, ...] = Field(min_length=1, description="feature_drift and/or prediction_error")
    at: AwareDatetime = Field(description="open time of the candle that crossed the limit")
    reference: str = Field(description="training (stored with the model) or live (the first rows served)")
    psi: dict[str, float] = Field(description="feature -> population stability index, those past the limit")
    max_psi: float | None
    psi_limit: float
    error_ratio: float | None
    error_limit: float
    rows: int = Field(ge=0, description="feature rows in the compared window")
    error_rows: int = Field(ge=0, description="realised returns in the error window")


class BookDifference(Frozen):
    kind: str = Field(description="cash (the quote currency) or position (a symbol's quantity)")
    asset: str = Field(description="the currency or the symbol")
    risk: Decimal
    ledger: Decimal


class RiskLedgerDiverged(Payload):
    """Risk's view of cash and positions disagreed with the ledger's in two consecutive checks with no order
    activity between: a settlement was lost or doubled, and risk decides on wrong figures until it is fixed."""

    FAMILY = "control"
    PRODUCERS = ("risk",)

    mode: TradingMode
    currency: str
    differences: tuple[BookDifference, ...] = Field(min_length=1)


class StartTraining(_Command):
    """Run one training job. ``request`` is a ``quorum.learning.train.TrainingRequest`` as JSON, validated by the
    trainer (a bad one is refused: ``INVALID_TRAINING_REQUEST``). Whoever sends it wrote the job's
    ``training_jobs`` row in the same transaction; every trainer reads one shared durable consumer, so each
    command goes to one of them. Schema 2: the first version named a model only and was always refused."""

    FAMILY = "control"
    PRODUCERS = ("gateway", "trainer")
    SCHEMA_VERSION = 2

    job_id: UUID
    request: dict[str, Any]


class TrainingStarted(_Confirmation):
    """A trainer claimed the job (``takeover``: from a trainer whose lease ran out) and is running it."""

    FAMILY = "control"
    PRODUCERS = ("trainer",)

    job_id: UUID
    trainer: str
    takeover: bool = False


class TrainingProgressed(Payload):
    """Where a running job is; at most one a second per job."""

    FAMILY = "control"
    PRODUCERS = ("trainer",)

    job_id: UUID
    stage: str
    percent: float = Field(ge=0, le=100)
    fold: int | None = None
    folds: int | None = None
    elapsed_s: float = Field(ge=0)


class TrainingCompleted(Payload):
    """The job registered its model (alias ``challenger``) and the promotion gate gave its verdict; ``promoted``:
    it passed every check and automatic promotion is on, so the trainer asked inference to promote it."""

    FAMILY = "control"
    PRODUCERS = ("trainer",)

    job_id: UUID
    model_name: str
    version: str
    run_id: str
    verdict: dict[str, Any] = Field(description="promote, the failed checks, and each check with its detail")
    promoted: bool


class TrainingFailed(Payload):
    FAMILY = "control"
    PRODUCERS = ("trainer",)

    job_id: UUID
    error: str


class TrainingCanceled(Payload):
    """An operator canceled the job: a running one stopped at its next progress report, a queued one never ran."""

    FAMILY = "control"
    PRODUCERS = ("trainer", "gateway")

    job_id: UUID
    detail: str = ""
