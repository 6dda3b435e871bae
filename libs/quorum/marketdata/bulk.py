"""Validation in bulk: exchange / OHLCV-file rows to COPY-ready candle text, with ``CandleValidator``'s verdicts.

One vectorised pass accepts the rows that are clean by construction; the validator itself judges any other, so
the outcome is exactly a row-by-row run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl
from pydantic import ValidationError

from quorum.events.market_data import CandleClosed
from quorum.marketdata.keys import candle_event_id, candle_event_ids
from quorum.marketdata.validation import PRICES, CandleValidator, SeriesId
from quorum.times import EPOCH, from_ms, to_ms
from quorum.types import timeframe_seconds

ROW_COLUMNS = ("ts", *PRICES)  # an exchange row / an OHLCV file row, as text
_DIGITS = r"^[0-9]+(?:\.[0-9]+)?$"  # plain digits: Decimal and PostgreSQL read them exactly; finite and >= 0
_EXACT_DIGITS = 15  # a decimal of up to 15 significant digits keeps its value's order as a float (DBL_DIG)


def _text(value: object) -> str | None:
    """As ``validation.to_decimal`` reads it: a float by its shortest repr, anything else by ``str``."""
    return None if value is None else repr(value) if isinstance(value, float) else str(value)


def rows_frame(rows: Sequence[Sequence[object]]) -> pl.DataFrame:
    """ccxt OHLCV rows (``[ts_ms, o, h, l, c, v]``; numbers as text or floats) as an all-text frame."""
    return pl.DataFrame([[_text(v) for v in r[:6]] for r in rows], schema=dict.fromkeys(ROW_COLUMNS, pl.String),
                        orient="row")


def accepted_frame(rows: pl.DataFrame, validator: CandleValidator, *, now: datetime) -> pl.DataFrame:
    """Validate rows (``ROW_COLUMNS``, text) in order; the accepted ones as COPY-ready text in ``store.COLUMNS`` order.

    The verdicts are exactly ``validator.check`` on every row, in order (rejections are counted by reason in
    ``validator.rejections``), but cheap: a row that passes every rule by construction (plain digits with at
    most 15 digits, so float comparisons are exact; a whole-second open time above every earlier
    one, and closed by ``now``) is accepted in one vectorised pass, and only the others, normally none, go
    through ``validator.check`` itself, with ``validator.last`` as a row-by-row run would have it.
    """
    s = validator.series
    step_ms = timeframe_seconds(s.timeframe) * 1000
    ts = pl.when(pl.col("ts").str.contains("^[0-9]{1,15}$")).then(pl.col("ts").cast(pl.Int64, strict=False))
    digits = [pl.col(p).str.contains(_DIGITS)  # at most 15 digits, counting leading and trailing zeros too
              & (pl.col(p).str.len_bytes() - pl.col(p).str.contains(".", literal=True) <= _EXACT_DIGITS)
              for p in PRICES]
    o, h, lo, c = (pl.col(p).cast(pl.Float64, strict=False) for p in PRICES[:4])
    clean = (
        pl.lit(_series_valid(s)) & ts.is_not_null() & (ts % 1000 == 0)
        & (ts > ts.cum_max().forward_fill().shift(1).fill_null(-1)) & (ts + step_ms <= to_ms(now))
        & pl.all_horizontal(digits) & (lo > 0) & (lo <= o) & (o <= h) & (lo <= c) & (c <= h)
    )  # (plain digits are >= 0: the volume needs no check of its own)
    frame = rows.with_columns(_ts=ts, _clean=clean.fill_null(False))
    stamps = frame["_ts"].to_list()
    accept = frame["_clean"].to_list()
    exact: list[CandleClosed] = []
    start = 0
    for stop in [*(i for i, ok in enumerate(accept) if not ok), len(accept)]:
        # a run of clean rows is strictly increasing: it is accepted whole iff its first row is after ``last``
        if start < stop:
            if validator.last is None or stamps[start] > to_ms(validator.last):
                validator.last = from_ms(stamps[stop - 1])
            else:
                for i in range(start, stop):
                    accept[i] = False
                    exact += _check(validator, frame.row(i), now)
        if stop < len(accept):
            exact += _check(validator, frame.row(stop), now)
        start = stop + 1
    iso = pl.from_epoch(pl.col("_ts"), time_unit="ms").dt.replace_time_zone("UTC").dt.strftime(
        "%Y-%m-%dT%H:%M:%S+00:00")  # = datetime.isoformat() for whole seconds
    bulk = frame.filter(pl.Series(accept, dtype=pl.Boolean)).select(
        pl.lit(s.exchange).alias("exchange"), pl.lit(s.symbol).alias("symbol"), pl.lit(s.timeframe).alias("timeframe"),
        iso.alias("ts"), *PRICES)
    bulk = bulk.with_columns(candle_event_ids(  # candle_key, vectorised
        bulk.select(pl.concat_str(pl.lit(f"{s.exchange}|{s.symbol}|{s.timeframe}|"), "ts").alias("key"))["key"]))
    if exact:
        singles = pl.DataFrame(
            [(c.exchange, c.symbol, c.timeframe, c.ts.isoformat(), *(str(getattr(c, p)) for p in PRICES),
              candle_event_id(c).hex) for c in exact], schema=bulk.schema, orient="row")
        bulk = pl.concat([bulk, singles]).sort("ts")
    return bulk


def _series_valid(s: SeriesId) -> bool:
    """Whether a candle of this series can exist at all (the exchange, symbol and timeframe fields validate)."""
    try:
        CandleClosed(exchange=s.exchange, symbol=s.symbol, timeframe=s.timeframe, ts=EPOCH, open=1, high=1, low=1,
                     close=1, volume=0)
    except ValidationError:
        return False
    return True


def _check(validator: CandleValidator, row: tuple[object, ...], now: datetime) -> list[CandleClosed]:
    candle = validator.check(*row[:6], now=now)
    return [] if candle is None else [candle]
