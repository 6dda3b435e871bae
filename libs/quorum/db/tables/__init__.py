"""Every table, as SQLAlchemy Core: one module per owning service, all on the one shared ``metadata``.

The Alembic migrations create exactly these (a test compares them). Importing this package imports every
module, so ``metadata`` is complete and ``from quorum.db.tables import <table>`` works for any table.

Time-series tables (candles, features, predictions, equity, order books) become TimescaleDB hypertables when
the extension is available; orders, fills, the ledger and the audit trail always stay plain tables.
"""

from __future__ import annotations

from sqlalchemy import Table

from quorum.db.tables import (
    backtest,
    council,
    feature_store,
    gateway,
    inference,
    learning,
    ledger,
    market_data,
    matching,
    messaging,
    oms,
    optimizer,
    risk,
)
from quorum.db.tables.backtest import backtests, gate_reports
from quorum.db.tables.base import Money, metadata
from quorum.db.tables.council import (
    council_campaigns,
    council_controls,
    council_risk_profile,
    decisions,
    karma_votes,
    signals,
    strategy_failures,
)
from quorum.db.tables.feature_store import features
from quorum.db.tables.gateway import api_tokens, audit_log, confirmation_tokens, exchange_keys, master_pin
from quorum.db.tables.inference import model_selection, predictions
from quorum.db.tables.learning import training_jobs
from quorum.db.tables.ledger import equity, ledger_balances, ledger_entries, ledger_transactions, positions
from quorum.db.tables.market_data import (
    backfill_checkpoints,
    candle_corrections,
    candles,
    order_book_snapshots,
    replay_checkpoints,
)
from quorum.db.tables.matching import matching_state, paper_fills, paper_orders
from quorum.db.tables.messaging import inbox, outbox
from quorum.db.tables.oms import fills, oms_state, order_events, orders, reconciliation_discrepancies, trade_proposals
from quorum.db.tables.optimizer import configurations
from quorum.db.tables.risk import (
    risk_balances,
    risk_checks,
    risk_daily,
    risk_drawdown,
    risk_kill_switch,
    risk_positions,
    risk_profile_state,
    risk_state,
)

HYPERTABLES = ("candles", "features", "predictions", "equity", "order_book_snapshots")

OWNERS: dict[str, str] = {
    table.name: module.OWNER
    for module in (market_data, feature_store, inference, council, risk, oms, matching, ledger, gateway, backtest,
                   optimizer, learning, messaging)
    for table in vars(module).values()
    if isinstance(table, Table)
}
"""Table name -> the service whose module defines it (its owner), or ``runtime`` for the exactly-once plumbing
every service shares; in module order, for the table catalogue generated into docs/architecture.md."""

__all__ = [
    "HYPERTABLES",
    "Money",
    "OWNERS",
    "api_tokens",
    "audit_log",
    "backfill_checkpoints",
    "backtests",
    "candle_corrections",
    "candles",
    "configurations",
    "confirmation_tokens",
    "council_campaigns",
    "council_controls",
    "council_risk_profile",
    "decisions",
    "equity",
    "exchange_keys",
    "features",
    "fills",
    "gate_reports",
    "inbox",
    "karma_votes",
    "ledger_balances",
    "ledger_entries",
    "ledger_transactions",
    "master_pin",
    "matching_state",
    "metadata",
    "model_selection",
    "oms_state",
    "order_book_snapshots",
    "order_events",
    "orders",
    "outbox",
    "paper_fills",
    "paper_orders",
    "positions",
    "predictions",
    "reconciliation_discrepancies",
    "replay_checkpoints",
    "risk_balances",
    "risk_checks",
    "risk_daily",
    "risk_drawdown",
    "risk_kill_switch",
    "risk_positions",
    "risk_profile_state",
    "risk_state",
    "signals",
    "strategy_failures",
    "trade_proposals",
    "training_jobs",
]
