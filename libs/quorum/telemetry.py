"""What operators watch: the trading, council, model, data and pipeline metrics, named once.

Naming: ``quorum_<area>_<what>[_<unit>][_total]``; ``service`` on pipeline metrics, ``symbol`` where a figure is
per market; no label takes an unbounded value (ids, prices, reasons from free text). Most figures follow from the
events a service emits, so they are updated here, once, from the committed envelopes
(:func:`observe_committed`); the few that are state (a book's cash, a service's mode) are set by the owning
service from that state through the small setters below. Counters with known label values are created at start
(:func:`preset`), so a panel shows 0 rather than "No data".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, Info

from quorum.domain.ledger import account
from quorum.events.base import Envelope
from quorum.ledger.book import LedgerBook, LedgerParams
from quorum.risk.book import RiskBook
from quorum.risk.decide import RiskParams
from quorum.risk.sizing import Reason
from quorum.types import Action, OperatingMode, RiskProfile, Side, TradingMode

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BPS_BUCKETS = (-50, -20, -10, -5, -2, -1, 0, 1, 2, 5, 10, 20, 50, 100)

# --- trading ---------------------------------------------------------------------------------------------------
EQUITY = Gauge("quorum_trading_equity_quote", "The book's equity marked to market (ledger)", ["mode"])
PEAK_EQUITY = Gauge("quorum_trading_peak_equity_quote", "Highest equity marked so far (ledger)", ["mode"])
DRAWDOWN = Gauge("quorum_trading_drawdown_ratio", "Fraction of equity below its peak (ledger), 0..1", ["mode"])
DRAWDOWN_LIMIT = Gauge("quorum_risk_drawdown_limit_ratio", "The active risk profile's drawdown halt limit, 0..1")
CASH = Gauge("quorum_risk_cash_quote", "Quote cash available to new trades (reservations deducted)")
EQUITY_RISK = Gauge("quorum_risk_equity_quote", "Equity as risk sizes against it (cash + holdings at marks)")
EXPOSURE = Gauge("quorum_risk_exposure_quote", "Value of the position at its mark", ["symbol"])
CLUSTER_EXPOSURE = Gauge("quorum_risk_cluster_exposure_quote", "Value held per correlation cluster", ["cluster"])
EXPOSURE_LIMIT = Gauge("quorum_risk_exposure_limit_quote", "The active profile's exposure limits at the current "
                       "equity", ["scope"])
POSITION = Gauge("quorum_risk_position_quantity", "Base quantity held", ["symbol"])
POSITIONS_OPEN = Gauge("quorum_risk_positions_open", "Positions held or being entered")
CASH_LEDGER = Gauge("quorum_trading_cash_quote", "Quote cash on the ledger's books", ["mode"])
REALIZED = Gauge("quorum_trading_realized_pnl_quote", "Realized PnL against average cost, fees apart (ledger)",
                 ["mode", "symbol"])
UNREALIZED = Gauge("quorum_trading_unrealized_pnl_quote", "Held quantity at its mark minus its average cost "
                   "(ledger)", ["mode", "symbol"])
FEES_PAID = Gauge("quorum_trading_fees_paid_quote", "Fees paid in quote on the ledger's books", ["mode", "symbol"])
ORDERS = Counter("quorum_orders_total", "Order state changes by the status reached", ["symbol", "status"])
ORDER_REJECTS = Counter("quorum_order_rejects_total", "Intents and orders refused, by who and reason code",
                        ["stage", "reason"])
FILLS = Counter("quorum_fills_total", "Fills", ["symbol", "side", "liquidity"])
FILLED_QUOTE = Counter("quorum_fills_quote_total", "Quote value traded", ["symbol", "side"])
FEES = Counter("quorum_fees_quote_total", "Fees paid, in the fill's fee currency", ["symbol", "currency"])
SLIPPAGE = Histogram("quorum_fill_slippage_bps", "Fill price against the reference price at arrival, in basis "
                     "points; positive = worse for us", ["symbol", "side"], buckets=BPS_BUCKETS)
SLIPPAGE_SUM = Gauge("quorum_fill_slippage_bps_signed_sum", "Sum of the fills' slippage in bps (a histogram with "
                     "negative buckets has no _sum): delta() over its _count's increase is the mean",
                     ["symbol", "side"])
HALTED = Gauge("quorum_risk_halted", "1 while trading is halted", ["kind"])
KILL = Gauge("quorum_risk_kill_switch_engaged", "1 while the kill switch is engaged", ["scope"])
OPERATING_MODE = Gauge("quorum_oms_operating_mode", "1 for the OMS's operating mode", ["operating_mode"])
RISK_PROFILE = Gauge("quorum_risk_profile_active", "1 for the active risk profile", ["profile"])

# --- council ---------------------------------------------------------------------------------------------------
DECISIONS = Counter("quorum_council_decisions_total", "Council decisions", ["symbol", "action", "mode"])
AGREEMENT = Histogram("quorum_council_agreement_ratio", "Weighted agreement of the winning direction", ["symbol"],
                      buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
THRESHOLD = Gauge("quorum_council_threshold_ratio", "Agreement the council needs to act", ["symbol"])
VOTES = Counter("quorum_council_votes_total", "Votes cast", ["strategy", "action"])
VOTES_FILTERED = Counter("quorum_council_votes_filtered_total", "Votes not counted, by filter", ["strategy",
                                                                                                 "reason"])
KARMA = Gauge("quorum_council_karma_hit_rate", "Share of a strategy's scored votes that were right", ["strategy"])
PROPOSALS = Counter("quorum_proposals_total", "Semi-Auto proposals by outcome", ["outcome"])
PROPOSALS_PENDING = Gauge("quorum_proposals_pending", "Semi-Auto proposals waiting for an operator")

# --- model -----------------------------------------------------------------------------------------------------
MODEL_INFO = Info("quorum_model", "The model in service")
MODEL_AGE = Gauge("quorum_model_age_seconds", "Age of the model in service (since it was trained)", ["model"])
PREDICTION_SECONDS = Histogram("quorum_prediction_seconds", "Time to predict one candle", ["model"],
                               buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1))
PREDICTIONS = Counter("quorum_predictions_total", "Predictions made", ["model", "symbol"])
CALIBRATION = Counter("quorum_prediction_calibration_total", "Scored predictions by P(up) bucket and what "
                      "happened", ["model", "bucket", "realized"])
FEATURE_PSI = Gauge("quorum_model_feature_psi", "PSI of each input feature against its training distribution",
                    ["model", "feature"])
TRAINING_JOBS = Counter("quorum_training_jobs_total", "Training jobs by how they ended", ["status"])
TRAINING_RUNNING = Gauge("quorum_training_jobs_running", "Training jobs this trainer is running")

# --- data ------------------------------------------------------------------------------------------------------
CANDLES = Counter("quorum_md_candles_total", "Candles published", ["symbol", "timeframe"])
LAST_CANDLE = Gauge("quorum_md_last_candle_timestamp_seconds", "Open time of the latest candle (market time)",
                    ["symbol", "timeframe"])
LAST_CANDLE_SEEN = Gauge("quorum_md_last_candle_received_timestamp_seconds", "When the latest candle was "
                         "published (wall clock): its age is how stale the data is", ["symbol", "timeframe"])
SOURCE_ACTIVE = Gauge("quorum_md_source_active", "1 for the source a symbol's feed uses", ["symbol", "source"])
FAILOVERS = Counter("quorum_md_source_switches_total", "Feeds moved to another source", ["symbol"])
ROWS_REJECTED = Counter("quorum_md_rows_rejected_total", "Bad market-data rows refused, by reason", ["reason"])

# --- pipeline --------------------------------------------------------------------------------------------------
PIPELINE_LATENCY = Histogram("quorum_pipeline_latency_seconds", "From a candle entering Quorum to this stage's "
                             "event (the envelopes' origin and ingest times)", ["stage"], buckets=LATENCY_BUCKETS)
CONSUMER_PENDING = Gauge("quorum_consumer_pending_messages", "Messages a durable consumer has not been given",
                         ["stream", "consumer"])
CONSUMER_ACK_PENDING = Gauge("quorum_consumer_ack_pending_messages", "Messages given and not yet acknowledged",
                             ["stream", "consumer"])
CONSUMER_REDELIVERED = Gauge("quorum_consumer_redelivered_messages", "Messages delivered more than once, now "
                             "pending", ["stream", "consumer"])
STREAM_MESSAGES = Gauge("quorum_stream_messages", "Messages a stream holds", ["stream"])
STREAM_BYTES = Gauge("quorum_stream_bytes", "Bytes a stream holds", ["stream"])
DEAD_LETTERS = Gauge("quorum_dead_letters", "Messages in the dead-letter stream")

STAGES: Mapping[str, str] = {
    "DecisionMade": "decision", "SubmitOrder": "order", "OrderFilled": "fill", "TransactionPosted": "ledger",
}
"""Event type -> the pipeline stage whose latency it ends."""

_RIGHT = {"up": Action.BUY, "down": Action.SELL}


def _f(value: Decimal | float | None) -> float:
    return float(value) if value is not None else math.nan


def _ts(value: datetime) -> float:
    return value.timestamp()


# --- from committed events ---------------------------------------------------------------------------------------
def observe_committed(service: str, emitted: Iterable[Envelope[Any]], now: datetime | None = None) -> None:
    """Update the metrics that follow from what a unit of work emitted; called once, after its commit."""
    for env in emitted:
        handler = _OBSERVERS.get(env.event_type)
        if handler is not None:
            handler(env.payload)
        stage = STAGES.get(env.event_type)
        if stage is not None and env.origin_time is not None:
            PIPELINE_LATENCY.labels(stage).observe(max(0.0, (env.ingest_time - env.origin_time).total_seconds()))


def _decision(p: Any) -> None:
    DECISIONS.labels(p.symbol, p.action.value, p.mode.value).inc()
    THRESHOLD.labels(p.symbol).set(p.threshold)
    if p.agreement:
        AGREEMENT.labels(p.symbol).observe(max(p.agreement.values()))
    for v in p.votes:
        VOTES.labels(v.strategy, v.action.value).inc()
        if not v.eligible:
            VOTES_FILTERED.labels(v.strategy, _bounded(v.filtered_reason or "filtered")).inc()


def _bounded(reason: str) -> str:
    """A reason code as a label: codes are short upper-case words; free text is cut to its code part."""
    return reason.split(":", 1)[0].split(" ", 1)[0][:40] or "unknown"


def _order_updated(p: Any) -> None:
    ORDERS.labels(p.symbol, p.status.value).inc()


def _intent_refused(p: Any) -> None:
    ORDER_REJECTS.labels("risk", _bounded(p.reason_code)).inc()


def _venue_rejected(p: Any) -> None:
    ORDER_REJECTS.labels("venue", _bounded(p.reason_code)).inc()


def _control_refused(p: Any) -> None:
    ORDER_REJECTS.labels("control", _bounded(p.reason_code)).inc()


def _fill(p: Any) -> None:
    FILLS.labels(p.symbol, p.side.value, p.liquidity.value).inc()
    FILLED_QUOTE.labels(p.symbol, p.side.value).inc(float(p.quantity * p.price))
    FEES.labels(p.symbol, p.fee_currency).inc(float(p.fee))
    if p.arrival_mid is not None:
        bps = slippage_bps(p.side, p.price, p.arrival_mid)
        SLIPPAGE.labels(p.symbol, p.side.value).observe(bps)
        SLIPPAGE_SUM.labels(p.symbol, p.side.value).inc(bps)


def slippage_bps(side: Side, price: Decimal, mid: Decimal) -> float:
    """Basis points paid against the mid: positive when a buy paid more or a sell got less."""
    sign = 1 if side is Side.BUY else -1
    return float(sign * (price - mid) / mid * 10_000)


def _equity(p: Any) -> None:
    equity_marked(p.mode, p.equity, p.peak_equity, p.drawdown)


def equity_marked(mode: TradingMode, equity: Decimal, peak: Decimal, drawdown: Decimal) -> None:
    """The book's equity, its peak and the drawdown from it (an EquityMarked, or the last one stored at start)."""
    EQUITY.labels(mode.value).set(float(equity))
    PEAK_EQUITY.labels(mode.value).set(float(peak))
    DRAWDOWN.labels(mode.value).set(float(drawdown))


