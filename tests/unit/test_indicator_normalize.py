"""Causal rolling normalisation: each value uses only the window of defined values ending at its row."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from quorum.indicators import RollingMinMax, RollingZScore, rolling_minmax, rolling_zscore

WINDOW = 7
Normalizer = type[RollingZScore] | type[RollingMinMax]


def stream(make: Normalizer, window: int, x: np.ndarray) -> np.ndarray:
    normalizer = make(window)
    out = [normalizer.update(None if np.isnan(v) else float(v)) for v in x]
    return np.array([np.nan if v is None else v for v in out])


def naive(x: np.ndarray, window: int, method: str) -> np.ndarray:
    """Window by window over the defined values, with NumPy's own mean/std/min/max."""
    out = np.full(len(x), np.nan)
    rows = np.flatnonzero(~np.isnan(x))
    for i in range(window - 1, len(rows)):
        w = x[rows[i - window + 1:i + 1]]
        if method == "zscore":
            out[rows[i]] = 0.0 if w.std() == 0 else (w[-1] - w.mean()) / w.std()
        else:
            out[rows[i]] = 0.5 if w.max() == w.min() else (w[-1] - w.min()) / (w.max() - w.min())
    return out


@pytest.fixture(scope="module")
def feature() -> np.ndarray:
    """A feature with a warm-up, a gap and a flat stretch, around a large level (like a price)."""
    rng = np.random.default_rng(11)
    x = 30_000.0 + np.cumsum(rng.normal(0.0, 5.0, 700))
    x[:25] = np.nan
    x[300:304] = np.nan
    x[400:420] = x[399]
    return x


@pytest.mark.parametrize(("method", "batch", "make"),
                         [("zscore", rolling_zscore, RollingZScore), ("minmax", rolling_minmax, RollingMinMax)])
def test_batch_equals_streaming_bit_for_bit_and_a_naive_window_to_1e9(
        method: str, batch: Callable[[np.ndarray, int], np.ndarray], make: Normalizer, feature: np.ndarray) -> None:
    ours = batch(feature, WINDOW)
    expected = naive(feature, WINDOW, method)

    assert np.array_equal(ours, stream(make, WINDOW, feature), equal_nan=True)
    assert np.array_equal(np.isnan(ours), np.isnan(expected))
    defined = ~np.isnan(expected)
    assert np.all(np.abs(ours - expected)[defined] <= 1e-9 * np.maximum(1.0, np.abs(expected[defined])))


def test_the_first_value_comes_window_minus_one_defined_values_after_the_feature_starts(feature: np.ndarray) -> None:
    z = rolling_zscore(feature, WINDOW)

    assert int(np.argmax(~np.isnan(z))) == 25 + WINDOW - 1
    assert np.isnan(z[300:304]).all() and not np.isnan(z[304])  # a gap is skipped, not restarted


def test_a_flat_window_scores_zero_and_sits_mid_range(feature: np.ndarray) -> None:
    assert (rolling_zscore(feature, WINDOW)[410:420] == 0.0).all()
    assert (rolling_minmax(feature, WINDOW)[410:420] == 0.5).all()


@seed(424242)
@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.just(float("nan")), st.floats(-1e6, 1e6)), min_size=1, max_size=300),
       window=st.integers(2, 12), data=st.data())
def test_values_up_to_t_do_not_depend_on_later_values(values: list[float], window: int, data: st.DataObject) -> None:
    x = np.array(values)
    t = data.draw(st.integers(0, len(x) - 1), label="t")
    altered = x.copy()
    altered[t + 1:] = data.draw(st.lists(st.floats(-1e6, 1e6), min_size=len(x) - t - 1, max_size=len(x) - t - 1))

    for normalize in (rolling_zscore, rolling_minmax):
        prefix = normalize(x[:t + 1], window)
        assert np.array_equal(prefix, normalize(x, window)[:t + 1], equal_nan=True)
        assert np.array_equal(prefix, normalize(altered, window)[:t + 1], equal_nan=True)
