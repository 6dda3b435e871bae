"""Streaming indicators with TA-Lib semantics: a re-export of ``quorum.indicators``, where they live now with
their batch twins, the feature-set spec and the engine. Kept so existing imports keep working."""

from quorum.indicators.legacy import FeatureSpec, FeatureState
from quorum.indicators.streaming import EMA, RSI

__all__ = ["EMA", "RSI", "FeatureSpec", "FeatureState"]
