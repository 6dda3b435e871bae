"""Response and request models of the gateway's API (money as exact decimal strings)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator
from quorum.types import CouncilMode, OperatingMode, RiskProfile

from .model_schemas import ModelInServiceOut

T = TypeVar("T")
NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _not_a_number(value: Any) -> Any:
    """Timestamps are ISO 8601 text: ``0`` or ``0.5`` is refused, not read as seconds since 1970."""
    if (isinstance(value, int | float | Decimal) and not isinstance(value, bool)) or (
            isinstance(value, str) and NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO 8601 date-time such as 2024-01-01T00:00:00Z, not a number")
    return value


IsoDatetime = Annotated[datetime, BeforeValidator(_not_a_number)]
IsoAwareDatetime = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]
Symbol = Annotated[str, Field(pattern=r"^[A-Z0-9]+/[A-Z0-9]+$", description="BASE/QUOTE")]
Timeframe = Annotated[str, Field(pattern=r"^[0-9]+[mhdw]$", description="1m, 5m, 1h, 1d, ...")]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ServiceHealth(_Out):
    state: str
    last_seen: datetime | None
    stale: bool
    details: dict[str, Any] = Field(default_factory=dict)


class Status(_Out):
    trading_mode: str
    risk_profile: str
    halted: bool
    emergency_halt: bool = False
    halt_reason: str | None
    routing_connected: bool
    routing: str = Field(default="", description="for people: 'connected', or 'disconnected since <time>, N intents "
                                                 "refused' (an OMS restart disconnects it)")
    routing_disconnected_since: datetime | None = Field(default=None, description="when routing was last disconnected")
    intents_refused: int = Field(default=0, description="orders refused ROUTING_DISCONNECTED since the disconnect")
    operating_mode: str | None = None
    kill_switch_global: bool = False
    killed_symbols: list[str] = Field(default_factory=list)
    council_modes: dict[str, str] = Field(default_factory=dict, description="symbol ('*' = default) -> mode")
    data_source: dict[str, Any] | None = Field(default=None, description="market data's source, from its heartbeat")
    model: str | None = None
    model_in_service: ModelInServiceOut | None = Field(default=None, description="inference's model: name, "
                                                       "version, MLflow run, how it was chosen, since when")
    services: dict[str, ServiceHealth]
    last_candle_ts: datetime | None
    config_hash: str | None = Field(default=None, description="the active configuration's hash (the services' "
                                                              "settings as configured)")
    gates: dict[str, str] = Field(default_factory=dict, description="asset -> 'passed', 'failed' or 'no gate report': "
                                                                    "the active configuration's latest gate report")
    dashboards: dict[str, str] = Field(default_factory=dict, description="Grafana dashboard title -> its URL")


class PositionOut(_Out):
    mode: str
    symbol: str
    quantity: Decimal
    avg_cost: Decimal
    mark_price: Decimal | None
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal
    updated_at: datetime


class BalanceOut(_Out):
    mode: str
    kind: str = Field(description="cash or asset")
    currency: str
    amount: Decimal


class OrderOut(_Out):
    client_order_id: str
    decision_id: Any
    mode: str
    venue: str
    exchange: str
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    status: str
    filled_quantity: Decimal
    average_price: Decimal | None
    fees: Decimal
    fee_currency: str | None
    reason_code: str | None
    created_at: datetime
    updated_at: datetime


class FillOut(_Out):
    fill_id: str
    client_order_id: str
    mode: str
    venue: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: str
    ts: datetime


class AuditOut(_Out):
    id: int
    ts: datetime
    actor: str
    action: str
    mode: str
    risk_profile: str
    status: str
    details: dict[str, Any]


class Page(BaseModel, Generic[T]):
    items: list[T]
    limit: int
    offset: int


class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000, examples=["maintenance window"])


class ControlResult(BaseModel):
    action: str
    status: str = Field(description="CONFIRMED, REFUSED or TIMEOUT")
    command_id: str
    confirmation: str | None = None
    detail: str = ""


class BackfillRequest(ControlRequest):
    exchange: str = Field(default="binance", pattern=r"^[a-z0-9_]+$", examples=["binance"])
    symbols: tuple[Symbol, ...] = Field(min_length=1, max_length=100, examples=[["BTC/USDT", "ETH/USDT"]])
    timeframes: tuple[Timeframe, ...] = Field(default=("1h",), min_length=1, max_length=8, examples=[["1h", "1d"]])
    since: IsoAwareDatetime = Field(examples=["2023-01-01T00:00:00Z"])
    until: IsoAwareDatetime | None = None

    @model_validator(mode="after")
    def _window(self) -> BackfillRequest:
        if self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class CouncilModeRequest(ControlRequest):
    exchange: str = Field(default="binance", pattern=r"^[a-z0-9_]+$", examples=["binance"])
    symbol: str | None = Field(default=None, pattern=r"^[A-Z0-9]+/[A-Z0-9]+$", examples=["BTC/USDT"],
                               description="omit to set the default for every symbol without its own setting")
    mode: CouncilMode = Field(examples=["COUNCIL"])
    threshold: float | None = Field(default=None, gt=0.0, le=1.0, examples=[0.45],
                                    description="consensus threshold (Council mode); omit to keep the current one")
    solo_strategy: str | None = Field(default=None, max_length=64, examples=["rsi"])
    reenable_strategies: StrictBool = Field(default=False,
                                            description="let strategies disabled after errors vote again")


class CouncilControlOut(_Out):
    exchange: str
    symbol: str = Field(description="'*' is the default for every symbol")
    mode: str
    threshold: float
    solo_strategy: str | None
    updated_by: str
    updated_at: datetime


class StrategyFailureOut(_Out):
    exchange: str
    symbol: str
    strategy: str
    error: str
    decision_ts: datetime


class CouncilOut(BaseModel):
    risk_profile: str
    controls: list[CouncilControlOut] = Field(description="explicit settings; symbols without one use the default")
    disabled_strategies: list[StrategyFailureOut]


class VoteOut(_Out):
    strategy: str
    producer: str
    risk_tag: str
    action: str
    confidence: float
    weight: float
    eligible: bool
    filtered_reason: str | None
    reason_codes: list[str]
    stop_loss: Decimal | None
    take_profit: Decimal | None
    metadata: dict[str, Any]


class DecisionOut(_Out):
    decision_id: Any
    exchange: str
    symbol: str
    timeframe: str
    ts: datetime
    mode: str
    action: str
    intent: str
    fraction: Decimal
    consensus: str
    confidence: float
    threshold: float
    agreement: dict[str, float]
    risk_profile: str
    reason_codes: list[str]
    model_versions: list[str]
    feature_set: str
    price: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    client_order_id: str | None
    regime: str | None = Field(default=None, description="the market regime the council saw (null while warming up "
                                                         "or for decisions stored before regimes were recorded)")
    votes: list[VoteOut] = Field(default_factory=list)


class CalibrationBinOut(BaseModel):
    lower: float
    upper: float
    n: int
    mean_confidence: float | None
    hit_rate: float | None


class KarmaOut(BaseModel):
    key: str = Field(description="strategy or producer name")
    n: int = Field(description="convictions scored (their campaign has closed)")
    hits: int
    hit_rate: float | None
    average_return: float | None
    brier: float | None
    calibration: list[CalibrationBinOut]
    pending: int = Field(description="convictions whose campaign is still open")


class KarmaScorecard(BaseModel):
    by: str
    rows: list[KarmaOut]


class ConfirmableRequest(ControlRequest):
    confirmation_token: str | None = Field(
        default=None, max_length=200,
        description="omit on the first call of a dangerous action; send the token it returned to confirm")


class ConfirmationRequired(BaseModel):
    action: str
    status: str = Field(default="CONFIRMATION_REQUIRED")
    warning: str
    confirmation_token: str = Field(description="single use; send it back with the same request to confirm")
    expires_at: datetime
    phrase: str | None = Field(default=None, description="the confirmation_phrase the second call must type, "
                                                         "if any")
    pin_required: bool = Field(default=False, description="the second call must also carry the master PIN")


class OperatingModeRequest(ConfirmableRequest):
    mode: OperatingMode = Field(examples=["SEMI_AUTO"])


class RiskProfileChangeRequest(ConfirmableRequest):
    profile: RiskProfile = Field(examples=["LOW"])


class SymbolScopeRequest(ControlRequest):
    symbol: str | None = Field(default=None, pattern=r"^[A-Z0-9]+/[A-Z0-9]+$", examples=["BTC/USDT"],
                               description="omit for every symbol")


class ProposalOut(_Out):
    decision_id: Any
    exchange: str
    symbol: str
    side: str
    quantity: Decimal
    reference_price: Decimal
    status: str
    expires_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime


class KillSwitchOut(_Out):
    scope: str = Field(description="'*' is global")
    engaged: bool
    automatic: bool
    losing_streak: int
    reason: str
    updated_by: str
    updated_at: datetime


class RiskOut(BaseModel):
    risk_profile: str
    limits: dict[str, Any]
    halted: bool
    emergency_halt: bool
    halt_reason: str | None
    drawdown: dict[str, Any] | None
    kill_switches: list[KillSwitchOut]
    cash: Decimal | None


class DiscrepancyOut(_Out):
    id: int
    ts: datetime
    venue: str
    kind: str
    client_order_id: str | None
    detail: dict[str, Any]


class PanicRequest(ConfirmableRequest):
    confirmation_phrase: str | None = Field(default=None, max_length=100, examples=["SELL EVERYTHING"],
                                            description="the second call must type the phrase the first returned")


class TradingModeRequest(ControlRequest):
    mode: str = Field(pattern="^(PAPER|LIVE)$", examples=["LIVE"])


class ServiceRequest(ControlRequest):
    service: str = Field(pattern=r"^[a-z_]+$", examples=["council"])


class ModelRequest(ControlRequest):
    model_name: str = Field(min_length=1, max_length=64, examples=["baseline-momentum"])
    version: str = Field(min_length=1, max_length=64, examples=["1"])


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["grafana"])
    role: str = Field(pattern="^(viewer|operator|admin)$", examples=["viewer"])


class TokenOut(_Out):
    token_id: str
    name: str
    role: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="shown once; only its hash is stored")


class MasterPinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pin: str = Field(min_length=6, max_length=128)
    current_pin: str | None = Field(default=None, max_length=128, description="needed to change an existing PIN")


class LiveConfirmableRequest(ConfirmableRequest):
    confirmation_phrase: str | None = Field(default=None, max_length=100,
                                            description="anything live: type the phrase the first call returned")
    pin: str | None = Field(default=None, max_length=128, description="anything live: the master PIN")


class ExchangeKeyRequest(LiveConfirmableRequest):
    exchange: str = Field(pattern=r"^[a-z0-9_]+$", examples=["binance"])
    label: str = Field(min_length=1, max_length=100, examples=["main trading key"])
    api_key: str = Field(min_length=8, max_length=256)
    secret: str = Field(min_length=8, max_length=512)
    pin: str | None = Field(default=None, max_length=128, description="the master PIN (second call)")

    def __repr__(self) -> str:  # never echo credentials
        return f"ExchangeKeyRequest(exchange={self.exchange!r}, label={self.label!r}, api_key=***, secret=***)"


class ExchangeKeyOut(_Out):
    key_id: Any
    exchange: str
    label: str
    api_key_hint: str
    can_withdraw: bool | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    warning: str | None = None


class AuditVerification(BaseModel):
    ok: bool
    rows: int
    problems: list[str]


class PortfolioOut(BaseModel):
    mode: str
    equity: Decimal | None = Field(description="last mark: cash + holdings at their marks")
    peak_equity: Decimal | None
    drawdown: Decimal | None = Field(description="fraction below the peak")
    cash: Decimal
    holdings_value: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees_paid: Decimal
    positions: int


class EquityPoint(_Out):
    ts: datetime
    equity: Decimal
    peak_equity: Decimal
    drawdown: Decimal


class ErrorOut(BaseModel):
    detail: str


# --- backtests and validation gates -------------------------------------------------------------------------
class WalkForwardRequest(BaseModel):
    """Folds in bars of the data's timeframe: rolling or expanding training windows, the embargo (purge) gap,
    then the test window; the out-of-sample result of each asset goes through the validation gates."""

    model_config = ConfigDict(extra="forbid")

    train_bars: int = Field(ge=1, le=10_000_000, examples=[2160])
    test_bars: int = Field(ge=1, le=10_000_000, examples=[720])
    step_bars: int | None = Field(default=None, ge=1, le=10_000_000,
                                  description="how far each fold moves (default and least: test_bars)")
    embargo_bars: int = Field(default=0, ge=0, le=10_000_000, examples=[24])
    warmup_bars: int | None = Field(default=None, ge=0, le=10_000_000,
                                    description="bars fed before each test window (default: from its training start)")
    mode: Literal["rolling", "expanding"] = "rolling"

    @model_validator(mode="after")
    def _steps(self) -> WalkForwardRequest:
        if self.step_bars is not None and self.step_bars < self.test_bars:
            raise ValueError("step_bars must be at least test_bars: test windows must not overlap")
        return self


EPOCH, LAST_DATE = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


class BacktestRequest(ControlRequest):
    configuration: str = Field(default="default", pattern=r"^[a-z0-9_-]{1,64}$", examples=["solo-rsi"],
                               description="a named configuration of `quorum backtest` ('default': the services' "
                                           "own settings), 'active' (what the council decides with now) or an "
                                           "optimizer configuration's id (GET /configurations)")
    data_file: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,180}\.(csv|parquet)$",
                                  examples=["binance_BTCUSDT_1h.csv"],
                                  description="a file of the shared data's ohlcv/ folder; omit for the stored candles")
    symbols: tuple[Symbol, ...] = Field(default=(), max_length=100, description="only these (default: every one)")
    timeframe: Timeframe | None = Field(default=None, max_length=8,
                                        description="only this one (the candles must have one)")
    since: IsoAwareDatetime | None = Field(default=None, description="first candle's open time, inclusive")
    until: IsoAwareDatetime | None = Field(default=None, description="last candle's open time, inclusive")
    walk_forward: WalkForwardRequest | None = Field(default=None, description="walk-forward and gates instead of "
                                                                              "one backtest")

    @model_validator(mode="after")
    def _window(self) -> BacktestRequest:
        for name, value in (("since", self.since), ("until", self.until)):
            if value is not None and not EPOCH <= value < LAST_DATE:
                raise ValueError(f"{name} must be between 1970 and 2100")
        if self.since is not None and self.until is not None and self.until < self.since:
            raise ValueError("until must not be before since")
        return self


class BacktestOut(_Out):
    id: UUID
    created_at: datetime
    created_by: str
    config_name: str
    config_hash: str
    source: str = Field(description="the data file, or 'candles' (the stored ones)")
    range_start: datetime | None
    range_end: datetime | None
    symbols: list[str]
    timeframe: str | None
    walk_forward: dict[str, Any] | None
    code_version: str
    status: str = Field(description="QUEUED, RUNNING, DONE or FAILED")
    progress: float = Field(description="0 to 1")
    bars: int
    metrics: dict[str, Any] | None = Field(description="a backtest's metrics; a walk-forward's out-of-sample "
                                                       "metrics per asset")
    report_path: str | None
    error: str | None
    finished_at: datetime | None


class BacktestDetail(BacktestOut):
    configuration: dict[str, Any] = Field(description="every service's settings as the run used them")


class GateCriterionOut(BaseModel):
    name: str
    metric: str
    op: str
    threshold: float
    figure: float | None
    passed: bool


class GateReportOut(_Out):
    id: int
    created_at: datetime
    asset: str
    config_hash: str
    passed: bool
    criteria: list[GateCriterionOut]
    walk_forward: dict[str, Any]
    backtest_id: UUID | None


class GatesOut(BaseModel):
    config_hash: str | None = Field(description="the configuration the reports are of")
    reports: list[GateReportOut] = Field(description="the latest report per asset")


class ConfigurationOut(_Out):
    id: UUID
    created_at: datetime
    created_by: str
    config_hash: str
    status: str = Field(description="PROPOSED, ACTIVE, REJECTED or SUPERSEDED")
    profile: RiskProfile = Field(description="the risk profile it was optimized for")
    params: dict[str, Any] = Field(description="the searched parameters' values")
    overrides: dict[str, Any] = Field(description="the council's settings it decides with (CouncilConfig fields)")
    metrics: dict[str, Any] = Field(description="score (final), backtest and live scores, live weight and "
                                                "campaigns, out-of-sample drawdown and the profile's limit, oos "
                                                "metrics")
    active_metrics: dict[str, Any] | None = Field(description="the then active configuration's, on the same data")
    active_config_id: UUID | None
    study: str | None
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    activated_at: datetime | None
    superseded_at: datetime | None


class ConfigurationsOut(BaseModel):
    active: ConfigurationOut | None = Field(description="what the council decides with; null: the services' "
                                                        "settings")
    proposed: list[ConfigurationOut] = Field(description="waiting for an operator, each with its metrics beside "
                                                         "the active one's (active_metrics)")
