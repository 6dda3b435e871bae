"""Multi-timeframe features without look-ahead: higher-timeframe candles built from lower ones, and their
features attached to lower-timeframe rows as of the last higher candle that had CLOSED.

Candles are keyed by open time (``ts``, epoch ms). A higher candle opening at ``T`` closes at ``T + duration``:
its features exist from then on, so they join lower rows whose open time is ``>= T + duration``. With 1h over
5m, the 10:00 hour is visible to the 11:00 five-minute row and never to the 10:55 one (which opened while the
hour was still forming, even if it closes at 11:00 too).
"""

from __future__ import annotations

import polars as pl

from quorum.types import timeframe_seconds

_VISIBLE_AT = "__visible_at"


def timeframe_ms(timeframe: str | int) -> int:
    """'5m' -> 300000; an int is taken as milliseconds already."""
    return timeframe if isinstance(timeframe, int) else timeframe_seconds(timeframe) * 1000


def resample(df: pl.DataFrame, timeframe: str | int) -> pl.DataFrame:
    """OHLCV candles of a higher timeframe from lower ones (``ts`` ascending), buckets aligned to the epoch (UTC).
    The last bucket may be incomplete; ``join_closed`` never shows it before its close anyway."""
    every = timeframe_ms(timeframe)
    return (
        df.sort("ts")
        .group_by((pl.col("ts") // every * every).alias("ts"), maintain_order=True)
        .agg(pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(),
             pl.col("volume").sum())
    )


def join_closed(lower: pl.DataFrame, higher: pl.DataFrame, higher_timeframe: str | int,
                suffix: str | None = None) -> pl.DataFrame:
    """``lower`` plus, on each row, the columns of ``higher`` (features keyed by their candle's open time ``ts``)
    from the latest higher candle closed at or before the row's open time; null before the first one. Added
    columns are renamed ``<name><suffix>`` (default ``_<timeframe>``, e.g. ``rsi_14_1h``), and ``ts<suffix>``
    says which higher candle was used."""
    every = timeframe_ms(higher_timeframe)
    suffix = f"_{higher_timeframe}" if suffix is None else suffix
    right = higher.sort("ts").with_columns((pl.col("ts") + every).alias(_VISIBLE_AT))
    right = right.rename({c: f"{c}{suffix}" for c in higher.columns})
    return (
        lower.sort("ts")
        .join_asof(right, left_on="ts", right_on=_VISIBLE_AT, strategy="backward")
        .drop(_VISIBLE_AT)
    )
