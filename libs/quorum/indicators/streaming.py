"""Streaming indicators: one object per series, ``update`` consumes one closed value or candle in O(1)
(amortised: window extremes, and window sums restarting every 128 values, see ``_window``) and returns the
indicator at that step, or ``None`` while warming up.

Price-only indicators (SMA, EMA, RSI, ROC, MACD, Bollinger, EMA slope, realized volatility) take the close as a
float, so they compose (MACD's signal is an EMA of its line, normalizers feed on features); the others take a
``Candle``. Each class has a batch twin in ``batch.py`` that does the same float operations in the same order, so
the two agree bit for bit. TA-Lib semantics are documented where they are not obvious.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np

from quorum.indicators._window import RollingExtreme, RollingMoments, RollingSum

TA_EPSILON = 1e-14
"""TA-Lib treats a high-low range within this fraction of ``|high| + |low|`` as flat (its scaled dead-zone)."""


class Candle(NamedTuple):
    """One closed candle. ``ts`` is the open time in epoch milliseconds."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


def _check_period(period: int, minimum: int = 1) -> None:
    if period < minimum:
        raise ValueError(f"period must be >= {minimum}")


def is_flat_range(highest: float, lowest: float) -> bool:
    """TA-Lib's test for a window with no range (exactly, or within rounding of the prices themselves)."""
    return abs(highest - lowest) <= TA_EPSILON * (abs(highest) + abs(lowest))


def typical_price(c: Candle) -> float:
    return (c.high + c.low + c.close) / 3.0


# --- moving averages ----------------------------------------------------------------------------------------


class SMA:
    """Simple moving average of the last ``period`` values."""

    __slots__ = ("period", "_sum")

    def __init__(self, period: int) -> None:
        _check_period(period)
        self.period = period
        self._sum = RollingSum(period)

    def update(self, x: float) -> float | None:
        total = self._sum.update(x)
        return None if total is None else total / self.period


class EMA:
    """Exponential average seeded with the SMA of its first ``period`` inputs (TA-Lib's default seeding), then
    ``ema += (x - ema) * k``. ``k`` defaults to ``2 / (period + 1)``; Wilder's smoothing is ``k = 1 / period``."""

    __slots__ = ("period", "k", "value", "_seed_sum", "_seen")

    def __init__(self, period: int, k: float | None = None) -> None:
        _check_period(period)
        self.period = period
        self.k = 2.0 / (period + 1) if k is None else k
        self.value: float | None = None
        self._seed_sum = 0.0
        self._seen = 0

    def update(self, x: float) -> float | None:
        if self.value is None:
            self._seed_sum += x
            self._seen += 1
            if self._seen == self.period:
                self.value = self._seed_sum / self.period
            return self.value
        self.value = (x - self.value) * self.k + self.value
        return self.value


def wilder(period: int) -> EMA:
    """Wilder's running average (RSI, ATR): an EMA with ``k = 1 / period``, seeded with the SMA."""
    return EMA(period, k=1.0 / period)


# --- momentum -----------------------------------------------------------------------------------------------


class RSI:
    """Wilder's RSI; averages seeded with the mean of the first ``period`` changes. 0 when nothing moved."""

    __slots__ = ("period", "_prev", "_gain", "_loss")

    def __init__(self, period: int = 14) -> None:
        _check_period(period)
        self.period = period
        self._prev: float | None = None
        self._gain = wilder(period)
        self._loss = wilder(period)

    def update(self, x: float) -> float | None:
        if self._prev is None:
            self._prev = x
            return None
        change = x - self._prev
        self._prev = x
        gain = self._gain.update(change if change > 0.0 else 0.0)
        loss = self._loss.update(-change if change < 0.0 else 0.0)
        if gain is None or loss is None:
            return None
        total = gain + loss
        return 0.0 if total == 0.0 else 100.0 * (gain / total)


class ROC:
    """Rate of change in percent over ``period`` values: ``(x / x[t-period] - 1) * 100`` (0 if that was 0)."""

    __slots__ = ("period", "_window")

    def __init__(self, period: int = 10) -> None:
        _check_period(period)
        self.period = period
        self._window: deque[float] = deque(maxlen=period + 1)

    def update(self, x: float) -> float | None:
        self._window.append(x)
        if len(self._window) <= self.period:
            return None
        then = self._window[0]
        return 0.0 if then == 0.0 else (x / then - 1.0) * 100.0


class MacdValue(NamedTuple):
    line: float
    signal: float
    hist: float


