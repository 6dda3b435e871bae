"""Feature sets over candles: ``FeatureEngine`` streams one series candle by candle, ``compute_features`` does a
whole frame at once; for the same spec and candles they produce the same names and the same values."""

from __future__ import annotations

import os
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime
from typing import Protocol

import numpy as np
import polars as pl

from quorum.indicators.batch import Bars, BatchContext
from quorum.indicators.spec import FeatureSetSpec
from quorum.indicators.streaming import Candle
from quorum.times import to_ms

OHLCV = ("ts", "open", "high", "low", "close", "volume")


class CandleLike(Protocol):
    """Anything with candle fields: ``ts`` as epoch ms or an aware datetime, prices as floats or Decimals."""

    @property
    def ts(self) -> int | datetime: ...
    @property
    def open(self) -> object: ...
    @property
    def high(self) -> object: ...
    @property
    def low(self) -> object: ...
    @property
    def close(self) -> object: ...
    @property
    def volume(self) -> object: ...


def as_candle(candle: Candle | CandleLike) -> Candle:
    if isinstance(candle, Candle):
        return candle
    ts = candle.ts
    ms = to_ms(ts) if isinstance(ts, datetime) else int(ts)
    return Candle(ms, float(candle.open), float(candle.high), float(candle.low), float(candle.close),  # type: ignore[arg-type]
                  float(candle.volume))  # type: ignore[arg-type]


class FeatureEngine:
    """Streaming state of one series (one symbol on one timeframe): ``update`` takes each closed candle in order
    and returns every feature of the spec at that candle, ``None`` while a feature is warming up."""

    def __init__(self, spec: FeatureSetSpec) -> None:
        self.spec = spec
        self.count = 0
        self._names = spec.feature_names
        self._steps = [ind.stepper() for ind in spec.indicators]
        position = {name: i for i, name in enumerate(self._names)}
        self._normalizers = [(position[n.feature], n.normalizer()) for n in spec.normalize]

    def update(self, candle: Candle | CandleLike) -> dict[str, float | None]:
        c = as_candle(candle)
        self.count += 1
        values: list[float | None] = []
        for step in self._steps:
            values += step(c)
        for source, normalizer in self._normalizers:
            values.append(normalizer.update(values[source]))
        return dict(zip(self._names, values, strict=True))


class FeatureEngines:
    """One ``FeatureEngine`` per series key (e.g. ``(exchange, symbol, timeframe)``), created on first sight."""

    def __init__(self, spec: FeatureSetSpec) -> None:
        self.spec = spec
        self._engines: dict[Hashable, FeatureEngine] = {}

    def update(self, key: Hashable, candle: Candle | CandleLike) -> dict[str, float | None]:
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines[key] = FeatureEngine(self.spec)
        return engine.update(candle)


def ohlcv_frame(df: pl.DataFrame) -> pl.DataFrame:
    """The OHLCV columns in the dtypes the batch side expects (``ts`` Int64 epoch ms, the rest Float64), e.g. from
    ``quorum.marketdata.files.read_rows``, which keeps prices as text."""
    return df.select(pl.col("ts").cast(pl.Int64), *(pl.col(c).cast(pl.Float64) for c in OHLCV[1:]))


def compute_feature_arrays(bars: Bars, spec: FeatureSetSpec, threads: int | None = None) -> dict[str, np.ndarray]:
    """Every feature of the spec as a float64 array aligned with the bars (NaN while warming up).

    Indicators are independent, and NumPy and Polars release the GIL in their loops, so they run on ``threads``
    threads (default: one per CPU); the results do not depend on the thread count."""
    ctx = BatchContext(bars)
    workers = threads or os.cpu_count() or 1
    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        run = pool.map if pool is not None else map
        columns: dict[str, np.ndarray] = {}
        for ind, values in zip(spec.indicators, run(lambda ind: ind.compute(ctx), spec.indicators), strict=True):
            columns.update(zip(ind.names(), values, strict=True))
        for norm, values in zip(spec.normalize, run(lambda n: n.compute(columns[n.feature]), spec.normalize),
                                strict=True):
            columns[norm.name] = values
    return columns


def compute_features(df: pl.DataFrame, spec: FeatureSetSpec, threads: int | None = None) -> pl.DataFrame:
    """The features of a whole OHLCV frame (columns ``ts, open, high, low, close, volume``, oldest first): ``ts``
    plus one Float64 column per feature, null where the streaming engine would say ``None``."""
    columns = compute_feature_arrays(Bars.from_frame(df.select(OHLCV)), spec, threads)
    return pl.DataFrame(
        [df.get_column("ts"), *(pl.Series(name, values, nan_to_null=True) for name, values in columns.items())]
    )
