"""Trading desk: the book (equity, cash, drawdown against its limit, PnL, fees), exposure against the profile's
limits, the trading state (halts, kill switches, routing, operating mode, risk profile), positions, orders and
fills."""

from __future__ import annotations

from quorum.dashboards.panels import (
    CONNECTED,
    ENGAGED,
    FULL,
    HALF,
    MODE,
    QUARTER,
    SIXTH,
    SYMBOL,
    THIRD,
    Board,
    Section,
    Sql,
    bars,
    graph,
    names,
    number,
    prom,
    rows_table,
    selector,
    sql_in,
    states,
)

EQUITY = selector("quorum_trading_equity_quote", MODE)
DRAWDOWN = selector("quorum_trading_drawdown_ratio", MODE)


def _book() -> Section:
    return Section("Book", [
        number("Equity", prom(f"sum by (mode) ({EQUITY})", "{{mode}}"), unit="currencyUSD", width=SIXTH),
        number("Cash (ledger)", prom(f"sum by (mode) ({selector('quorum_trading_cash_quote', MODE)})", "{{mode}}"),
               unit="currencyUSD", width=SIXTH),
        number("Drawdown", prom(f"max by (mode) ({DRAWDOWN})", "{{mode}}"), unit="percentunit", width=SIXTH,
               description="Fraction of equity below its peak; the halt limit is on the graph beside."),
        number("Open positions", prom("sum(quorum_risk_positions_open)", "open"), width=SIXTH),
        names("Operating mode", prom("max by (operating_mode) (quorum_oms_operating_mode) == 1", "{{operating_mode}}"),
              width=SIXTH, description="Observe, Semi-Auto or Full-Auto (the OMS)."),
        names("Risk profile", prom("max by (profile) (quorum_risk_profile_active) == 1", "{{profile}}"), width=SIXTH),
        graph("Equity and peak", prom(f"sum by (mode) ({EQUITY})", "equity {{mode}}"),
              prom(f"sum by (mode) ({selector('quorum_trading_peak_equity_quote', MODE)})", "peak {{mode}}"),
              unit="currencyUSD"),
        graph("Drawdown against its limit", prom(f"max by (mode) ({DRAWDOWN})", "drawdown {{mode}}"),
              prom("max(quorum_risk_drawdown_limit_ratio)", "halt limit (active profile)"), unit="percentunit",
              min_value=0, description="Risk halts trading when the drawdown reaches the active profile's limit; "
                                       "an alert fires within a margin of it (deploy/prometheus/alerts.yml)."),
        graph("Realized and unrealized PnL",
              prom(f"sum by (symbol) ({selector('quorum_trading_realized_pnl_quote', MODE, SYMBOL)})",
                   "realized {{symbol}}"),
              prom(f"sum by (symbol) ({selector('quorum_trading_unrealized_pnl_quote', MODE, SYMBOL)})",
                   "unrealized {{symbol}}"),
              unit="currencyUSD", description="Against average cost, fees apart (the ledger's books)."),
        graph("Fees paid", prom(f"sum by (symbol) ({selector('quorum_trading_fees_paid_quote', MODE, SYMBOL)})",
                                "{{symbol}}"), unit="currencyUSD"),
    ])


def _state() -> Section:
    return Section("Trading state", [
        states("Halts and kill switches", prom("max by (kind) (quorum_risk_halted)", "halted: {{kind}}"),
               prom(f"max by (scope) ({selector('quorum_risk_kill_switch_engaged')})", "kill switch: {{scope}}"),
               mappings=ENGAGED, width=HALF),
        states("Order routing", prom(f"max by (mode) ({selector('quorum_routing_connected', MODE)})", "{{mode}}"),
               mappings=CONNECTED, width=HALF,
               description="The master toggle: while disconnected the OMS refuses to send orders."),
    ])


def _exposure() -> Section:
    return Section("Exposure", [
        graph("Exposure per symbol", prom(selector("quorum_risk_exposure_quote", SYMBOL), "{{symbol}}"),
              unit="currencyUSD", stacked=True, width=THIRD),
        graph("Exposure per cluster and its limit",
              prom("sum by (cluster) (quorum_risk_cluster_exposure_quote)", "{{cluster}}"),
              prom('max(quorum_risk_exposure_limit_quote{scope="cluster"})', "cluster limit"),
              unit="currencyUSD", width=THIRD),
        graph("Total exposure and its limit", prom("sum(quorum_risk_exposure_quote)", "total exposure"),
              prom('max(quorum_risk_exposure_limit_quote{scope="total"})', "total limit"),
              prom("max(quorum_risk_equity_quote)", "equity (risk)"), prom("max(quorum_risk_cash_quote)",
                                                                           "cash free to trade"),
              unit="currencyUSD", width=THIRD),
        rows_table("Positions", Sql(
            "SELECT mode, symbol, quantity, avg_cost, mark_price, realized_pnl, fees_paid, updated_at\n"
            "FROM positions\n"
            f"WHERE {sql_in('mode', MODE)} AND {sql_in('symbol', SYMBOL)}\n"
            "ORDER BY mode, symbol"), height=6),
    ])


def _orders() -> Section:
    return Section("Orders and fills", [
        bars("Orders by status", prom(f"sum by (status) ({selector('quorum_orders_total', SYMBOL)})", "{{status}}"),
             width=QUARTER, description="Order state changes since the OMS started, by the status reached."),
        bars("Refusals by reason", prom("sum by (stage, reason) (quorum_order_rejects_total)", "{{stage}}: {{reason}}"),
             width=QUARTER, description="Intents risk refused, orders venues rejected, controls refused."),
        graph("Fills per minute", prom(f"sum by (symbol, side) (rate({selector('quorum_fills_total', SYMBOL)}"
                                       "[$__rate_interval])) * 60", "{{symbol}} {{side}}"), width=QUARTER),
        graph("Slippage against the mid at arrival",
              prom("histogram_quantile(0.5, sum by (le) (rate("
                   f"{selector('quorum_fill_slippage_bps_bucket', SYMBOL)}[$__rate_interval])))", "median"),
              prom("histogram_quantile(0.95, sum by (le) (rate("
                   f"{selector('quorum_fill_slippage_bps_bucket', SYMBOL)}[$__rate_interval])))", "p95"),
              unit="suffix: bps", width=QUARTER, description="Positive: worse for us."),
        rows_table("Recent fills", Sql(
            'SELECT ts AS "market time", mode, symbol, side, quantity, price, fee, fee_currency, liquidity, '
            "client_order_id\n"
            "FROM fills\n"
            f"WHERE {sql_in('mode', MODE)} AND {sql_in('symbol', SYMBOL)}\n"
            "ORDER BY ts DESC LIMIT 50"), width=FULL),
        rows_table("Latest orders", Sql(
            "SELECT created_at, mode, symbol, side, order_type, purpose, quantity, status, filled_quantity, "
            "average_price, reason_code, client_order_id\n"
            "FROM orders\n"
            f"WHERE {sql_in('mode', MODE)} AND {sql_in('symbol', SYMBOL)}\n"
            "ORDER BY created_at DESC LIMIT 50"), width=FULL),
    ])


def board() -> Board:
    return Board("quorum-trading", "Quorum — trading desk",
                 "Equity, drawdown against its limit, PnL, exposure, positions, orders and fills.",
                 [MODE, SYMBOL], [_book(), _state(), _exposure(), _orders()])