def _proposed(p: Any) -> None:
    PROPOSALS.labels("proposed").inc()
    PROPOSALS_PENDING.inc()


def _proposal_ended(outcome: str) -> Any:
    def observe(p: Any) -> None:
        PROPOSALS.labels(outcome).inc()
        PROPOSALS_PENDING.dec()
    return observe


def _candle(p: Any) -> None:
    CANDLES.labels(p.symbol, p.timeframe).inc()
    LAST_CANDLE.labels(p.symbol, p.timeframe).set(_ts(p.ts))
    LAST_CANDLE_SEEN.labels(p.symbol, p.timeframe).set_to_current_time()
    FAILOVERS.labels(p.symbol)  # 0 until the feed fails over


def _source_switched(p: Any) -> None:
    FAILOVERS.labels(p.symbol).inc()
    SOURCE_ACTIVE.labels(p.symbol, p.from_source).set(0)
    SOURCE_ACTIVE.labels(p.symbol, p.to_source).set(1)


def _prediction(p: Any) -> None:
    PREDICTIONS.labels(p.model_name, p.symbol).inc()


def _training_ended(status: str) -> Any:
    def observe(p: Any) -> None:
        TRAINING_JOBS.labels(status).inc()
    return observe


def _halted(p: Any) -> None:
    HALTED.labels("operator").set(1)