class MACD:
    """TA-Lib ``MACD``: both EMAs start at bar ``slow - 1`` (the fast one seeded with the SMA of the ``fast``
    closes ending there, not at bar ``fast - 1``), the signal is an EMA of the line, and nothing (line included)
    is reported before the signal exists, at bar ``slow + signal - 2``."""

    __slots__ = ("fast", "slow", "signal", "_fast", "_slow", "_signal", "_seen")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        _check_period(fast)
        _check_period(signal)
        if slow <= fast:
            raise ValueError("slow period must be > fast period")
        self.fast, self.slow, self.signal = fast, slow, signal
        self._fast, self._slow, self._signal = EMA(fast), EMA(slow), EMA(signal)
        self._seen = 0

    def update(self, x: float) -> MacdValue | None:
        self._seen += 1
        slow = self._slow.update(x)
        if self._seen <= self.slow - self.fast:
            return None
        fast = self._fast.update(x)
        if slow is None or fast is None:
            return None
        line = fast - slow
        signal = self._signal.update(line)
        return None if signal is None else MacdValue(line, signal, line - signal)


class Stoch(NamedTuple):
    k: float
    d: float


def _fast_k(close: float, highest: float, lowest: float) -> float:
    return 0.0 if is_flat_range(highest, lowest) else (close - lowest) / ((highest - lowest) / 100.0)


class Stochastic:
    """TA-Lib ``STOCH``: fast %K over ``fastk`` bars, slow %K its SMA over ``slowk``, %D the SMA of slow %K over
    ``slowd``; both reported from bar ``fastk + slowk + slowd - 3``. A flat window gives fast %K = 0."""

    __slots__ = ("_high", "_low", "_k", "_d")

    def __init__(self, fastk: int = 5, slowk: int = 3, slowd: int = 3) -> None:
        self._high = RollingExtreme(fastk, maximum=True)
        self._low = RollingExtreme(fastk, maximum=False)
        self._k, self._d = SMA(slowk), SMA(slowd)

    def update(self, c: Candle) -> Stoch | None:
        highest, lowest = self._high.update(c.high), self._low.update(c.low)
        if highest is None or lowest is None:
            return None
        k = self._k.update(_fast_k(c.close, highest, lowest))
        if k is None:
            return None
        d = self._d.update(k)
        return None if d is None else Stoch(k, d)


class WilliamsR:
    """TA-Lib ``WILLR``: ``(highest - close) / ((highest - lowest) / -100)``, in [-100, 0]; 0 on a flat window."""

    __slots__ = ("_high", "_low")

    def __init__(self, period: int = 14) -> None:
        self._high = RollingExtreme(period, maximum=True)
        self._low = RollingExtreme(period, maximum=False)

    def update(self, c: Candle) -> float | None:
        highest, lowest = self._high.update(c.high), self._low.update(c.low)
        if highest is None or lowest is None:
            return None
        return 0.0 if is_flat_range(highest, lowest) else (highest - c.close) / ((highest - lowest) / -100.0)


# --- volatility ---------------------------------------------------------------------------------------------


class ATR:
    """Wilder's average true range (TA-Lib ``ATR``): true ranges start at bar 1, the first ATR (bar ``period``) is
    their SMA, then Wilder smoothing."""

    __slots__ = ("_prev_close", "_avg")

    def __init__(self, period: int = 14) -> None:
        self._prev_close: float | None = None
        self._avg = wilder(period)

    def update(self, c: Candle) -> float | None:
        prev, self._prev_close = self._prev_close, c.close
        if prev is None:
            return None
        return self._avg.update(max(c.high - c.low, abs(c.high - prev), abs(c.low - prev)))


class Bands(NamedTuple):
    upper: float
    middle: float
    lower: float


class BollingerValue(NamedTuple):
    upper: float
    middle: float
    lower: float
    pctb: float
    bandwidth: float


class BollingerBands:
    """TA-Lib ``BBANDS`` (SMA middle, population standard deviation, ``nbdev`` both ways) plus %b =
    ``(close - lower) / (upper - lower)`` (0.5 when the bands touch) and bandwidth = ``(upper - lower) / middle``.
    The deviation is computed from centred sums (see ``_window``), so it is accurate where TA-Lib's
    ``E[x^2] - E[x]^2`` is not; the bands still agree with TA-Lib to 1e-9 of the price."""

    __slots__ = ("nbdev", "_moments")

    def __init__(self, period: int = 20, nbdev: float = 2.0) -> None:
        _check_period(period)
        self.nbdev = nbdev
        self._moments = RollingMoments(period)

    def update(self, x: float) -> BollingerValue | None:
        moments = self._moments.update(x)
        if moments is None:
            return None
        middle, m2 = moments
        width = math.sqrt(m2 / self._moments.n) * self.nbdev
        upper, lower = middle + width, middle - width
        span = upper - lower
        return BollingerValue(upper, middle, lower, (x - lower) / span if span > 0.0 else 0.5,
                              span / middle if middle != 0.0 else 0.0)


