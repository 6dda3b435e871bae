"""Market data: how fresh each feed is, which source it uses and its failovers, gaps found and repaired, rows
refused by reason, and the latest candles with our fills on them."""

from __future__ import annotations

from quorum.dashboards.panels import (
    HALF,
    QUARTER,
    SYMBOL,
    TIMEFRAME,
    Board,
    Section,
    Sql,
    bars,
    by_x,
    graph,
    names,
    number,
    prom,
    selector,
    sql_in,
)

LAST_SEEN = selector("quorum_md_last_candle_received_timestamp_seconds", SYMBOL, TIMEFRAME)
CANDLE_COUNT = 300

# The latest candles of one feed (the selected symbol; among the selected timeframes, the one that published
# last) with the average price of our buys and sells within each candle. Market time on a numeric axis, so a
# replay of old history shows whatever the dashboard's time range.
CANDLES_WITH_FILLS = f"""
WITH series AS (
  SELECT exchange, symbol, timeframe FROM candles
  WHERE {sql_in('symbol', SYMBOL)} AND {sql_in('timeframe', TIMEFRAME)}
  ORDER BY ts DESC LIMIT 1
), recent AS (
  SELECT c.exchange, c.symbol, c.ts, c.close FROM candles c JOIN series USING (exchange, symbol, timeframe)
  ORDER BY c.ts DESC LIMIT {CANDLE_COUNT}
), bars AS (
  SELECT exchange, symbol, ts, close, lead(ts) OVER (ORDER BY ts) AS next_ts FROM recent
)
SELECT (extract(epoch FROM b.ts) * 1000)::bigint AS "market time", b.close::float8 AS close,
  (SELECT avg(f.price)::float8 FROM fills f WHERE f.exchange = b.exchange AND f.symbol = b.symbol
     AND f.side = 'BUY' AND f.ts >= b.ts AND (b.next_ts IS NULL OR f.ts < b.next_ts)) AS buy,
  (SELECT avg(f.price)::float8 FROM fills f WHERE f.exchange = b.exchange AND f.symbol = b.symbol
     AND f.side = 'SELL' AND f.ts >= b.ts AND (b.next_ts IS NULL OR f.ts < b.next_ts)) AS sell
FROM bars b
ORDER BY b.ts
"""


def _freshness() -> Section:
    return Section("Freshness", [
        number("Candle age", prom(f"time() - max by (symbol, timeframe) ({LAST_SEEN})", "{{symbol}} {{timeframe}}"),
               unit="s", width=QUARTER, show_names=True,
               description="Wall-clock time since each feed last published a candle: stale data shows here first."),
        number("Latest candle (market time)",
               prom("max by (symbol, timeframe) ("
                    f"{selector('quorum_md_last_candle_timestamp_seconds', SYMBOL, TIMEFRAME)}) * 1000",
                    "{{symbol}} {{timeframe}}"),
               unit="dateTimeAsIso", width=QUARTER, show_names=True),
        graph("Candle age over time", prom(f"time() - max by (symbol, timeframe) ({LAST_SEEN})",
                                           "{{symbol}} {{timeframe}}"), unit="s", width=QUARTER),
        graph("Candles per minute", prom("sum by (symbol, timeframe) (rate("
                                         f"{selector('quorum_md_candles_total', SYMBOL, TIMEFRAME)}"
                                         "[$__rate_interval])) * 60", "{{symbol}} {{timeframe}}"), width=QUARTER),
    ])


def _sources() -> Section:
    return Section("Sources and quality", [
        names("Source in use", prom(f"max by (symbol, source) ({selector('quorum_md_source_active', SYMBOL)}) == 1",
                                    "{{symbol}}: {{source}}"), width=QUARTER),
        bars("Source switches (failovers)",
             prom(f"sum by (symbol, reason) ({selector('quorum_md_source_switches_total', SYMBOL)})",
                  "{{symbol}}: {{reason}}"), width=QUARTER),
        bars("Gaps found and repaired", prom("sum by (outcome) (quorum_md_gaps_total)", "{{outcome}}"), width=QUARTER),
        bars("Rows refused by reason", prom("sum by (reason) (quorum_md_rows_rejected_total)", "{{reason}}"),
             width=QUARTER, description="Bad market-data rows (validation) that never became candles."),
        graph("Replayed rows per minute", prom("sum by (outcome) (rate(quorum_md_rows_total[$__rate_interval])) * 60",
                                               "{{outcome}}"), width=HALF),
        graph("Refused rows per minute",
              prom("sum by (reason) (rate(quorum_md_rows_rejected_total[$__rate_interval])) * 60", "{{reason}}"),
              width=HALF),
    ])


def _candles() -> Section:
    return Section("Candles with trades", [
        by_x("$symbol: latest candles and our fills", Sql(CANDLES_WITH_FILLS), x_field="market time",
             point_fields=("buy", "sell"), repeat=SYMBOL,
             description=f"The last {CANDLE_COUNT} candles by market time, close price, with the average price "
                         "of the fills in each candle as points."),
    ])


def board() -> Board:
    return Board("quorum-market-data", "Quorum — market data",
                 "Freshness, sources and failovers, gaps, refused rows, and the latest candles with our fills.",
                 [SYMBOL, TIMEFRAME], [_freshness(), _sources(), _candles()])