def _resumed(p: Any) -> None:
    HALTED.labels("operator").set(0)


def _drawdown_halt(p: Any) -> None:
    HALTED.labels("emergency").set(1)


def _emergency_cleared(p: Any) -> None:
    HALTED.labels("emergency").set(0)


def _kill(value: int) -> Any:
    def observe(p: Any) -> None:
        KILL.labels(p.symbol or "global").set(value)
    return observe


def _operating_mode(p: Any) -> None:
    operating_mode(p.mode)


def _profile(p: Any) -> None:
    risk_profile(p.profile)


_OBSERVERS: dict[str, Any] = {
    "DecisionMade": _decision, "OrderUpdated": _order_updated, "OrderIntentRefused": _intent_refused,
    "OrderRejected": _venue_rejected, "ControlRefused": _control_refused, "OrderFilled": _fill,
    "EquityMarked": _equity, "TradeProposed": _proposed, "ProposalApproved": _proposal_ended("approved"),
    "ProposalRejected": _proposal_ended("rejected"), "ProposalExpired": _proposal_ended("expired"),
    "CandleClosed": _candle, "DataSourceSwitched": _source_switched, "PredictionMade": _prediction,
    "TrainingCompleted": _training_ended("completed"), "TrainingFailed": _training_ended("failed"),
    "TrainingCanceled": _training_ended("canceled"), "TradingHalted": _halted, "TradingResumed": _resumed,
    "DrawdownHaltTriggered": _drawdown_halt, "EmergencyHaltCleared": _emergency_cleared,
    "KillSwitchEngaged": _kill(1), "KillSwitchReleased": _kill(0), "OperatingModeChanged": _operating_mode,
    "RiskProfileChanged": _profile,
}