class KeltnerChannels:
    """Keltner channels, modern variant (Raschke; TradingView's default): EMA(close, ``ema_period``) middle,
    ± ``multiplier`` × Wilder ATR(``atr_period``). Reported once both exist."""

    __slots__ = ("multiplier", "_ema", "_atr")

    def __init__(self, ema_period: int = 20, atr_period: int = 10, multiplier: float = 2.0) -> None:
        self.multiplier = multiplier
        self._ema, self._atr = EMA(ema_period), ATR(atr_period)

    def update(self, c: Candle) -> Bands | None:
        middle, atr = self._ema.update(c.close), self._atr.update(c)
        if middle is None or atr is None:
            return None
        width = atr * self.multiplier
        return Bands(middle + width, middle, middle - width)


class RealizedVolatility:
    """Sample standard deviation (n - 1) of the last ``period`` log returns ``ln(close_t / close_{t-1})``, times
    ``sqrt(periods_per_year)`` when given (e.g. 8760 for hourly bars, 525600 for minutes: crypto trades 24/7).
    First value at bar ``period``."""

    __slots__ = ("_prev", "_moments", "_scale")

    def __init__(self, period: int = 20, periods_per_year: float | None = None) -> None:
        _check_period(period, 2)
        self._prev: float | None = None
        self._moments = RollingMoments(period)
        self._scale = 1.0 if periods_per_year is None else math.sqrt(periods_per_year)

    def update(self, x: float) -> float | None:
        prev, self._prev = self._prev, x
        if prev is None:
            return None
        moments = self._moments.update(float(np.log(x / prev)))  # NumPy's log, digit for digit the batch one
        return None if moments is None else math.sqrt(moments[1] / (self._moments.n - 1)) * self._scale


# --- volume -------------------------------------------------------------------------------------------------


class OBV:
    """On-balance volume (TA-Lib ``OBV``): starts at the first bar's volume, then adds the volume of each up
    close and subtracts that of each down close."""

    __slots__ = ("value", "_prev")

    def __init__(self) -> None:
        self.value: float | None = None
        self._prev = 0.0

    def update(self, c: Candle) -> float:
        if self.value is None:
            self.value = c.volume
        elif c.close > self._prev:
            self.value += c.volume
        elif c.close < self._prev:
            self.value -= c.volume
        self._prev = c.close
        return self.value


def money_flows(tp: float, prev_tp: float, volume: float) -> tuple[float, float]:
    """(positive, negative) money flow of a bar, TA-Lib's way: none when the typical price did not move (or
    moved by rounding only: within 1e-14 of the two prices)."""
    change = tp - prev_tp
    if abs(change) <= TA_EPSILON * (abs(tp) + abs(prev_tp)):
        return 0.0, 0.0
    flow = tp * volume
    return (0.0, flow) if change < 0.0 else (flow, 0.0)


class MFI:
    """TA-Lib ``MFI``: money flows from bar 1, first value at bar ``period``; 0 when the window holds no flow."""

    __slots__ = ("period", "_prev_tp", "_pos", "_neg", "_flowing", "_nonzero")

    def __init__(self, period: int = 14) -> None:
        _check_period(period)
        self.period = period
        self._prev_tp: float | None = None
        self._pos, self._neg = RollingSum(period), RollingSum(period)
        self._flowing: deque[bool] = deque(maxlen=period)
        self._nonzero = 0

    def update(self, c: Candle) -> float | None:
        tp = typical_price(c)
        prev, self._prev_tp = self._prev_tp, tp
        if prev is None:
            return None
        pos_flow, neg_flow = money_flows(tp, prev, c.volume)
        flowing = pos_flow != 0.0 or neg_flow != 0.0
        if len(self._flowing) == self.period:
            self._nonzero -= self._flowing[0]
        self._flowing.append(flowing)
        self._nonzero += flowing
        pos, neg = self._pos.update(pos_flow), self._neg.update(neg_flow)
        if pos is None or neg is None:
            return None
        total = pos + neg
        if self._nonzero == 0 or total <= 0.0:
            return 0.0
        return 100.0 * (min(max(pos, 0.0), total) / total)


