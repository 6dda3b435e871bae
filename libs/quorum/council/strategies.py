"""The strategy library: nine voters built on ``base.StrategyBase``, configured from JSON by ``type``
(``STRATEGY_TYPES``; the default council is one of each but the opt-in ``policy`` follower). The trend regime
filter (``trend``, on a 480-bar EMA) is the default Solo strategy: walk-forward over 2021-2023 it was the one
configuration with a positive mean campaign return, a Sharpe above buy-and-hold's and a smaller drawdown
(``bench/default_config_walkforward.py``).

All are pure functions of their ``StrategyInput``. They read features by the names the indicator specs give them
(``quorum.indicators.spec``), so a parameter change cannot silently read another indicator's column. They are
position-agnostic: SELL means "close a long if there is one", and the council decides what to do with it.

Shared conventions:

* a needed feature that is None (warming up) -> HOLD with reason ``WARMUP`` and ``feature`` in the metadata;
* BUY signals carry an ATR stop-loss and take-profit suggestion (``protective_levels``) unless disabled;
* a BUY/SELL confidence is in [0.5, 1] for the threshold strategies (0.5 at the threshold, growing with the
  distance past it); ``composite`` and ``model`` use a score whose magnitude is the confidence.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, TypeAdapter, model_validator

from quorum.council.base import ProducerKind, RiskTag, Signal, StrategyBase, StrategyInput, hold
from quorum.indicators.spec import (
    AtrSpec,
    BbandsSpec,
    CloseOverEmaSpec,
    EmaSlopeSpec,
    KeltnerSpec,
    MacdSpec,
    Period,
    RsiSpec,
)
from quorum.types import Action

__all__ = [
    "MAX_STOP_FRACTION", "STRATEGY_TYPES", "BollingerReversion", "DipAwareEntry", "KeltnerReversion", "MacdTrend",
    "ModelDriven", "MultivariateComposite", "PolicyFollower", "RsiReversion", "StrategySpec", "TrendRegime",
    "default_strategies",
    "parse_strategies", "protective_levels",
]

MAX_STOP_FRACTION = Decimal("0.15")
"""A suggested stop is never further than this fraction of the price below it (wider would be a guess, not risk
management; ``STOP_CLAMPED`` says it happened)."""

Multiplier = Annotated[float, Field(gt=0, le=100)]


# --- shared pieces ------------------------------------------------------------------------------------------

def _unit(x: float) -> float:
    """Clip to [0, 1] (NaN -> 0) so float noise can never make an invalid Signal."""
    return 0.0 if math.isnan(x) else min(1.0, max(0.0, x))


def _scaled(x: float, scale: float) -> float:
    """``x / scale`` clipped to [-1, 1]; 0 when the scale is not positive (a flat market says nothing)."""
    return max(-1.0, min(1.0, x / scale)) if scale > 0 else 0.0


def _on_grid(value: Decimal, quantum: Decimal, rounding: str) -> Decimal | None:
    try:
        return value.quantize(quantum, rounding=rounding)
    except InvalidOperation:  # more digits than the context holds: an absurd level, suggest none
        return None


def protective_levels(close: Decimal, atr: float, stop_mult: float | None,
                      take_mult: float | None) -> tuple[Decimal | None, Decimal | None, bool]:
    """Stop-loss ``close - stop_mult*atr`` and take-profit ``close + take_mult*atr`` for a long entered at
    ``close``, on the close's price grid (its decimal exponent, at most 1), both rounded toward the close.

    The stop is clamped to at most ``MAX_STOP_FRACTION`` below the close (third value True when it was). A level
    is None when disabled, when the ATR is not positive, or when it would round onto the close itself."""
    if not (close.is_finite() and close > 0 and atr > 0):
        return None, None, False
    quantum = Decimal(1).scaleb(min(int(close.as_tuple().exponent), 0))
    atr_d = Decimal(repr(atr))
    stop = take = None
    clamped = False
    if stop_mult is not None:
        distance = Decimal(repr(stop_mult)) * atr_d
        limit = close * MAX_STOP_FRACTION
        if distance > limit:
            distance, clamped = limit, True
        stop = _on_grid(close - distance, quantum, ROUND_CEILING)
        stop = stop if stop is not None and stop < close else None
    if take_mult is not None:
        take = _on_grid(close + Decimal(repr(take_mult)) * atr_d, quantum, ROUND_FLOOR)
        take = take if take is not None and take > close else None
    return stop, take, clamped


@functools.cache
def _names(spec: type[BaseModel], **params: Any) -> tuple[str, ...]:
    """The feature names of the indicator ``spec(**params)``: strategies read them every candle, and building
    the spec each time cost more than the strategy's own arithmetic."""
    return spec(**params).names()  # type: ignore[attr-defined, no-any-return]