# --- state setters, for the owning service ------------------------------------------------------------------------
def operating_mode(mode: OperatingMode) -> None:
    for m in OperatingMode:
        OPERATING_MODE.labels(m.value).set(int(m is mode))


def risk_profile(profile: RiskProfile) -> None:
    for p in RiskProfile:
        RISK_PROFILE.labels(p.value).set(int(p is profile))


def risk_book(book: RiskBook, params: RiskParams, symbols: Iterable[str] = ()) -> None:
    """Risk's view of the portfolio: cash, equity, exposure per symbol and cluster against the active profile's
    limits, positions, halt, kill switches and profile. ``symbols``: ones to show at 0 when not held."""
    profile = book.active_profile(params.default_profile)
    limits = params.config.profiles[profile]
    holdings = book.holdings()
    equity = book.cash + sum((h.exposure for h in holdings.values()), Decimal(0))
    CASH.set(float(book.cash))
    EQUITY_RISK.set(float(equity))
    DRAWDOWN_LIMIT.set(float(limits.max_drawdown_pct) / 100)
    EXPOSURE_LIMIT.labels("total").set(float(limits.max_total_exposure.amount(equity)))
    EXPOSURE_LIMIT.labels("cluster").set(float(limits.max_cluster_exposure.amount(equity)))
    clusters: dict[str, Decimal] = {}
    for symbol in {*symbols, *holdings}:
        h = holdings.get(symbol)
        exposure = h.exposure if h is not None else Decimal(0)
        EXPOSURE.labels(symbol).set(float(exposure))
        POSITION.labels(symbol).set(float(h.quantity) if h is not None else 0.0)
        cluster = params.config.cluster_of(symbol)
        clusters[cluster] = clusters.get(cluster, Decimal(0)) + exposure
    for cluster, value in clusters.items():
        CLUSTER_EXPOSURE.labels(cluster).set(float(value))
    POSITIONS_OPEN.set(sum(1 for h in holdings.values() if h.quantity > 0 or h.pending))
    HALTED.labels("operator").set(int(book.halted and not book.emergency))
    HALTED.labels("emergency").set(int(book.emergency))
    kill = book.kill.state
    KILL.labels("global").set(int(kill.global_engaged))
    for symbol in {*symbols, *holdings}:
        KILL.labels(symbol).set(int(symbol in kill.symbols))
    risk_profile(profile)


