"""A trained model as inference and the runner serve it (a ``quorum.domain.models.Predictor``): its registry
name, version and run id travel with every prediction, and the one feature column the features service does not
compute (``symbol_code`` of a global model) is filled in from the candle's symbol.

``compatibility`` says why a model cannot be served on a feature stream before anything is swapped: another
feature set, or columns (lags, higher timeframes) the features service does not publish."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from quorum.events.features import FeaturesComputed
from quorum.indicators.spec import FeatureSetSpec
from quorum.learning.artifacts import Model, is_policy, window_of

SYMBOL_CODE = "symbol_code"


@dataclass(frozen=True)
class ServedModel:
    model: Model
    name: str
    version: str
    run_id: str | None = None
    horizon: int = 1
    symbols: tuple[str, ...] = ()  # a global model's symbols, in ``symbol_code`` order

    @property
    def window(self) -> int:
        return window_of(self.model)

    def predict_features(self, f: FeaturesComputed, earlier: Sequence[Mapping[str, float | None]] = ()
                         ) -> tuple[float | None, float | None] | tuple[None, None, float] | None:
        rows = [*earlier[max(len(earlier) - self.window + 1, 0):], f.values] if self.window > 1 else [f.values]
        if SYMBOL_CODE in self.model.feature_columns:
            if f.symbol not in self.symbols:
                return None  # a symbol the model was not trained on: no opinion rather than a made-up code
            code = float(self.symbols.index(f.symbol))
            rows = [{**r, SYMBOL_CODE: code} for r in rows]
        if self.window > 1:
            return self.model.predict_recent(rows)  # type: ignore[attr-defined, no-any-return]
        if is_policy(self.model):
            target = self.model.position_one(rows[0])  # type: ignore[attr-defined]
            return None if target is None else (None, None, target)
        return self.model.predict_one(rows[0])


def compatibility(model: Model, feature_set: FeatureSetSpec) -> str | None:
    """None if the model can be served on ``feature_set``'s stream, else the reason it cannot."""
    if model.feature_set != feature_set.version:
        return (f"the model was trained on feature set {model.feature_set}; the features service computes "
                f"{feature_set.version}")
    served = set(feature_set.feature_names) | {SYMBOL_CODE}
    missing: Sequence[str] = [c for c in model.feature_columns if c not in served]
    if missing:
        return (f"the model needs features the features service does not publish: {', '.join(missing[:5])}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return None
