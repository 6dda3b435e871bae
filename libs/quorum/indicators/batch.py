"""Batch indicators over whole series: NumPy arrays in (float64, oldest first), arrays out, NaN while warming up
(the same leading positions as TA-Lib where TA-Lib has the indicator).

Each function is the batch twin of the class of the same name in ``streaming.py`` and does the same float
operations in the same order, so the two agree bit for bit. The exponential recursions run in Polars'
``ewm_mean(adjust=False)``, whose update is exactly ``ema + (x - ema) * alpha``, the streaming update; the window
sums and extremes come from ``_window``. Guard cases (division by zero, flat windows) are patched on the few rows
they concern rather than with ``np.where`` over every row: the inputs are long and the guards rare.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple

import numpy as np
import polars as pl

from quorum.indicators._window import rolling_max, rolling_min, rolling_moments, rolling_sum, seq_sum
from quorum.indicators.streaming import FIB_LEVELS, TA_EPSILON


def _nan(size: int) -> np.ndarray:
    return np.full(size, np.nan)


def _warm(values: np.ndarray, first: int) -> np.ndarray:
    """Blank the rows before ``first``, the first row with a value."""
    values[:first] = np.nan
    return values


def _set(values: np.ndarray, rows: np.ndarray, value: float) -> np.ndarray:
    """``values[rows] = value`` for the (few) rows of a boolean mask: the guard cases of a formula."""
    values[np.flatnonzero(rows)] = value
    return values


def _flat_rows(highest: np.ndarray, lowest: np.ndarray) -> np.ndarray:
    """Rows whose range is flat by TA-Lib's scaled test (``streaming.is_flat_range``); a cheap bound first."""
    if not len(highest):
        return np.flatnonzero(highest)
    span = np.abs(highest - lowest)
    ends = [reduce(a) for reduce in (np.fmax.reduce, np.fmin.reduce) for a in (highest, lowest)]  # NaN-blind
    scale = 2.0 * float(np.fmax.reduce(np.abs(ends)))  # >= |highest| + |lowest| on every row
    rows = np.flatnonzero(span <= TA_EPSILON * scale)
    h, lo = highest[rows], lowest[rows]
    return rows[np.abs(h - lo) <= TA_EPSILON * (np.abs(h) + np.abs(lo))]


def ema_from(x: np.ndarray, k: float, start: int, seed: float) -> np.ndarray:
    """``out[start] = seed``, then ``out[t] = (x[t] - out[t-1]) * k + out[t-1]``; NaN before ``start``."""
    out = _nan(len(x))
    if start < len(x):
        tail = x[start:].copy()
        tail[0] = seed
        out[start:] = pl.Series(tail).ewm_mean(alpha=k, adjust=False).to_numpy()
    return out


def ema(x: np.ndarray, period: int, k: float | None = None) -> np.ndarray:
    """EMA seeded with the SMA of the first ``period`` values (first value at ``period - 1``)."""
    if len(x) < period:
        return _nan(len(x))
    return ema_from(x, 2.0 / (period + 1) if k is None else k, period - 1, seq_sum(x[:period].tolist()) / period)


def wilder(x: np.ndarray, period: int) -> np.ndarray:
    return ema(x, period, 1.0 / period)


def sma(x: np.ndarray, period: int) -> np.ndarray:
    total = rolling_sum(x, period)
    return np.divide(total, period, out=total)


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    out = _nan(len(close))
    change = np.diff(close)
    gain = wilder(np.maximum(change, 0.0), period)
    loss = wilder(np.maximum(np.negative(change, out=change), 0.0), period)
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        np.multiply(np.divide(gain, total, out=gain), 100.0, out=out[1:])
    _set(out[1:], total == 0.0, 0.0)
    return _warm(out, period)


def roc(close: np.ndarray, period: int = 10) -> np.ndarray:
    out = _nan(len(close))
    then = close[:-period]
    with np.errstate(invalid="ignore", divide="ignore"):
        change = np.divide(close[period:], then, out=out[period:])
        np.multiply(np.subtract(change, 1.0, out=change), 100.0, out=change)
    _set(out[period:], then == 0.0, 0.0)
    return out


def macd(close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, ...]:
    """TA-Lib ``MACD`` alignment (see ``streaming.MACD``): (line, signal, hist)."""
    size = len(close)
    first = slow + signal - 2
    if size <= first:
        return _nan(size), _nan(size), _nan(size)
    slow_ema = ema(close, slow)
    fast_ema = ema_from(close, 2.0 / (fast + 1), slow - 1, seq_sum(close[slow - fast:slow].tolist()) / fast)
    line = np.subtract(fast_ema, slow_ema, out=fast_ema)
    sig = ema_from(line, 2.0 / (signal + 1), first, seq_sum(line[slow - 1:first + 1].tolist()) / signal)
    line = _warm(line, first)
    return line, sig, np.subtract(line, sig, out=slow_ema)


