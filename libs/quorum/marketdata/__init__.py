"""Market-data helpers shared by the market-data service, backtests and replays.

* ``validation`` (``CandleValidator``, ``SeriesId``), ``keys`` (natural keys, event ids), ``files`` (OHLCV files),
  ``universe`` (which symbols);
* live: ``exchanges`` (ccxt factory, ``SOURCE_ERRORS``), ``candle_feed``, ``failover``, ``books``;
* REST history: ``backfill`` (orchestration, reports), ``bulk`` (vectorised validation), ``store`` (COPY, merge,
  corrections, checkpoints), ``backoff`` (retries), ``gaps`` (find and repair holes), ``backfill_cli``.

Candle time (epoch ms, the timeframe grid) is ``quorum.times``.
"""
