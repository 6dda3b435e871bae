"""Benchmark: the full feature set over 1,000,000 candles in batch against TA-Lib on the same data, and the
streaming cost per candle with 30 series updated round-robin. Not a test.

    .venv/bin/python bench/features_bench.py [--rows 1000000] [--repeat 5] [--symbols 30] [--candles 3000]

The candles are the real files in ``shared/data/ohlcv`` one after the other, each rescaled so that it opens where
the previous one closed (one continuous series), repeated until ``--rows``; ``ts`` is re-stamped a minute apart.

TA-Lib computes what it has (SMA, EMA, MACD, RSI, STOCH, WILLR, ATR, BBANDS, MFI, OBV, ROC); for the rest of the
set the reference is built from TA-Lib pieces plus NumPy (Keltner = EMA + ATR, VWAP = SUM / SUM, realized vol =
STDDEV of log returns, z-scores = SMA / STDDEV, min-max and Fibonacci = MAX / MIN, session VWAP = NumPy). Times are
the best of ``--repeat`` runs; ours also single-threaded, for a like-for-like with TA-Lib (single-threaded).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import talib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quorum.indicators import (  # noqa: E402
    Candle,
    FeatureEngine,
    FeatureSetSpec,
    compute_feature_arrays,
    compute_features,
    ohlcv_frame,
)
from quorum.indicators.batch import Bars  # noqa: E402
from quorum.indicators.spec import (  # noqa: E402
    AtrSpec,
    BbandsSpec,
    EmaSpec,
    MacdSpec,
    MfiSpec,
    ObvSpec,
    RocSpec,
    RsiSpec,
    SmaSpec,
    StochSpec,
    WillrSpec,
)
from quorum.marketdata.files import read_rows  # noqa: E402

DATA = Path(os.environ.get("QUORUM_DATA_DIR", REPO.parent / "shared" / "data")) / "ohlcv"
PRICES = ("open", "high", "low", "close")
CORE = FeatureSetSpec(indicators=(SmaSpec(), EmaSpec(), MacdSpec(), RsiSpec(), StochSpec(), WillrSpec(), AtrSpec(),
                                  BbandsSpec(), MfiSpec(), ObvSpec(), RocSpec()), normalize=())


def real_files() -> list[pl.DataFrame]:
    files = sorted(DATA.glob("binance_*.csv"))
    if not files:
        sys.exit(f"no market data in {DATA}: set QUORUM_DATA_DIR to the shared data folder")
    return [ohlcv_frame(read_rows(f)) for f in files]


def continuous(parts: list[pl.DataFrame], rows: int) -> pl.DataFrame:
    """The files end to end until ``rows``, each rescaled to open at the previous close."""
    out: list[pl.DataFrame] = []
    total, last_close = 0, None
    while total < rows:
        for df in parts:
            scale = 1.0 if last_close is None else last_close / df["open"][0]
            df = df.with_columns(pl.col(c) * scale for c in PRICES)
            out.append(df)
            total, last_close = total + df.height, df["close"][-1]
            if total >= rows:
                break
    series = pl.concat(out).head(rows)
    return series.with_columns((pl.int_range(0, rows, dtype=pl.Int64) * 60_000 + 1_735_689_600_000).alias("ts"))


def best_of(repeat: int, run: Callable[[], object]) -> float:
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def talib_core(b: Bars) -> list[np.ndarray]:
    h, lo, c, v = b.high, b.low, b.close, b.volume
    return [talib.SMA(c, 20), talib.EMA(c, 20), *talib.MACD(c, 12, 26, 9), talib.RSI(c, 14), *talib.STOCH(h, lo, c),
            talib.WILLR(h, lo, c, 14), talib.ATR(h, lo, c, 14), *talib.BBANDS(c, 20, 2.0, 2.0), talib.MFI(h, lo, c, v),
            talib.OBV(c, v), talib.ROC(c, 10)]


def _zscore(x: np.ndarray, n: int) -> np.ndarray:
    return (x - talib.SMA(x, n)) / talib.STDDEV(x, n)


def _minmax(x: np.ndarray, n: int) -> np.ndarray:
    low = talib.MIN(x, n)
    return (x - low) / (talib.MAX(x, n) - low)


def _session_vwap(b: Bars, tp: np.ndarray) -> np.ndarray:
    session = b.ts // 86_400_000
    starts = np.flatnonzero(np.concatenate(([True], session[1:] != session[:-1])))
    pv, v = np.cumsum(tp * b.volume), np.cumsum(b.volume)
    offset = np.repeat(starts, np.diff(np.concatenate((starts, [len(b.ts)]))))
    pv_before, v_before = np.concatenate(([0.0], pv))[offset], np.concatenate(([0.0], v))[offset]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pv - pv_before) / (v - v_before)


def _fibonacci(b: Bars, confirm: int = 5) -> list[np.ndarray]:
    window, rows = 2 * confirm + 1, np.arange(len(b.high))
    swings = []
    for prices, extreme in ((b.high, talib.MAX(b.high, window)), (b.low, talib.MIN(b.low, window))):
        found = np.where(np.roll(prices, confirm) == extreme, rows - confirm, -1)
        swings.append(np.maximum.accumulate(found))
    top, bottom = b.high[swings[0]], b.low[swings[1]]
    up = swings[0] >= swings[1]
    return [np.where(up, top - r * (top - bottom), bottom + r * (top - bottom)) for r in (0.236, 0.382, 0.5, 0.618,
                                                                                         0.786)]


def talib_full(b: Bars) -> list[np.ndarray]:
    """The default FeatureSetSpec, the TA-Lib way."""
    h, lo, c, v = b.high, b.low, b.close, b.volume
    out = talib_core(b)
    ema20, atr14, atr10 = out[1], out[8], talib.ATR(h, lo, c, 10)
    upper, middle, lower = out[9:12]
    tp = talib.TYPPRICE(h, lo, c)
    vwap = talib.SUM(tp * v, 20) / talib.SUM(v, 20)
    returns = np.log(c[1:] / c[:-1])
    out += [c / ema20 - 1.0, (upper - lower) / middle, (c - lower) / (upper - lower),
            ema20 + 2.0 * atr10, ema20 - 2.0 * atr10, (ema20 / np.roll(ema20, 5) - 1.0) / 5,
            talib.STDDEV(returns, 20) * math.sqrt(20 / 19), vwap, _session_vwap(b, tp), *_fibonacci(b),
            _zscore(out[-2], 100), _zscore(atr14, 100), _zscore(out[4], 100), _minmax(vwap, 100)]
    return out


def streaming_cost(parts: list[pl.DataFrame], spec: FeatureSetSpec, symbols: int, candles: int) -> float:
    """Microseconds per candle per series, ``symbols`` engines updated round-robin."""
    series = [continuous(parts[i % len(parts):] + parts[: i % len(parts)], candles) for i in range(symbols)]
    feeds = [[Candle(*row) for row in s.select("ts", "open", "high", "low", "close", "volume").iter_rows()]
             for s in series]
    engines = [FeatureEngine(spec) for _ in range(symbols)]
    start = time.perf_counter()
    for i in range(candles):
        for engine, feed in zip(engines, feeds, strict=True):
            engine.update(feed[i])
    return (time.perf_counter() - start) / (symbols * candles) * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--symbols", type=int, default=30)
    p.add_argument("--candles", type=int, default=3000)
    args = p.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/features_bench.py", *sys.argv[1:]]))
    print(f"cpus: {os.cpu_count()}, polars threads: {pl.thread_pool_size()}")

    parts = real_files()
    df = continuous(parts, args.rows)
    bars = Bars.from_frame(df)
    spec = FeatureSetSpec()
    print(f"candles: {df.height:,}; feature set {spec.version}: {len(spec.feature_names)} columns "
          f"({len(spec.indicators)} indicators, {len(spec.normalize)} normalisations)")

    rows = [
        ("TA-Lib core (11 indicators)", best_of(args.repeat, lambda: talib_core(bars)),
         best_of(args.repeat, lambda: compute_feature_arrays(bars, CORE, threads=1)),
         best_of(args.repeat, lambda: compute_feature_arrays(bars, CORE))),
        ("full feature set", best_of(args.repeat, lambda: talib_full(bars)),
         best_of(args.repeat, lambda: compute_feature_arrays(bars, spec, threads=1)),
         best_of(args.repeat, lambda: compute_feature_arrays(bars, spec))),
    ]
    print(f"\n{'batch, ' + format(df.height, ',') + ' candles':34s} {'TA-Lib':>9s} {'ours 1 thr':>11s} {'ratio':>6s}"
          f" {'ours all thr':>13s} {'ratio':>6s}")
    for label, ref, single, multi in rows:
        print(f"{label:34s} {ref * 1e3:7.1f}ms {single * 1e3:9.1f}ms {single / ref:5.2f}x {multi * 1e3:11.1f}ms"
              f" {multi / ref:5.2f}x")
    frame = best_of(args.repeat, lambda: compute_features(df, spec))
    print(f"{'full set as a polars DataFrame':34s} {'':9s} {'':11s} {'':6s} {frame * 1e3:11.1f}ms")

    cost = streaming_cost(parts, spec, args.symbols, args.candles)
    print(f"\nstreaming, {args.symbols} series round-robin x {args.candles:,} candles: {cost:.1f} us per candle per "
          f"series (full set, {len(spec.feature_names)} features)")


if __name__ == "__main__":
    main()