def stochastic(high: np.ndarray, low: np.ndarray, close: np.ndarray, fastk: int = 5, slowk: int = 3,
               slowd: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """TA-Lib ``STOCH`` with SMA smoothing: (slow %K, slow %D), both from bar ``fastk + slowk + slowd - 3``."""
    size = len(close)
    first = fastk + slowk + slowd - 3
    k_out, d_out = _nan(size), _nan(size)
    if size <= first:
        return k_out, d_out
    highest, lowest = rolling_max(high, fastk)[fastk - 1:], rolling_min(low, fastk)[fastk - 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        fast = (close[fastk - 1:] - lowest) / ((highest - lowest) / 100.0)
    fast[_flat_rows(highest, lowest)] = 0.0
    k = sma(fast, slowk)[slowk - 1:]
    k_out[first:] = k[slowd - 1:]
    d_out[first:] = sma(k, slowd)[slowd - 1:]
    return k_out, d_out


def williams_r(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    highest, lowest = rolling_max(high, period), rolling_min(low, period)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (highest - close) / ((highest - lowest) / -100.0)
    out[_flat_rows(highest, lowest)] = 0.0
    return _warm(out, period - 1)


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """From bar 1: ``max(high - low, |high - prev close|, |low - prev close|)``."""
    prev = close[:-1]
    out = high[1:] - low[1:]
    np.maximum(out, np.abs(high[1:] - prev), out=out)
    return np.maximum(out, np.abs(low[1:] - prev), out=out)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    out = _nan(len(close))
    out[1:] = wilder(true_range(high, low, close), period)
    return out


def bollinger(close: np.ndarray, period: int = 20, nbdev: float = 2.0) -> tuple[np.ndarray, ...]:
    """(upper, middle, lower, %b, bandwidth), as ``streaming.BollingerBands``."""
    middle, m2 = rolling_moments(close, period)
    width = np.sqrt(np.divide(m2, period, out=m2), out=m2)
    width *= nbdev
    upper, lower = middle + width, middle - width
    span = np.subtract(upper, lower, out=width)
    with np.errstate(invalid="ignore", divide="ignore"):
        pctb = (close - lower) / span
        bandwidth = span / middle
    _set(pctb, span <= 0.0, 0.5)
    _set(bandwidth, middle == 0.0, 0.0)
    return upper, middle, lower, _warm(pctb, period - 1), _warm(bandwidth, period - 1)


def keltner(close: np.ndarray, middle: np.ndarray, average_range: np.ndarray,
            multiplier: float = 2.0) -> tuple[np.ndarray, ...]:
    """(upper, middle, lower) around a precomputed EMA and ATR (shared with the other features that use them)."""
    width = average_range * multiplier
    middle = _warm(middle.copy(), int(np.argmax(~np.isnan(width))) if len(width) else 0)
    return middle + width, middle, middle - width


def realized_volatility(close: np.ndarray, period: int = 20, periods_per_year: float | None = None) -> np.ndarray:
    out = _nan(len(close))
    returns = np.log(close[1:] / close[:-1])
    _, m2 = rolling_moments(returns, period)
    np.sqrt(np.divide(m2, period - 1, out=m2), out=out[1:])
    if periods_per_year is not None:
        out *= math.sqrt(periods_per_year)
    return out


def obv(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    signed = np.empty(len(close))
    signed[:1] = volume[:1]
    np.multiply(np.sign(np.diff(close)), volume[1:], out=signed[1:])
    return np.cumsum(signed, out=signed)


def _window_count(flags: np.ndarray, period: int) -> np.ndarray:
    """How many of the last ``period`` flags are set (0 before the first full window)."""
    counts = np.zeros(len(flags) + 1, dtype=np.int32)
    np.cumsum(flags, dtype=np.int32, out=counts[1:])
    out = np.zeros(len(flags), dtype=np.int32)
    np.subtract(counts[period:], counts[:-period], out=out[period - 1:])
    return out


def _forward_fill(values: np.ndarray) -> np.ndarray:
    """Each NaN takes the latest earlier value (causal); leading NaNs stay."""
    known = np.where(np.isnan(values), -1, np.arange(len(values)))
    latest = np.maximum.accumulate(known)
    return np.where(latest >= 0, values[np.maximum(latest, 0)], np.nan)


def typical_price(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    tp = high + low
    tp += close
    tp /= 3.0
    return tp


def mfi(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, period: int = 14) -> np.ndarray:
    out = _nan(len(close))
    if len(close) <= period:
        return out
    tp = typical_price(high, low, close)
    still = _flat_rows(tp[1:], tp[:-1])  # the typical price did not move (TA-Lib's dead-zone): no flow
    pos_flow = tp[1:] * volume[1:]
    neg_flow = pos_flow * (tp[1:] < tp[:-1])
    pos_flow -= neg_flow
    pos_flow[still] = neg_flow[still] = 0.0
    no_flow = pos_flow + neg_flow == 0.0
    pos, neg = rolling_sum(pos_flow, period), rolling_sum(neg_flow, period)
    total = pos + neg
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.minimum(np.maximum(pos, 0.0, out=pos), total, out=pos)
        np.multiply(np.divide(value, total, out=value), 100.0, out=out[1:])
    _set(out[1:], total <= 0.0, 0.0)
    if no_flow.any():  # a window without any flow reads 0, whatever rounding left in the running sums
        _set(out[1:], _window_count(no_flow, period) == period, 0.0)
    return _warm(out, period)


def vwap(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, period: int = 20) -> np.ndarray:
    """Rolling VWAP, as ``streaming.VWAP`` (a window with no volume repeats the last value)."""
    pv = rolling_sum(typical_price(high, low, close) * volume, period)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.divide(pv, rolling_sum(volume, period), out=pv)
    idle = volume == 0.0
    if idle.any() and (idle_windows := np.flatnonzero(_window_count(idle, period) == period)).size:
        value[idle_windows] = np.nan
        value = _warm(_forward_fill(value), period - 1)
    return value


def session_vwap(ts: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
                 session_ms: int = 86_400_000) -> np.ndarray:
    """VWAP since the session start, as ``streaming.SessionVWAP``: sums run left to right within each session."""
    if len(ts) == 0:
        return _nan(0)
    session = ts // session_ms
    new = np.concatenate(([True], session[1:] != session[:-1]))
    segment = np.cumsum(new) - 1
    position = np.arange(len(ts)) - np.flatnonzero(new)[segment]
    shape = (int(segment[-1]) + 1, int(position.max()) + 1)

    def running(values: np.ndarray) -> np.ndarray:  # one row per session, cumulated along the row
        grid = np.zeros(shape)
        grid[segment, position] = values
        np.cumsum(grid.T, axis=0, out=grid.T)
        return grid[segment, position]

    pv, v = running(typical_price(high, low, close) * volume), running(volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.divide(pv, v, out=pv)
    return _set(value, v == 0.0, np.nan)


def ema_slope(ema_values: np.ndarray, lookback: int = 5) -> np.ndarray:
    """``(ema_t / ema_{t-lookback} - 1) / lookback`` from a precomputed EMA."""
    out = _nan(len(ema_values))
    then = ema_values[:-lookback]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.divide(ema_values[lookback:], then, out=out[lookback:])
        np.divide(np.subtract(ratio, 1.0, out=ratio), lookback, out=ratio)
    _set(out[lookback:], then == 0.0, 0.0)
    return out


def _latest_swing(prices: np.ndarray, extreme: np.ndarray, confirm: int) -> np.ndarray:
    """Bar of the latest swing confirmed at or before each row (-1 when none): bar ``t - confirm`` is one at
    row ``t`` if its price is the extreme of the ``2 * confirm + 1`` bars centred on it."""
    size = len(prices)
    bars = np.full(size, -1)
    if size > 2 * confirm:
        confirmed = np.flatnonzero(prices[confirm:size - confirm] == extreme[2 * confirm:])
        bars[confirmed + 2 * confirm] = confirmed + confirm
    return np.maximum.accumulate(bars, out=bars)


def fibonacci(high: np.ndarray, low: np.ndarray, confirm: int = 5,
              levels: tuple[float, ...] = FIB_LEVELS) -> tuple[np.ndarray, ...]:
    """One array per level, as ``streaming.FibonacciRetracement``."""
    window = 2 * confirm + 1
    high_bar = _latest_swing(high, rolling_max(high, window), confirm)
    low_bar = _latest_swing(low, rolling_min(low, window), confirm)
    known = (high_bar >= 0) & (low_bar >= 0)
    first = int(np.argmax(known)) if known.any() else len(high)
    top, bottom = high[np.maximum(high_bar, 0)], low[np.maximum(low_bar, 0)]
    up = high_bar >= low_bar
    base = np.where(up, top, bottom)
    toward = np.subtract(top, bottom, out=top)  # the leg, signed toward the far end
    np.negative(toward, out=toward, where=up)
    return tuple(_warm(base + r * toward, first) for r in levels)


class Bars(NamedTuple):
    """The columns of an OHLCV frame as contiguous float64 arrays (``ts`` as int64 epoch ms)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def from_frame(cls, df: pl.DataFrame) -> Bars:
        def column(name: str, dtype: type) -> np.ndarray:
            return np.ascontiguousarray(df.get_column(name).to_numpy(), dtype=dtype)

        return cls(column("ts", np.int64), *(column(c, np.float64) for c in ("open", "high", "low", "close", "volume")))


class BatchContext:
    """The bars of one batch run plus the intermediate series several features share (EMA, ATR): each computed
    once, also when features are computed on several threads."""

    def __init__(self, bars: Bars) -> None:
        self.bars = bars
        self._lock = threading.Lock()
        self._shared: dict[tuple[str, int], Future[np.ndarray]] = {}

    def _once(self, key: tuple[str, int], compute: Callable[[], np.ndarray]) -> np.ndarray:
        with self._lock:
            future = self._shared.get(key)
            owner = future is None
            if future is None:
                future = self._shared[key] = Future()
        if owner:
            try:
                future.set_result(compute())
            except BaseException as exc:
                future.set_exception(exc)
                raise
        return future.result()

    def ema(self, period: int) -> np.ndarray:
        return self._once(("ema", period), lambda: ema(self.bars.close, period))

    def atr(self, period: int) -> np.ndarray:
        b = self.bars
        return self._once(("atr", period), lambda: atr(b.high, b.low, b.close, period))
