"""Every table, as SQLAlchemy Core. The Alembic migrations create exactly these (a test compares them).

Time-series tables (candles, features, predictions, equity) become TimescaleDB hypertables when the
extension is available; orders, fills, the ledger and the audit trail always stay plain tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Unconstrained NUMERIC keeps every digit the exchange sent; asdecimal makes reads come back as Decimal.
Money = Numeric(asdecimal=True)


def _ts(name: str = "ts", **kw: object) -> Column:
    return Column(name, DateTime(timezone=True), nullable=False, **kw)  # type: ignore[arg-type]


def _created() -> Column:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


candles = Table(
    "candles",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    _ts(),
    Column("open", Money, nullable=False),
    Column("high", Money, nullable=False),
    Column("low", Money, nullable=False),
    Column("close", Money, nullable=False),
    Column("volume", Money, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol", "timeframe", "ts"),
    Index("ix_candles_time", "ts"),
)

replay_checkpoints = Table(
    "replay_checkpoints",
    metadata,
    Column("source_key", String(512), primary_key=True),
    _ts("last_ts"),
    Column("rows_published", BigInteger, nullable=False),
    Column("rows_rejected", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

backfill_checkpoints = Table(
    "backfill_checkpoints",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("next_since", DateTime(timezone=True), nullable=False, comment="resume fetching from here"),
    Column("rows_written", BigInteger, nullable=False),
    Column("rows_rejected", BigInteger, nullable=False),
    Column("completed", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("exchange", "symbol", "timeframe"),
)

candle_corrections = Table(
    "candle_corrections",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    _ts(),
    Column("previous", JSONB, nullable=False),
    Column("corrected", JSONB, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    _created(),
)

order_book_snapshots = Table(
    "order_book_snapshots",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    _ts(),
    Column("depth", Integer, nullable=False),
    Column("bids", JSONB, nullable=False, comment="[[price, quantity], ...] best first, decimal strings"),
    Column("asks", JSONB, nullable=False, comment="[[price, quantity], ...] best first, decimal strings"),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol", "ts"),
    Index("ix_order_book_snapshots_time", "ts"),
)

features = Table(
    "features",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    _ts(),
    Column("feature_set", String(64), nullable=False),
    Column("close", Money, nullable=False),
    Column("values", JSONB, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol", "timeframe", "feature_set", "ts"),
    Index("ix_features_time", "ts"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    _ts(),
    Column("model_name", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("feature_set", String(64), nullable=False),
    Column("horizon", Integer, nullable=False),
    Column("p_up", Float),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol", "timeframe", "model_version", "ts"),
    Index("ix_predictions_time", "ts"),
)

model_selection = Table(
    "model_selection",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("model_name", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", UUID(as_uuid=True), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("timeframe", String(8), nullable=False),
    _ts(),
    Column("mode", String(16), nullable=False),
    Column("action", String(8), nullable=False),
    Column("intent", String(16), nullable=False, server_default="NONE"),
    Column("fraction", Money, nullable=False, server_default="0"),
    Column("consensus", String(8), nullable=False, server_default="HOLD", comment="the vote alone, before mode"),
    Column("confidence", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("agreement", JSONB, nullable=False, server_default="{}"),
    Column("risk_profile", String(8), nullable=False, server_default="MEDIUM"),
    Column("reason_codes", JSONB, nullable=False),
    Column("model_versions", JSONB, nullable=False),
    Column("feature_set", String(64), nullable=False),
    Column("price", Money, nullable=False),
    Column("stop_loss", Money),
    Column("take_profit", Money),
    Column("client_order_id", String(64), comment="the order this decision may become (non-HOLD only)"),
    _created(),
    UniqueConstraint("exchange", "symbol", "timeframe", "ts", name="uq_decisions_candle"),
    Index("ix_decisions_symbol_ts", "symbol", "ts"),
    Index("ix_decisions_client_order_id", "client_order_id"),
)

signals = Table(
    "signals",
    metadata,
    Column("decision_id", UUID(as_uuid=True), ForeignKey("decisions.decision_id"), nullable=False),
    Column("strategy", String(64), nullable=False),
    Column("producer", String(16), nullable=False, server_default="technical"),
    Column("risk_tag", String(8), nullable=False, server_default="MEDIUM"),
    Column("action", String(8), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("weight", Float, nullable=False),
    Column("eligible", Boolean, nullable=False, server_default="true"),
    Column("filtered_reason", String(32)),
    Column("reason_codes", JSONB, nullable=False),
    Column("stop_loss", Money),
    Column("take_profit", Money),
    Column("metadata", JSONB, nullable=False, server_default="{}"),
    PrimaryKeyConstraint("decision_id", "strategy"),
)

council_controls = Table(
    "council_controls",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False, comment="'*' holds the default for every symbol"),
    Column("mode", String(16), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("solo_strategy", String(64)),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol"),
)

strategy_failures = Table(
    "strategy_failures",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("strategy", String(64), nullable=False),
    Column("error", Text, nullable=False),
    Column("decision_ts", DateTime(timezone=True), nullable=False),
    _created(),
    PrimaryKeyConstraint("exchange", "symbol", "strategy"),
)

council_campaigns = Table(
    "council_campaigns",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("average_cost", Money, nullable=False),
    Column("peak_quantity", Money, nullable=False),
    Column("cost", Money, nullable=False),
    Column("proceeds", Money, nullable=False),
    Column("partials_taken", Integer, nullable=False),
    Column("negative_streak", Integer, nullable=False),
    Column("derisked", Boolean, nullable=False),
    Column("position_id", String(64)),
    PrimaryKeyConstraint("exchange", "symbol"),
)

karma_votes = Table(
    "karma_votes",
    metadata,
    Column("decision_id", UUID(as_uuid=True), nullable=False),
    Column("strategy", String(64), nullable=False),
    Column("producer", String(16), nullable=False),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    _ts(),
    Column("direction", String(8), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("position_id", String(64), comment="the campaign this conviction is judged by; set at entry"),
    Column("outcome_return", Float),
    Column("evaluated_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("decision_id", "strategy"),
    Index("ix_karma_votes_position_id", "position_id"),
)


def _profile_table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("scope", String(16), primary_key=True),
        Column("profile", String(8), nullable=False),
        Column("updated_by", String(200), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )


risk_profile_state = _profile_table("risk_profile_state")  # owned by risk
council_risk_profile = _profile_table("council_risk_profile")  # the council's copy, from RiskProfileChanged

risk_state = Table(
    "risk_state",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("halted", Boolean, nullable=False),
    Column("emergency", Boolean, nullable=False, server_default="false",
           comment="an automatic emergency halt: only ClearEmergencyHalt (confirmed) lifts it"),
    Column("reason", Text, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

risk_balances = Table(
    "risk_balances",
    metadata,
    Column("currency", String(16), primary_key=True),
    Column("amount", Money, nullable=False),
)

risk_positions = Table(
    "risk_positions",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("cost", Money, nullable=False, server_default="0", comment="quote paid for what is held, fees included"),
    Column("last_price", Money),
    Column("pending_client_order_id", String(64)),
    Column("reserved_cash", Money, nullable=False),
    PrimaryKeyConstraint("exchange", "symbol"),
)

risk_kill_switch = Table(
    "risk_kill_switch",
    metadata,
    Column("scope", String(32), primary_key=True, comment="'*' for global, else the symbol"),
    Column("engaged", Boolean, nullable=False),
    Column("automatic", Boolean, nullable=False),
    Column("losing_streak", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

risk_drawdown = Table(
    "risk_drawdown",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("peak", Money, nullable=False),
    Column("equity", Money, nullable=False),
    Column("breached", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

risk_daily = Table(
    "risk_daily",
    metadata,
    Column("day", DateTime(timezone=True), primary_key=True, comment="UTC midnight"),
    Column("start_equity", Money, nullable=False),
)

risk_checks = Table(
    "risk_checks",
    metadata,
    Column("decision_id", UUID(as_uuid=True), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason_code", String(64)),
    Column("quantity", Money),
    Column("checks", JSONB, nullable=False),
    _created(),
)

oms_state = Table(
    "oms_state",
    metadata,
    Column("mode", String(8), primary_key=True),
    Column("routing_connected", Boolean, nullable=False),
    Column("operating_mode", String(16), nullable=False, server_default="FULL_AUTO"),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("client_order_id", String(64), primary_key=True),
    Column("decision_id", UUID(as_uuid=True), unique=True, comment="null for protective and liquidation orders"),
    Column("mode", String(8), nullable=False),
    Column("venue", String(32), nullable=False),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("order_type", String(16), nullable=False),
    Column("time_in_force", String(8), nullable=False, server_default="GTC"),
    Column("purpose", String(16), nullable=False, server_default="ENTRY",
           comment="ENTRY, REENTRY, EXIT, STOP_LOSS, TAKE_PROFIT, LIQUIDATION"),
    Column("quantity", Money, nullable=False),
    Column("limit_price", Money),
    Column("stop_price", Money),
    Column("stop_loss", Money, comment="protective stop to attach once filled"),
    Column("take_profit", Money, comment="take-profit to attach once filled"),
    Column("parent_client_order_id", String(64), comment="the entry a protective order protects"),
    Column("oco_group", String(64), comment="orders of one group: a fill of one cancels the others"),
    Column("status", String(24), nullable=False),
    Column("filled_quantity", Money, nullable=False),
    Column("average_price", Money),
    Column("fees", Money, nullable=False),
    Column("fee_currency", String(16)),
    Column("quote_spent", Money, nullable=False),
    Column("reason_code", String(64)),
    Column("venue_final_status", String(24), comment="how the venue ended the order, once it did"),
    Column("venue_final_filled", Money, comment="what had executed when the venue ended it"),
    Column("reference_ts", DateTime(timezone=True), nullable=False),
    _created(),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_orders_symbol_created", "symbol", "created_at"),
    Index("ix_orders_status", "status"),
)

trade_proposals = Table(
    "trade_proposals",
    metadata,
    Column("decision_id", UUID(as_uuid=True), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("reference_price", Money, nullable=False),
    Column("status", String(16), nullable=False, comment="PENDING, APPROVED, REJECTED, EXPIRED or OBSERVED"),
    Column("intent", JSONB, nullable=False, comment="the approved intent's envelope, acted on at approval"),
    Column("expires_at", DateTime(timezone=True)),
    Column("decided_by", String(200)),
    Column("decided_at", DateTime(timezone=True)),
    _created(),
    Index("ix_trade_proposals_status", "status"),
)

reconciliation_discrepancies = Table(
    "reconciliation_discrepancies",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    _ts(),
    Column("venue", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("client_order_id", String(64)),
    Column("detail", JSONB, nullable=False),
)

order_events = Table(
    "order_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("client_order_id", String(64), ForeignKey("orders.client_order_id"), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("from_status", String(24)),
    Column("to_status", String(24), nullable=False),
    Column("reason_code", String(64)),
    _ts(),
    Index("ix_order_events_order", "client_order_id"),
)

fills = Table(
    "fills",
    metadata,
    Column("fill_id", String(64), primary_key=True),
    Column("client_order_id", String(64), ForeignKey("orders.client_order_id"), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("venue", String(32), nullable=False),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("price", Money, nullable=False),
    Column("fee", Money, nullable=False),
    Column("fee_currency", String(16), nullable=False),
    Column("liquidity", String(8), nullable=False),
    _ts(),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Index("ix_fills_symbol_ts", "symbol", "ts"),
)

paper_orders = Table(
    "paper_orders",
    metadata,
    Column("client_order_id", String(64), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("status", String(24), nullable=False),
    Column("command", JSONB, nullable=False, comment="the SubmitOrder envelope, to resume after a restart"),
    Column("reference_ts", DateTime(timezone=True), nullable=False),
    _created(),
    Index("ix_paper_orders_open", "exchange", "symbol", "status"),
)

paper_fills = Table(
    "paper_fills",
    metadata,
    Column("fill_id", String(64), primary_key=True),
    Column("client_order_id", String(64), nullable=False),
    Column("fill", JSONB, nullable=False, comment="the OrderFilled payload: the venue's own trade history"),
    _ts(),
    Index("ix_paper_fills_order", "client_order_id"),
)

matching_state = Table(
    "matching_state",
    metadata,
    Column("exchange", String(32), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("state", JSONB, nullable=False, comment="the engine's whole per-symbol state (orders, book, RNG)"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("exchange", "symbol"),
)

ledger_transactions = Table(
    "ledger_transactions",
    metadata,
    Column("txn_id", UUID(as_uuid=True), primary_key=True),
    Column("seq", BigInteger, Identity(), nullable=False, unique=True),
    Column("mode", String(8), nullable=False),
    _ts(),
    Column("description", Text, nullable=False),
    Column("source_event_id", UUID(as_uuid=True), unique=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("txn_id", UUID(as_uuid=True), ForeignKey("ledger_transactions.txn_id"), nullable=False),
    Column("account", String(128), nullable=False),
    Column("currency", String(16), nullable=False),
    Column("amount", Money, nullable=False),
    Index("ix_ledger_entries_account", "account"),
    Index("ix_ledger_entries_txn", "txn_id"),
)

ledger_balances = Table(
    "ledger_balances",
    metadata,
    Column("account", String(128), primary_key=True),
    Column("currency", String(16), nullable=False),
    Column("amount", Money, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    comment="projection: the sum of the journal per account, checked by `quorum ledger rebuild`",
)

positions = Table(
    "positions",
    metadata,
    Column("mode", String(8), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("quantity", Money, nullable=False),
    Column("avg_cost", Money, nullable=False),
    Column("realized_pnl", Money, nullable=False),
    Column("fees_paid", Money, nullable=False),
    Column("mark_price", Money),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("mode", "symbol"),
)

equity = Table(
    "equity",
    metadata,
    Column("mode", String(8), nullable=False),
    _ts(),
    Column("equity", Money, nullable=False),
    Column("peak_equity", Money, nullable=False),
    Column("drawdown", Money, nullable=False),
    PrimaryKeyConstraint("mode", "ts"),
    Index("ix_equity_time", "ts"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    _ts(),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("risk_profile", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("details", JSONB, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("prev_hash", String(64), nullable=False, server_default="0" * 64),
    Column("hash", String(64), nullable=False, server_default="",
           comment="HMAC-SHA256 (key QUORUM_CHAIN_KEY, outside the database) over prev_hash and this row"),
    Index("ix_audit_log_ts", "ts"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(16), primary_key=True, comment="public name of the token, used as the audit actor"),
    Column("token_hash", String(64), nullable=False, unique=True, comment="sha256 of the token; never the token"),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False, comment="viewer, operator or admin"),
    Column("created_by", String(200), nullable=False),
    _created(),
    Column("revoked_at", DateTime(timezone=True)),
)

master_pin = Table(
    "master_pin",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("salt", LargeBinary, nullable=False),
    Column("verifier", LargeBinary, nullable=False, comment="scrypt(PIN) for checking it; the key is derived apart"),
    Column("n", Integer, nullable=False),
    Column("r", Integer, nullable=False),
    Column("p", Integer, nullable=False),
    _created(),
)

exchange_keys = Table(
    "exchange_keys",
    metadata,
    Column("key_id", UUID(as_uuid=True), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("label", String(100), nullable=False),
    Column("api_key_hint", String(16), nullable=False, comment="last 4 characters, to recognise the key"),
    Column("ciphertext", LargeBinary, nullable=False, comment="AES-256-GCM of the key and secret"),
    Column("nonce", LargeBinary, nullable=False),
    Column("can_withdraw", Boolean, comment="as the exchange reported at registration; null: not exposed"),
    Column("created_by", String(200), nullable=False),
    _created(),
    Column("revoked_at", DateTime(timezone=True)),
)

confirmation_tokens = Table(
    "confirmation_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True, comment="sha256 of the token; the token itself is never stored"),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("params_hash", String(64), nullable=False, comment="the confirmed request, so a token cannot be reused"),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    _created(),
)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(64), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "event_id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("service", String(32), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("subject", String(255), nullable=False),
    Column("data", LargeBinary, nullable=False),
    _created(),
    Index("ix_outbox_service_id", "service", "id"),
)

HYPERTABLES = ("candles", "features", "predictions", "equity", "order_book_snapshots")