class VWAP:
    """Rolling VWAP over the last ``period`` candles: ``sum(typical price × volume) / sum(volume)``. A window
    with no volume repeats the last value (``None`` if there is none yet)."""

    __slots__ = ("period", "value", "_pv", "_v", "_traded", "_nonzero")

    def __init__(self, period: int = 20) -> None:
        _check_period(period)
        self.period = period
        self.value: float | None = None
        self._pv, self._v = RollingSum(period), RollingSum(period)
        self._traded: deque[bool] = deque(maxlen=period)
        self._nonzero = 0

    def update(self, c: Candle) -> float | None:
        traded = c.volume != 0.0
        if len(self._traded) == self.period:
            self._nonzero -= self._traded[0]
        self._traded.append(traded)
        self._nonzero += traded
        pv, v = self._pv.update(typical_price(c) * c.volume), self._v.update(c.volume)
        if pv is not None and v is not None and self._nonzero:
            self.value = pv / v
        return self.value


class SessionVWAP:
    """VWAP since the start of the session (UTC-aligned blocks of ``session_ms``; a day by default): cumulative
    sums restart with the first candle whose open time falls in a new session. ``None`` until the session trades."""

    __slots__ = ("session_ms", "_session", "_pv", "_v")

    def __init__(self, session_ms: int = 86_400_000) -> None:
        _check_period(session_ms)
        self.session_ms = session_ms
        self._session: int | None = None
        self._pv = self._v = 0.0

    def update(self, c: Candle) -> float | None:
        session = c.ts // self.session_ms
        if session != self._session:
            self._session, self._pv, self._v = session, 0.0, 0.0
        self._pv += typical_price(c) * c.volume
        self._v += c.volume
        return self._pv / self._v if self._v != 0.0 else None


# --- trend --------------------------------------------------------------------------------------------------


class EMASlope:
    """Relative slope of the EMA per bar over ``lookback`` bars: ``(ema_t / ema_{t-lookback} - 1) / lookback``.
    Scale-free (a fraction per bar), so it compares across symbols without normalisation."""

    __slots__ = ("lookback", "_ema", "_history")

    def __init__(self, period: int = 20, lookback: int = 5) -> None:
        _check_period(lookback)
        self.lookback = lookback
        self._ema = EMA(period)
        self._history: deque[float] = deque(maxlen=lookback + 1)

    def update(self, x: float) -> float | None:
        ema = self._ema.update(x)
        if ema is None:
            return None
        self._history.append(ema)
        if len(self._history) <= self.lookback:
            return None
        then = self._history[0]
        return 0.0 if then == 0.0 else (ema / then - 1.0) / self.lookback


FIB_LEVELS = (0.236, 0.382, 0.5, 0.618, 0.786)


class Swing(NamedTuple):
    price: float
    bar: int


class FibonacciRetracement:
    """Retracement levels of the latest swing leg, without look-ahead.

    Bar ``i`` is a swing high when its high is the highest of bars ``i - confirm .. i + confirm`` (a swing low:
    the lowest low), so it is known only at bar ``i + confirm`` (the first ``confirm`` bars are never swings); the
    value at bar ``t`` uses swings confirmed by ``t``. The leg runs between the latest swing high ``H`` and the
    latest swing low ``L``: if the high came last (an up leg) level ``r`` is ``H - r (H - L)``, measured down from
    the top; otherwise ``L + r (H - L)``. A bar that is both counts as an up leg. ``None`` until both kinds of swing
    exist.
    """

    __slots__ = ("confirm", "levels", "_bar", "_highs", "_lows", "_max", "_min", "_high", "_low")

    def __init__(self, confirm: int = 5, levels: tuple[float, ...] = FIB_LEVELS) -> None:
        _check_period(confirm)
        self.confirm, self.levels = confirm, levels
        self._bar = -1
        self._highs: deque[float] = deque(maxlen=2 * confirm + 1)
        self._lows: deque[float] = deque(maxlen=2 * confirm + 1)
        self._max = RollingExtreme(2 * confirm + 1, maximum=True)
        self._min = RollingExtreme(2 * confirm + 1, maximum=False)
        self._high: Swing | None = None
        self._low: Swing | None = None

    def update(self, c: Candle) -> tuple[float, ...] | None:
        self._bar += 1
        self._highs.append(c.high)
        self._lows.append(c.low)
        highest, lowest = self._max.update(c.high), self._min.update(c.low)
        if highest is not None and self._highs[self.confirm] == highest:
            self._high = Swing(highest, self._bar - self.confirm)
        if lowest is not None and self._lows[self.confirm] == lowest:
            self._low = Swing(lowest, self._bar - self.confirm)
        if self._high is None or self._low is None:
            return None
        top, bottom = self._high.price, self._low.price
        span = top - bottom
        base, toward = (top, -span) if self._high.bar >= self._low.bar else (bottom, span)
        return tuple([base + r * toward for r in self.levels])
