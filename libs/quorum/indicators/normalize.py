"""Causal normalisation of features for ML: the value at row ``t`` uses only the feature's values at rows <= t.

Windows count the feature's *defined* values: warm-up gaps (``None`` / NaN) are skipped, not zero-filled, so a
normaliser starts ``window - 1`` values after its feature does. Streaming and batch agree bit for bit (the window
moments and extremes come from ``_window``).

* z-score: ``(x - mean) / std`` over the last ``window`` values (population std); 0 when the window is flat
  (std <= 1e-12 of the mean's magnitude, or exactly 0).
* min-max: ``(x - min) / (max - min)`` over the last ``window`` values, in [0, 1]; 0.5 when the window is flat.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from quorum.indicators._window import RollingExtreme, RollingMoments, rolling_max, rolling_min, rolling_moments

FLAT = 1e-12
"""A window whose standard deviation is below this fraction of its mean is treated as flat."""


def _check_window(window: int) -> None:
    if window < 2:
        raise ValueError("window must be >= 2")


class RollingZScore:
    __slots__ = ("_moments",)

    def __init__(self, window: int) -> None:
        _check_window(window)
        self._moments = RollingMoments(window)

    def update(self, x: float | None) -> float | None:
        if x is None:
            return None
        moments = self._moments.update(x)
        if moments is None:
            return None
        mean, m2 = moments
        std = math.sqrt(m2 / self._moments.n)
        return 0.0 if std <= FLAT * abs(mean) else (x - mean) / std


class RollingMinMax:
    __slots__ = ("_max", "_min")

    def __init__(self, window: int) -> None:
        _check_window(window)
        self._max = RollingExtreme(window, maximum=True)
        self._min = RollingExtreme(window, maximum=False)

    def update(self, x: float | None) -> float | None:
        if x is None:
            return None
        highest, lowest = self._max.update(x), self._min.update(x)
        if highest is None or lowest is None:
            return None
        return (x - lowest) / (highest - lowest) if highest > lowest else 0.5


def _on_defined(x: np.ndarray, transform: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``transform`` to the non-NaN values in order and put the results back in their rows."""
    missing = np.isnan(x)
    first = int(np.argmax(~missing)) if len(x) else 0
    out = np.empty(len(x))
    out[:first] = np.nan
    if not missing[first:].any():  # the usual shape: a warm-up, then values (no copy needed)
        out[first:] = transform(x[first:])
        return out
    out[missing] = np.nan
    out[~missing] = transform(x[~missing])
    return out


def rolling_zscore(x: np.ndarray, window: int) -> np.ndarray:
    """Batch twin of ``RollingZScore``."""
    _check_window(window)

    def zscore(values: np.ndarray) -> np.ndarray:
        mean, m2 = rolling_moments(values, window)
        std = np.sqrt(np.divide(m2, window, out=m2), out=m2)
        flat = std <= FLAT * np.abs(mean)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.divide(np.subtract(values, mean, out=mean), std, out=mean)
        z[np.flatnonzero(flat)] = 0.0
        z[: window - 1] = np.nan
        return z

    return _on_defined(x, zscore)


def rolling_minmax(x: np.ndarray, window: int) -> np.ndarray:
    """Batch twin of ``RollingMinMax``."""
    _check_window(window)

    def minmax(values: np.ndarray) -> np.ndarray:
        highest, lowest = rolling_max(values, window), rolling_min(values, window)
        span = np.subtract(highest, lowest, out=highest)
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = np.divide(np.subtract(values, lowest, out=lowest), span, out=lowest)
        scaled[np.flatnonzero(span <= 0.0)] = 0.5
        scaled[: window - 1] = np.nan
        return scaled

    return _on_defined(x, minmax)
