"""What a feature set computes: the indicators, their parameters and the normalisations, with a ``version`` that
names exactly that (stored next to every feature row and every model trained on them).

Each indicator spec knows its output names, how to build its streaming step, and how to compute its batch
columns, so the streaming engine and the batch function cannot drift apart on what a name means.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from quorum.indicators import batch, streaming
from quorum.indicators.batch import BatchContext
from quorum.indicators.normalize import RollingMinMax, RollingZScore, rolling_minmax, rolling_zscore
from quorum.indicators.streaming import FIB_LEVELS, Candle

LIBRARY_REVISION = 1
"""Part of every version hash: bump it when a definition changes while the parameters stay the same."""

Step = Callable[[Candle], tuple[float | None, ...]]
Period = Annotated[int, Field(ge=1, le=100_000)]


def _num(x: float) -> str:
    """Parameters in names: 2.0 -> '2', 0.618 -> '0.618'."""
    return f"{x:g}"


def _unpack(value: tuple[float, ...] | None, width: int) -> tuple[float | None, ...]:
    return (None,) * width if value is None else tuple(value)


class _Indicator(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def stepper(self) -> Step:
        """A fresh streaming state: candle in, one value (or None) per name out."""
        raise NotImplementedError

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        """One array per name, NaN while warming up."""
        raise NotImplementedError


class SmaSpec(_Indicator):
    kind: Literal["sma"] = "sma"
    period: Period = 20

    def names(self) -> tuple[str, ...]:
        return (f"sma_{self.period}",)

    def stepper(self) -> Step:
        sma = streaming.SMA(self.period)
        return lambda c: (sma.update(c.close),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return (batch.sma(ctx.bars.close, self.period),)


class EmaSpec(_Indicator):
    kind: Literal["ema"] = "ema"
    period: Period = 20

    def names(self) -> tuple[str, ...]:
        return (f"ema_{self.period}",)

    def stepper(self) -> Step:
        ema = streaming.EMA(self.period)
        return lambda c: (ema.update(c.close),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return (ctx.ema(self.period),)


class CloseOverEmaSpec(_Indicator):
    """``close / EMA - 1``. Named ``close_over_ema`` for the 20-bar EMA (the name the council and the baseline
    model read), ``close_over_ema_<period>`` otherwise."""

    kind: Literal["close_over_ema"] = "close_over_ema"
    period: Period = 20

    def names(self) -> tuple[str, ...]:
        return ("close_over_ema" if self.period == 20 else f"close_over_ema_{self.period}",)

    def stepper(self) -> Step:
        ema = streaming.EMA(self.period)

        def step(c: Candle) -> tuple[float | None, ...]:
            value = ema.update(c.close)
            return (None if value is None else c.close / value - 1.0,)

        return step

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return (ctx.bars.close / ctx.ema(self.period) - 1.0,)


class MacdSpec(_Indicator):
    kind: Literal["macd"] = "macd"
    fast: Period = 12
    slow: Period = 26
    signal: Period = 9

    @model_validator(mode="after")
    def _fast_before_slow(self) -> MacdSpec:
        if self.slow <= self.fast:
            raise ValueError("slow period must be > fast period")
        return self

    def names(self) -> tuple[str, ...]:
        key = f"macd_{self.fast}_{self.slow}_{self.signal}"
        return (f"{key}_line", f"{key}_signal", f"{key}_hist")

    def stepper(self) -> Step:
        macd = streaming.MACD(self.fast, self.slow, self.signal)
        return lambda c: _unpack(macd.update(c.close), 3)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return batch.macd(ctx.bars.close, self.fast, self.slow, self.signal)


class RsiSpec(_Indicator):
    kind: Literal["rsi"] = "rsi"
    period: Period = 14

    def names(self) -> tuple[str, ...]:
        return (f"rsi_{self.period}",)

    def stepper(self) -> Step:
        rsi = streaming.RSI(self.period)
        return lambda c: (rsi.update(c.close),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return (batch.rsi(ctx.bars.close, self.period),)


class StochSpec(_Indicator):
    kind: Literal["stoch"] = "stoch"
    fastk: Period = 5
    slowk: Period = 3
    slowd: Period = 3

    def names(self) -> tuple[str, ...]:
        key = f"stoch_{self.fastk}_{self.slowk}_{self.slowd}"
        return (f"{key}_k", f"{key}_d")

    def stepper(self) -> Step:
        stoch = streaming.Stochastic(self.fastk, self.slowk, self.slowd)
        return lambda c: _unpack(stoch.update(c), 2)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        b = ctx.bars
        return batch.stochastic(b.high, b.low, b.close, self.fastk, self.slowk, self.slowd)


class WillrSpec(_Indicator):
    kind: Literal["willr"] = "willr"
    period: Period = 14

    def names(self) -> tuple[str, ...]:
        return (f"willr_{self.period}",)

    def stepper(self) -> Step:
        willr = streaming.WilliamsR(self.period)
        return lambda c: (willr.update(c),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return (batch.williams_r(ctx.bars.high, ctx.bars.low, ctx.bars.close, self.period),)


class AtrSpec(_Indicator):
    kind: Literal["atr"] = "atr"
    period: Period = 14

    def names(self) -> tuple[str, ...]:
        return (f"atr_{self.period}",)

    def stepper(self) -> Step:
        atr = streaming.ATR(self.period)
        return lambda c: (atr.update(c),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return (ctx.atr(self.period),)


class BbandsSpec(_Indicator):
    kind: Literal["bbands"] = "bbands"
    period: Period = 20
    nbdev: float = Field(default=2.0, gt=0)

    def names(self) -> tuple[str, ...]:
        key = f"bb_{self.period}_{_num(self.nbdev)}"
        return tuple(f"{key}_{part}" for part in ("upper", "middle", "lower", "pctb", "bandwidth"))

    def stepper(self) -> Step:
        bands = streaming.BollingerBands(self.period, self.nbdev)
        return lambda c: _unpack(bands.update(c.close), 5)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return batch.bollinger(ctx.bars.close, self.period, self.nbdev)


class KeltnerSpec(_Indicator):
    """EMA middle ± multiplier × Wilder ATR (see ``streaming.KeltnerChannels``)."""

    kind: Literal["keltner"] = "keltner"
    ema_period: Period = 20
    atr_period: Period = 10
    multiplier: float = Field(default=2.0, gt=0)

    def names(self) -> tuple[str, ...]:
        key = f"kc_{self.ema_period}_{self.atr_period}_{_num(self.multiplier)}"
        return (f"{key}_upper", f"{key}_middle", f"{key}_lower")

    def stepper(self) -> Step:
        channels = streaming.KeltnerChannels(self.ema_period, self.atr_period, self.multiplier)
        return lambda c: _unpack(channels.update(c), 3)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return batch.keltner(ctx.bars.close, ctx.ema(self.ema_period), ctx.atr(self.atr_period), self.multiplier)


class MfiSpec(_Indicator):
    kind: Literal["mfi"] = "mfi"
    period: Period = 14

    def names(self) -> tuple[str, ...]:
        return (f"mfi_{self.period}",)

    def stepper(self) -> Step:
        mfi = streaming.MFI(self.period)
        return lambda c: (mfi.update(c),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        b = ctx.bars
        return (batch.mfi(b.high, b.low, b.close, b.volume, self.period),)


class ObvSpec(_Indicator):
    kind: Literal["obv"] = "obv"

    def names(self) -> tuple[str, ...]:
        return ("obv",)

    def stepper(self) -> Step:
        obv = streaming.OBV()
        return lambda c: (obv.update(c),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return (batch.obv(ctx.bars.close, ctx.bars.volume),)


class RocSpec(_Indicator):
    kind: Literal["roc"] = "roc"
    period: Period = 10

    def names(self) -> tuple[str, ...]:
        return (f"roc_{self.period}",)

    def stepper(self) -> Step:
        roc = streaming.ROC(self.period)
        return lambda c: (roc.update(c.close),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return (batch.roc(ctx.bars.close, self.period),)


class EmaSlopeSpec(_Indicator):
    """Relative EMA slope per bar over ``lookback`` bars (see ``streaming.EMASlope``)."""

    kind: Literal["ema_slope"] = "ema_slope"
    period: Period = 20
    lookback: Period = 5

    def names(self) -> tuple[str, ...]:
        return (f"ema_slope_{self.period}_{self.lookback}",)

    def stepper(self) -> Step:
        slope = streaming.EMASlope(self.period, self.lookback)
        return lambda c: (slope.update(c.close),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return (batch.ema_slope(ctx.ema(self.period), self.lookback),)


class RealizedVolSpec(_Indicator):
    """Std of log returns (see ``streaming.RealizedVolatility``); ``rv_<n>_ann`` when annualised."""

    kind: Literal["realized_vol"] = "realized_vol"
    period: int = Field(default=20, ge=2, le=100_000)
    periods_per_year: float | None = Field(default=None, gt=0)

    def names(self) -> tuple[str, ...]:
        return (f"rv_{self.period}" + ("" if self.periods_per_year is None else "_ann"),)

    def stepper(self) -> Step:
        rv = streaming.RealizedVolatility(self.period, self.periods_per_year)
        return lambda c: (rv.update(c.close),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return (batch.realized_volatility(ctx.bars.close, self.period, self.periods_per_year),)


class VwapSpec(_Indicator):
    """Rolling VWAP over ``period`` candles (see ``streaming.VWAP``)."""

    kind: Literal["vwap"] = "vwap"
    period: Period = 20

    def names(self) -> tuple[str, ...]:
        return (f"vwap_{self.period}",)

    def stepper(self) -> Step:
        vwap = streaming.VWAP(self.period)
        return lambda c: (vwap.update(c),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        b = ctx.bars
        return (batch.vwap(b.high, b.low, b.close, b.volume, self.period),)


class SessionVwapSpec(_Indicator):
    """VWAP since the start of the UTC-aligned session of ``session_hours`` (see ``streaming.SessionVWAP``)."""

    kind: Literal["session_vwap"] = "session_vwap"
    session_hours: int = Field(default=24, ge=1, le=24 * 7)

    def names(self) -> tuple[str, ...]:
        return (f"vwap_session_{self.session_hours}h",)

    def stepper(self) -> Step:
        vwap = streaming.SessionVWAP(self.session_hours * 3_600_000)
        return lambda c: (vwap.update(c),)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        b = ctx.bars
        return (batch.session_vwap(b.ts, b.high, b.low, b.close, b.volume, self.session_hours * 3_600_000),)


class FibSpec(_Indicator):
    """Retracement levels of the latest confirmed swing leg (see ``streaming.FibonacciRetracement``). The
    confirmation window is not in the names (``fib_0.618``); it is in the version."""

    kind: Literal["fib"] = "fib"
    confirm: Period = 5
    levels: tuple[float, ...] = Field(default=FIB_LEVELS, min_length=1)

    def names(self) -> tuple[str, ...]:
        return tuple(f"fib_{_num(r)}" for r in self.levels)

    def stepper(self) -> Step:
        fib = streaming.FibonacciRetracement(self.confirm, self.levels)
        width = len(self.levels)
        return lambda c: _unpack(fib.update(c), width)

    def compute(self, ctx: BatchContext) -> tuple[np.ndarray, ...]:
        return batch.fibonacci(ctx.bars.high, ctx.bars.low, self.confirm, self.levels)


IndicatorSpec = Annotated[
    SmaSpec | EmaSpec | CloseOverEmaSpec | MacdSpec | RsiSpec | StochSpec | WillrSpec | AtrSpec | BbandsSpec
    | KeltnerSpec | MfiSpec | ObvSpec | RocSpec | EmaSlopeSpec | RealizedVolSpec | VwapSpec | SessionVwapSpec
    | FibSpec,
    Field(discriminator="kind"),
]


class NormalizeSpec(BaseModel):
    """A causal rolling normalisation of one feature (see ``normalize``): ``<feature>_z<window>`` for a z-score,
    ``<feature>_mm<window>`` for min-max."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature: str
    method: Literal["zscore", "minmax"] = "zscore"
    window: int = Field(default=100, ge=2, le=100_000)

    @property
    def name(self) -> str:
        return f"{self.feature}_{'z' if self.method == 'zscore' else 'mm'}{self.window}"

    def normalizer(self) -> RollingZScore | RollingMinMax:
        return RollingZScore(self.window) if self.method == "zscore" else RollingMinMax(self.window)

    def compute(self, values: np.ndarray) -> np.ndarray:
        return (rolling_zscore if self.method == "zscore" else rolling_minmax)(values, self.window)