def ledger_book(book: LedgerBook, params: LedgerParams) -> None:
    """The ledger's books per trading mode: quote cash, and realized / unrealized PnL and fees per symbol."""
    for mode in TradingMode:  # only the modes the book was loaded with
        if account(mode, "cash", params.quote_currency) in book.balances:
            CASH_LEDGER.labels(mode.value).set(float(book.cash(mode, params.quote_currency)))
    for (mode, symbol), holding in book.holdings.items():
        pos = holding.position
        REALIZED.labels(mode.value, symbol).set(float(pos.realized_pnl))
        FEES_PAID.labels(mode.value, symbol).set(float(pos.fees_paid))
        mark = holding.mark
        UNREALIZED.labels(mode.value, symbol).set(float(pos.quantity * (mark - pos.avg_cost)) if mark else 0.0)


def one_hot(gauge: Gauge, values: Iterable[str], active: str) -> None:
    for v in values:
        gauge.labels(v).set(int(v == active))


def calibration_bucket(p_up: float) -> str:
    """P(up) in tenths: "0.5-0.6" (ten label values)."""
    k = min(9, max(0, int(p_up * 10)))
    return f"{k / 10:.1f}-{(k + 1) / 10:.1f}"


RISK_REASONS = tuple(v for k, v in vars(Reason).items() if k.isupper())
VENUE_REASONS = ("INSUFFICIENT_BALANCE", "REJECTED")
ROW_REASONS = ("bad_timestamp", "non_monotonic_time", "not_closed_or_future", "not_a_number", "not_finite")


def preset(service: str) -> None:
    """Create the owning service's labelled series whose label values are known, so they export 0 (or their
    state) before the first event instead of "No data"."""
    if service == "oms":
        for outcome in ("proposed", "approved", "rejected", "expired"):
            PROPOSALS.labels(outcome)
    elif service == "risk":
        for kind in ("operator", "emergency"):
            HALTED.labels(kind)
        KILL.labels("global")
        for code in RISK_REASONS:
            ORDER_REJECTS.labels("risk", code)
    elif service == "matching":
        for code in VENUE_REASONS:
            ORDER_REJECTS.labels("venue", code)
    elif service == "market_data":
        for reason in ROW_REASONS:
            ROWS_REJECTED.labels(reason)
    elif service == "trainer":
        for status in ("completed", "failed", "canceled"):
            TRAINING_JOBS.labels(status)