class _WarmingUp(Exception):
    def __init__(self, feature: str) -> None:
        self.feature = feature


class _Strategy(StrategyBase):
    """What every library strategy shares: the default instance name (its type), feature reads that turn a
    warming-up feature into a ``WARMUP`` hold, and ATR stop/take-profit suggestions on BUY signals."""

    atr_period: Period = Field(default=14, description="ATR used for stop/take-profit suggestions (and scaling)")
    stop_atr_mult: Multiplier | None = Field(default=2.0, description="stop this many ATRs below; None: no stop")
    take_profit_atr_mult: Multiplier | None = Field(default=3.0, description="take profit this many ATRs above")

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data and "type" in cls.model_fields:
            return {**data, "name": cls.model_fields["type"].default}
        return data

    @property
    def atr_feature(self) -> str:
        return _names(AtrSpec, period=self.atr_period)[0]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature this strategy reads, so a deployment can check its feature set provides them."""
        levels = (self.atr_feature,) if self._suggests_levels else ()
        return tuple(dict.fromkeys(self._signal_features + levels))

    @property
    def _signal_features(self) -> tuple[str, ...]:
        return ()

    @property
    def _suggests_levels(self) -> bool:
        return self.stop_atr_mult is not None or self.take_profit_atr_mult is not None

    def evaluate(self, inp: StrategyInput) -> Signal:
        try:
            return self._evaluate(inp)
        except _WarmingUp as w:
            return hold(self.name, "WARMUP", feature=w.feature)

    def _evaluate(self, inp: StrategyInput) -> Signal:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _feature(inp: StrategyInput, name: str, back: int = 0) -> float:
        value = inp.value(name, back)
        if value is None:
            raise _WarmingUp(name)
        return value

    def _vote(self, inp: StrategyInput, direction: Action, confidence: float, *reasons: str,
              **metadata: float | str | None) -> Signal:
        """The signal, with stop/take-profit suggestions on a BUY (which then needs the ATR)."""
        if direction is Action.HOLD:
            return Signal(self.name, Action.HOLD, 0.0, reasons, metadata=metadata)  # hold(), without repacking
        stop = take = None
        if direction is Action.BUY and self._suggests_levels:
            stop, take, clamped = protective_levels(inp.close, self._feature(inp, self.atr_feature),
                                                    self.stop_atr_mult, self.take_profit_atr_mult)
            reasons += ("STOP_CLAMPED",) if clamped else ()
        return Signal(self.name, direction, _unit(confidence), reasons, stop, take, metadata)


def _threshold_confidence(distance: float, full_at: float) -> float:
    """0.5 right at a threshold, rising linearly to 1 at ``full_at`` past it."""
    return _unit(0.5 + 0.5 * distance / full_at)


# --- RSI ----------------------------------------------------------------------------------------------------

class RsiReversion(_Strategy):
    """Mean reversion on RSI: oversold is a buy, overbought a sell (close the long)."""

    type: Literal["rsi"] = "rsi"
    risk_tag: RiskTag = RiskTag.LOW
    period: int = Field(default=14, ge=2, le=1000)
    oversold: float = Field(default=30.0, gt=0, lt=100)
    overbought: float = Field(default=70.0, gt=0, lt=100)

    @model_validator(mode="after")
    def _ordered(self) -> RsiReversion:
        if self.oversold >= self.overbought:
            raise ValueError(f"oversold ({self.oversold}) must be below overbought ({self.overbought})")
        return self

    @property
    def _signal_features(self) -> tuple[str, ...]:
        return _names(RsiSpec, period=self.period)

    def _evaluate(self, inp: StrategyInput) -> Signal:
        rsi = self._feature(inp, self._signal_features[0])
        # Confidence: 0.5 at the threshold plus the distance relative to the room beyond it (capped at 1).
        if rsi < self.oversold:
            return self._vote(inp, Action.BUY, (self.oversold - rsi) / self.oversold + 0.5, "RSI_OVERSOLD", rsi=rsi)
        if rsi > self.overbought:
            return self._vote(inp, Action.SELL, (rsi - self.overbought) / (100 - self.overbought) + 0.5,
                              "RSI_OVERBOUGHT", rsi=rsi)
        return self._vote(inp, Action.HOLD, 0.0, "RSI_NEUTRAL", rsi=rsi)


# --- MACD ---------------------------------------------------------------------------------------------------

class MacdTrend(_Strategy):
    """Trend following on MACD crossings. ``trigger="signal"``: the histogram crosses zero (the MACD line crosses
    its signal line); ``"zero"``: the MACD line crosses zero. Up is a buy, down a sell.

    Confidence 0.5 at the crossing, rising to 1 as the crossing value reaches ``full_strength_atr`` ATRs (price
    units either way, so ATR makes it scale-free across symbols); a decisive cross counts more than a graze."""

    type: Literal["macd"] = "macd"
    risk_tag: RiskTag = RiskTag.MEDIUM
    fast: Period = 12
    slow: Period = 26
    signal: Period = 9
    trigger: Literal["signal", "zero"] = "signal"
    full_strength_atr: float = Field(default=0.25, gt=0, le=100)

    @model_validator(mode="after")
    def _fast_before_slow(self) -> MacdTrend:
        if self.slow <= self.fast:
            raise ValueError(f"slow ({self.slow}) must be greater than fast ({self.fast})")
        return self

    @property
    def lookback(self) -> int:
        return 2

    @property
    def _signal_features(self) -> tuple[str, ...]:
        line, _, hist = _names(MacdSpec, fast=self.fast, slow=self.slow, signal=self.signal)
        return (hist if self.trigger == "signal" else line, self.atr_feature)

    def _evaluate(self, inp: StrategyInput) -> Signal:
        name, atr_name = self._signal_features
        now, prev, atr = self._feature(inp, name), self._feature(inp, name, 1), self._feature(inp, atr_name)
        confidence = 0.5 + 0.5 * abs(_scaled(now, self.full_strength_atr * atr))
        meta: dict[str, float | str | None] = {"value": now, "previous": prev, "atr": atr}
        if prev <= 0 < now:
            return self._vote(inp, Action.BUY, confidence, "MACD_CROSS_UP", **meta)
        if prev >= 0 > now:
            return self._vote(inp, Action.SELL, confidence, "MACD_CROSS_DOWN", **meta)
        return self._vote(inp, Action.HOLD, 0.0, "MACD_NO_CROSS", **meta)


# --- band reversion (Bollinger, Keltner) --------------------------------------------------------------------

class _BandReversion(_Strategy):
    """Mean reversion inside a price channel: buy at (or below) the lower band, sell once the price is back at the
    middle or the upper band. Positions are measured in band widths (0 = lower, 1 = upper: Bollinger's %b), so
    confidence 0.5 at the threshold reaches 1 a quarter band-width beyond it."""

    CODE: ClassVar[str]
    entry_position: float = Field(default=0.0, ge=-1.0, le=0.5,
                                  description="band position at or below which to buy (0 = the lower band)")
    exit_at: Literal["middle", "upper"] = "middle"

    def _bands(self) -> tuple[str, str, str]:  # pragma: no cover - abstract
        """Feature names of the upper, middle and lower band."""
        raise NotImplementedError

    @property
    def _signal_features(self) -> tuple[str, ...]:
        return self._bands()

    def _evaluate(self, inp: StrategyInput) -> Signal:
        upper, middle, lower = (self._feature(inp, n) for n in self._bands())
        width = upper - lower
        if not width > 0:
            return self._vote(inp, Action.HOLD, 0.0, f"{self.CODE}_DEGENERATE", upper=upper, lower=lower)
        position = (float(inp.close) - lower) / width
        exit_position = (middle - lower) / width if self.exit_at == "middle" else 1.0
        meta: dict[str, float | str | None] = {"position": position, "upper": upper, "middle": middle,
                                               "lower": lower}
        if position <= self.entry_position:
            return self._vote(inp, Action.BUY, _threshold_confidence(self.entry_position - position, 0.25),
                              f"{self.CODE}_BELOW_LOWER", **meta)
        if position >= exit_position:
            return self._vote(inp, Action.SELL, _threshold_confidence(position - exit_position, 0.25),
                              f"{self.CODE}_ABOVE_{self.exit_at.upper()}", **meta)
        return self._vote(inp, Action.HOLD, 0.0, f"{self.CODE}_INSIDE", **meta)


class BollingerReversion(_BandReversion):
    """Band reversion on Bollinger bands (SMA ± ``nbdev`` standard deviations)."""

    CODE: ClassVar[str] = "BB"
    type: Literal["bollinger"] = "bollinger"
    risk_tag: RiskTag = RiskTag.LOW
    period: Period = 20
    nbdev: float = Field(default=2.0, gt=0, le=10)

    def _bands(self) -> tuple[str, str, str]:
        upper, middle, lower, *_ = _names(BbandsSpec, period=self.period, nbdev=self.nbdev)
        return upper, middle, lower


class KeltnerReversion(_BandReversion):
    """Band reversion on Keltner channels (EMA ± ``multiplier`` ATRs): wider in volatile markets, so it buys
    deeper dips than Bollinger at the same width; MEDIUM because channel breaks often run further."""

    CODE: ClassVar[str] = "KC"
    type: Literal["keltner"] = "keltner"
    risk_tag: RiskTag = RiskTag.MEDIUM
    ema_period: Period = 20
    channel_atr_period: Period = 10
    multiplier: float = Field(default=2.0, gt=0, le=10)

    def _bands(self) -> tuple[str, str, str]:
        upper, middle, lower = _names(KeltnerSpec, ema_period=self.ema_period, atr_period=self.channel_atr_period,
                                      multiplier=self.multiplier)
        return upper, middle, lower


# --- composite ----------------------------------------------------------------------------------------------

class MultivariateComposite(_Strategy):
    """One score in [-1, 1] (bullish positive) from weighted components, each mapped to [-1, 1] and saturating at
    a typical extreme (scales set from BTC/USDT hourly data):

    * ``rsi``: ``(50 - rsi) / rsi_span``, contrarian (oversold is bullish);
    * ``macd``: histogram / (``macd_full_atr`` x ATR), momentum;
    * ``ema``: ``close_over_ema`` / ``ema_full_distance``, trend position;
    * ``slope``: EMA slope per bar / ``slope_full``, trend direction.

    BUY when the weighted mean >= ``entry_level``, SELL when <= ``-exit_level``; confidence = |score|. A component
    with weight 0 is not read (and does not hold the strategy in warm-up)."""

    type: Literal["composite"] = "composite"
    risk_tag: RiskTag = RiskTag.LOW
    rsi_period: int = Field(default=14, ge=2, le=1000)
    macd_fast: Period = 12
    macd_slow: Period = 26
    macd_signal: Period = 9
    ema_period: Period = 20
    slope_lookback: Period = 5
    rsi_weight: float = Field(default=1.0, ge=0, le=100)
    macd_weight: float = Field(default=1.0, ge=0, le=100)
    ema_weight: float = Field(default=0.5, ge=0, le=100)
    slope_weight: float = Field(default=0.5, ge=0, le=100)
    rsi_span: float = Field(default=20.0, gt=0, le=50)
    macd_full_atr: float = Field(default=0.25, gt=0, le=100)
    ema_full_distance: float = Field(default=0.02, gt=0, le=10)
    slope_full: float = Field(default=0.002, gt=0, le=10)
    entry_level: float = Field(default=0.3, gt=0, le=1)
    exit_level: float = Field(default=0.3, gt=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> MultivariateComposite:
        if self.rsi_weight + self.macd_weight + self.ema_weight + self.slope_weight <= 0:
            raise ValueError("at least one component weight must be positive")
        if self.macd_slow <= self.macd_fast:
            raise ValueError(f"macd_slow ({self.macd_slow}) must be greater than macd_fast ({self.macd_fast})")
        return self

    def _components(self) -> Mapping[str, tuple[float, tuple[str, ...]]]:
        """Component -> (weight, features it reads), active components only."""
        return _composite_components(self.rsi_period, self.macd_fast, self.macd_slow, self.macd_signal,
                                     self.ema_period, self.slope_lookback, self.atr_period, self.rsi_weight,
                                     self.macd_weight, self.ema_weight, self.slope_weight)

    @property
    def _signal_features(self) -> tuple[str, ...]:
        return tuple(name for _, names in self._components().values() for name in names)

    def _score(self, component: str, values: list[float]) -> float:
        if component == "rsi":
            return _scaled(50.0 - values[0], self.rsi_span)
        if component == "macd":
            return _scaled(values[0], self.macd_full_atr * values[1])
        return _scaled(values[0], self.ema_full_distance if component == "ema" else self.slope_full)

    def _evaluate(self, inp: StrategyInput) -> Signal:
        components = self._components()
        scores = {k: self._score(k, [self._feature(inp, n) for n in names]) for k, (_, names) in components.items()}
        score = sum(components[k][0] * s for k, s in scores.items()) / sum(w for w, _ in components.values())
        meta: dict[str, float | str | None] = {"score": score, **{f"{k}_score": s for k, s in scores.items()}}
        if score >= self.entry_level:
            return self._vote(inp, Action.BUY, abs(score), "COMPOSITE_BULLISH", **meta)
        if score <= -self.exit_level:
            return self._vote(inp, Action.SELL, abs(score), "COMPOSITE_BEARISH", **meta)
        return self._vote(inp, Action.HOLD, 0.0, "COMPOSITE_NEUTRAL", **meta)


@functools.cache
def _composite_components(rsi_period: int, macd_fast: int, macd_slow: int, macd_signal: int, ema_period: int,
                          slope_lookback: int, atr_period: int, rsi_weight: float, macd_weight: float,
                          ema_weight: float, slope_weight: float) -> Mapping[str, tuple[float, tuple[str, ...]]]:
    """``MultivariateComposite._components`` per parameter set (read-only: every candle shares it)."""
    hist = _names(MacdSpec, fast=macd_fast, slow=macd_slow, signal=macd_signal)[2]
    all_ = {
        "rsi": (rsi_weight, _names(RsiSpec, period=rsi_period)),
        "macd": (macd_weight, (hist, _names(AtrSpec, period=atr_period)[0])),
        "ema": (ema_weight, _names(CloseOverEmaSpec, period=ema_period)),
        "slope": (slope_weight, _names(EmaSlopeSpec, period=ema_period, lookback=slope_lookback)),
    }
    return MappingProxyType({k: v for k, v in all_.items() if v[0] > 0})


# --- model-driven -------------------------------------------------------------------------------------------

def _usable_p_up(inp: StrategyInput, model_name: str | None) -> tuple[float, dict[str, float | str | None]] | None:
    """The prediction's p_up and its provenance, or None when there is none usable (absent, NaN, outside [0,1])."""
    pred = inp.prediction(model_name)
    if pred is None or pred.p_up is None or not 0.0 <= pred.p_up <= 1.0:
        return None
    return pred.p_up, {"model_name": pred.model_name, "model_version": pred.model_version,
                       "horizon": pred.horizon, "p_up": pred.p_up, "expected_return": pred.expected_return}


class ModelDriven(_Strategy):
    """Votes the model's direction: BUY when p_up >= ``buy_above`` and the expected return (when the model gives
    one) exceeds ``min_expected_return``, SELL when p_up <= ``sell_below`` and the expected return is below minus
    it; confidence is the model's distance from a coin flip, ``|p_up - 0.5| * 2``. A direction without the edge to
    pay for the trade (e.g. 0.002: a round trip's fees) holds with ``MODEL_EDGE_TOO_SMALL``. ``model_name`` None
    takes any model's prediction."""

    KIND: ClassVar[ProducerKind] = ProducerKind.MODEL
    type: Literal["model"] = "model"
    risk_tag: RiskTag = RiskTag.MEDIUM
    model_name: str | None = Field(default=None, min_length=1)
    buy_above: float = Field(default=0.6, gt=0.5, le=1.0)
    sell_below: float = Field(default=0.4, ge=0.0, lt=0.5)
    min_expected_return: float = Field(default=0.0, ge=0.0, le=1.0,
                                       description="the expected log return a vote needs beyond zero (fees)")

    def _evaluate(self, inp: StrategyInput) -> Signal:
        usable = _usable_p_up(inp, self.model_name)
        if usable is None:
            return self._vote(inp, Action.HOLD, 0.0, "NO_PREDICTION", model_name=self.model_name)
        p, meta = usable
        expected = meta["expected_return"]
        if p >= self.buy_above:
            if expected is not None and float(expected) <= self.min_expected_return:
                return self._vote(inp, Action.HOLD, 0.0, "MODEL_EDGE_TOO_SMALL", **meta)
            return self._vote(inp, Action.BUY, (p - 0.5) * 2, "MODEL_BULLISH", **meta)
        if p <= self.sell_below:
            if expected is not None and float(expected) >= -self.min_expected_return:
                return self._vote(inp, Action.HOLD, 0.0, "MODEL_EDGE_TOO_SMALL", **meta)
            return self._vote(inp, Action.SELL, (0.5 - p) * 2, "MODEL_BEARISH", **meta)
        return self._vote(inp, Action.HOLD, 0.0, "MODEL_NEUTRAL", **meta)


class PolicyFollower(_Strategy):
    """Follows a position policy (a model trained on the Sharpe ratio that gives a target position, not a return):
    BUY while its target is at least ``enter_at``, SELL once it is at most ``exit_at``, HOLD between (hysteresis, so a
    target wavering around one level does not trade every bar); confidence is the target's distance from the nearer
    threshold's side of the range. ``model_name`` None follows any model's target. Not in the default council (the
    champion predicts returns): name it in ``QUORUM_COUNCIL_STRATEGIES`` (and as the Solo strategy to follow it
    alone)."""

    KIND: ClassVar[ProducerKind] = ProducerKind.MODEL
    IN_DEFAULT_COUNCIL: ClassVar[bool] = False
    type: Literal["policy"] = "policy"
    risk_tag: RiskTag = RiskTag.MEDIUM
    model_name: str | None = Field(default=None, min_length=1)
    enter_at: float = Field(default=0.6, gt=0.0, le=1.0)
    exit_at: float = Field(default=0.3, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _exit_below_entry(self) -> PolicyFollower:
        if self.exit_at >= self.enter_at:
            raise ValueError(f"policy exit_at {self.exit_at} must be below enter_at {self.enter_at}")
        return self

    def _evaluate(self, inp: StrategyInput) -> Signal:
        pred = inp.target(self.model_name)
        if pred is None or pred.position_target is None:
            return self._vote(inp, Action.HOLD, 0.0, "NO_POSITION_TARGET", model_name=self.model_name)
        t = pred.position_target
        meta = {"model_name": pred.model_name, "model_version": pred.model_version, "position_target": t}
        if t >= self.enter_at:
            return self._vote(inp, Action.BUY, min(1.0, t), "POLICY_LONG", **meta)
        if t <= self.exit_at:
            return self._vote(inp, Action.SELL, min(1.0, 1.0 - t), "POLICY_FLAT", **meta)
        return self._vote(inp, Action.HOLD, 0.0, "POLICY_BETWEEN", **meta)


# --- dip-aware entry ----------------------------------------------------------------------------------------

class DipAwareEntry(_Strategy):
    """Buys the recovery from a sharp drop, when the model agrees. Within the last ``window`` closes: the highest
    close (latest if tied), the lowest close after it at least ``drop_pct`` % below it, and the current close at
    least ``recovery_pct`` % above that low but still below the high. A present prediction must have
    p_up >= ``min_p_up``; without one it holds (``NO_PREDICTION``) unless ``require_prediction`` is False.

    Only BUY or HOLD: leaving is the other strategies' (and the stop's) job. HIGH risk: a dip can keep dipping.
    Confidence 0.5 for a bare setup, + up to 0.25 as the drop deepens to twice ``drop_pct``, + up to 0.25 as
    p_up goes from ``min_p_up`` to 1."""

    type: Literal["dip"] = "dip"
    risk_tag: RiskTag = RiskTag.HIGH
    window: int = Field(default=24, ge=3, le=10_000)
    drop_pct: float = Field(default=5.0, gt=0, lt=100, description="minimum high-to-low drop, percent")
    recovery_pct: float = Field(default=1.5, gt=0, lt=1000, description="minimum rebound off the low, percent")
    min_p_up: float = Field(default=0.55, ge=0.0, lt=1.0)
    require_prediction: bool = True
    model_name: str | None = Field(default=None, min_length=1)

    @property
    def lookback(self) -> int:
        return self.window

    def _evaluate(self, inp: StrategyInput) -> Signal:
        closes = inp.closes(self.window)
        if len(closes) < self.window:
            raise _WarmingUp("close")
        top = len(closes) - 1 - closes[::-1].index(max(closes))  # the highest close, the latest if tied
        close = closes[-1]
        if top == len(closes) - 1:
            return self._vote(inp, Action.HOLD, 0.0, "NO_DIP")
        high, low = closes[top], min(closes[top + 1:])
        drop, recovery = (high - low) / high, (close - low) / low
        meta: dict[str, float | str | None] = {"high": str(high), "low": str(low), "drop_pct": float(drop * 100),
                                               "recovery_pct": float(recovery * 100)}
        if drop * 100 < Decimal(repr(self.drop_pct)):
            return self._vote(inp, Action.HOLD, 0.0, "NO_DIP", **meta)
        if recovery * 100 < Decimal(repr(self.recovery_pct)):
            return self._vote(inp, Action.HOLD, 0.0, "NO_RECOVERY", **meta)
        usable = _usable_p_up(inp, self.model_name)
        if usable is None and self.require_prediction:
            return self._vote(inp, Action.HOLD, 0.0, "NO_PREDICTION", **meta)
        support = 0.0
        if usable is not None:
            p, provenance = usable
            meta.update(provenance)
            if p < self.min_p_up:
                return self._vote(inp, Action.HOLD, 0.0, "PREDICTION_WEAK", **meta)
            support = (p - self.min_p_up) / (1 - self.min_p_up)
        depth = min(1.0, float(drop * 100) / self.drop_pct - 1)
        return self._vote(inp, Action.BUY, 0.5 + 0.25 * depth + 0.25 * support, "DIP_RECOVERY", **meta)


# --- trend regime -------------------------------------------------------------------------------------------

class TrendRegime(_Strategy):
    """Trend following as a regime filter: long only while the close is above a long EMA that is rising. BUY while
    the close is more than ``band`` above the EMA and its slope is positive; SELL once the close is more than
    ``band`` below it or the slope is negative; HOLD in between, so a close hovering at the EMA does not flip the
    position at a fee each way. Confidence 0.5 at the boundary, 1 at ``full_distance`` past it.

    The regime decides the exit, so the suggested stop is wide (a crash guard, not the exit) and there is no
    take-profit (a trend is not capped). Reads ``close_over_ema_<period>`` and ``ema_slope_<period>_<lookback>``;
    the default feature set computes them for the default periods (480 and 60), other periods need their own."""

    type: Literal["trend"] = "trend"
    risk_tag: RiskTag = RiskTag.MEDIUM
    ema_period: Period = 480
    slope_lookback: Period = 60
    band: float = Field(default=0.0, ge=0, le=0.5, description="hysteresis around the EMA, a fraction of it")
    full_distance: float = Field(default=0.05, gt=0, le=10, description="distance past the boundary at confidence 1")
    stop_atr_mult: Multiplier | None = Field(default=6.0, description="stop this many ATRs below; None: no stop")
    take_profit_atr_mult: Multiplier | None = Field(default=None, description="take profit this many ATRs above")

    @property
    def _signal_features(self) -> tuple[str, ...]:
        return (_names(CloseOverEmaSpec, period=self.ema_period)
                + _names(EmaSlopeSpec, period=self.ema_period, lookback=self.slope_lookback))

    def _evaluate(self, inp: StrategyInput) -> Signal:
        distance, slope = (self._feature(inp, n) for n in self._signal_features)
        meta: dict[str, float | str | None] = {"close_over_ema": distance, "slope": slope}
        if distance > self.band and slope > 0:
            return self._vote(inp, Action.BUY, _threshold_confidence(distance - self.band, self.full_distance),
                              "TREND_UP", **meta)
        if distance < -self.band or slope < 0:
            past = max(0.0, -self.band - distance)
            return self._vote(inp, Action.SELL, _threshold_confidence(past, self.full_distance),
                              "TREND_BROKEN" if distance < -self.band else "TREND_FALLING", **meta)
        return self._vote(inp, Action.HOLD, 0.0, "TREND_UNDECIDED", **meta)


# --- configuration ------------------------------------------------------------------------------------------

StrategySpec = Annotated[
    RsiReversion | MacdTrend | BollingerReversion | KeltnerReversion | MultivariateComposite | ModelDriven
    | DipAwareEntry | TrendRegime | PolicyFollower,
    Field(discriminator="type"),
]
STRATEGY_TYPES: dict[str, type[StrategyBase]] = {
    cls.model_fields["type"].default: cls
    for cls in (RsiReversion, MacdTrend, BollingerReversion, KeltnerReversion, MultivariateComposite, ModelDriven,
                DipAwareEntry, TrendRegime, PolicyFollower)
}
_STRATEGIES = TypeAdapter(tuple[StrategySpec, ...])


def parse_strategies(config: str | bytes | Sequence[Any]) -> tuple[StrategyBase, ...]:
    """Strategies from a JSON array (text) or a list of dicts, each with its ``type``. Unknown types or
    parameters and duplicate instance names (they key votes and karma) raise ValueError."""
    if isinstance(config, str | bytes):
        strategies: tuple[StrategyBase, ...] = _STRATEGIES.validate_json(config)
    else:
        strategies = _STRATEGIES.validate_python(tuple(config))
    names = [s.name for s in strategies]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate strategy names {duplicates}: give each instance its own 'name'")
    return strategies


def default_strategies() -> tuple[StrategyBase, ...]:
    """One instance of every strategy type with its default parameters, named after its type (but the opt-in ones,
    ``IN_DEFAULT_COUNCIL`` false)."""
    return tuple(cls() for cls in STRATEGY_TYPES.values() if getattr(cls, "IN_DEFAULT_COUNCIL", True))