DEFAULT_INDICATORS: tuple[IndicatorSpec, ...] = (
    SmaSpec(), EmaSpec(), CloseOverEmaSpec(), MacdSpec(), RsiSpec(), StochSpec(), WillrSpec(), AtrSpec(),
    BbandsSpec(), KeltnerSpec(), MfiSpec(), ObvSpec(), RocSpec(), EmaSlopeSpec(), RealizedVolSpec(), VwapSpec(),
    SessionVwapSpec(), FibSpec(), CloseOverEmaSpec(period=480), EmaSlopeSpec(period=480, lookback=60),
)
DEFAULT_NORMALIZE: tuple[NormalizeSpec, ...] = (
    NormalizeSpec(feature="obv"), NormalizeSpec(feature="atr_14"), NormalizeSpec(feature="macd_12_26_9_hist"),
    NormalizeSpec(feature="vwap_20", method="minmax"),
)


class FeatureSetSpec(BaseModel):
    """A feature set: indicators, then normalisations of their outputs. Immutable; ``version`` is a short hash of
    its canonical JSON (sorted keys, library revision included), the same in every process."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    indicators: tuple[IndicatorSpec, ...] = DEFAULT_INDICATORS
    normalize: tuple[NormalizeSpec, ...] = DEFAULT_NORMALIZE

    @model_validator(mode="after")
    def _names_are_unique_and_known(self) -> FeatureSetSpec:
        names = [n for ind in self.indicators for n in ind.names()]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature names: {sorted({n for n in names if names.count(n) > 1})}")
        for norm in self.normalize:
            if norm.feature not in names:
                raise ValueError(f"cannot normalise unknown feature {norm.feature!r}")
            if norm.name in names:
                raise ValueError(f"duplicate feature name {norm.name!r}")
            names.append(norm.name)
        return self

    def canonical_json(self) -> str:
        payload = {"revision": LIBRARY_REVISION, "spec": self.model_dump(mode="json")}
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)

    @functools.cached_property
    def version(self) -> str:
        """Computed once per spec (it is immutable): every candle's feature row names it."""
        return "fs2-" + hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(n for ind in self.indicators for n in ind.names()) + tuple(n.name for n in self.normalize)
