"""The indicator library: pure code, no I/O. Every indicator exists twice, as a streaming object (one per
series, O(1) per closed candle, ``None`` while warming up) and as a batch function over whole arrays, and the two
agree bit for bit. Where TA-Lib has the indicator, both
match it to 1e-9 relative at every index with the same warm-up length (SMA, EMA, MACD, RSI, STOCH, WILLR, ATR,
BBANDS, MFI, OBV, ROC).

Entry points:

* ``FeatureSetSpec``: which indicators, parameters and normalisations; ``version`` hashes its canonical JSON.
* ``FeatureEngine(spec).update(candle) -> dict[str, float | None]``: streaming, one engine per series
  (``FeatureEngines`` keys them); ``compute_features(df, spec) -> pl.DataFrame``: the same columns for a frame.
* ``resample`` / ``join_closed``: higher-timeframe features on lower-timeframe rows, closed candles only.
* ``RollingZScore`` / ``RollingMinMax`` and ``rolling_zscore`` / ``rolling_minmax``: causal normalisation.

Feature names and what to do with them before a model sees them (no look-ahead anywhere: a value at bar t uses
bars <= t; normalisation windows likewise):

====================================================  ======================================================
feature                                               scale / normalisation for ML
====================================================  ======================================================
``sma_N``, ``ema_N``                                  price level: z-score (or use ``close_over_ema``)
``bb_N_K_upper/_middle/_lower``, ``kc_E_A_M_*``       price level: z-score, or distance from the close
``vwap_N``, ``vwap_session_Hh``, ``fib_R``            price level: z-score, or distance from the close
``macd_F_S_G_line/_signal/_hist``                     price units (scale with the price): z-score
``atr_N``                                             price units: z-score, or divide by the close
``obv``                                               cumulative volume, unbounded drift: z-score
``rsi_N``, ``mfi_N``, ``stoch_*_k/_d``                bounded 0..100: as is (or /100)
``willr_N``                                           bounded -100..0: as is
``bb_N_K_pctb``                                       ~0..1 (outside when the close leaves the bands): as is
``bb_N_K_bandwidth``, ``close_over_ema``              ratios, scale-free: as is
``roc_N`` (percent), ``ema_slope_N_L`` (per bar)      relative changes, scale-free: as is
``rv_N`` / ``rv_N_ann``                               std of log returns, scale-free: as is (regime-dependent)
====================================================  ======================================================

Normalised columns are ``<feature>_z<window>`` (rolling z-score) and ``<feature>_mm<window>`` (rolling min-max).
"""

from quorum.indicators.batch import Bars
from quorum.indicators.engine import (
    FeatureEngine,
    FeatureEngines,
    as_candle,
    compute_feature_arrays,
    compute_features,
    ohlcv_frame,
)
from quorum.indicators.normalize import RollingMinMax, RollingZScore, rolling_minmax, rolling_zscore
from quorum.indicators.spec import (
    DEFAULT_INDICATORS,
    DEFAULT_NORMALIZE,
    AtrSpec,
    BbandsSpec,
    CloseOverEmaSpec,
    EmaSlopeSpec,
    EmaSpec,
    FeatureSetSpec,
    FibSpec,
    IndicatorSpec,
    KeltnerSpec,
    MacdSpec,
    MfiSpec,
    NormalizeSpec,
    ObvSpec,
    RealizedVolSpec,
    RocSpec,
    RsiSpec,
    SessionVwapSpec,
    SmaSpec,
    StochSpec,
    VwapSpec,
    WillrSpec,
)
from quorum.indicators.streaming import Candle
from quorum.indicators.timeframes import join_closed, resample

__all__ = [
    "DEFAULT_INDICATORS", "DEFAULT_NORMALIZE", "AtrSpec", "Bars", "BbandsSpec", "Candle", "CloseOverEmaSpec",
    "EmaSlopeSpec", "EmaSpec", "FeatureEngine", "FeatureEngines", "FeatureSetSpec", "FibSpec", "IndicatorSpec",
    "KeltnerSpec", "MacdSpec", "MfiSpec", "NormalizeSpec", "ObvSpec", "RealizedVolSpec", "RocSpec",
    "RollingMinMax", "RollingZScore", "RsiSpec", "SessionVwapSpec", "SmaSpec", "StochSpec", "VwapSpec",
    "WillrSpec", "as_candle", "compute_feature_arrays", "compute_features", "join_closed", "ohlcv_frame", "resample",
    "rolling_minmax", "rolling_zscore",
]
