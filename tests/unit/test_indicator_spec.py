"""The feature-set spec: names, validation, and a version that names exactly what is computed."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import candle
from pydantic import BaseModel, ValidationError
from quorum.indicators import (
    DEFAULT_INDICATORS,
    BbandsSpec,
    Candle,
    FeatureEngine,
    FeatureEngines,
    FeatureSetSpec,
    MacdSpec,
    NormalizeSpec,
    ObvSpec,
    RsiSpec,
    SessionVwapSpec,
    SmaSpec,
)


def test_the_version_is_the_same_in_a_fresh_process() -> None:
    code = "from quorum.indicators import FeatureSetSpec; print(FeatureSetSpec().version)"
    fresh = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()

    assert fresh == FeatureSetSpec().version


def test_the_version_hashes_the_canonical_json() -> None:
    spec = FeatureSetSpec(indicators=(RsiSpec(),), normalize=())

    assert spec.canonical_json() == '{"revision":1,"spec":{"indicators":[{"kind":"rsi","period":14}],"normalize":[]}}'
    assert spec.version == "fs2-e5cab6e0d6f1"


def _tweaked(model: BaseModel) -> list[BaseModel]:
    """The model with each parameter changed in turn."""
    out = []
    for field, value in model.model_dump().items():
        if field == "kind":
            continue
        if isinstance(value, bool) or value is None:
            new = 365.0
        elif isinstance(value, int):
            new = value + 1
        elif isinstance(value, float):
            new = value * 1.5
        else:
            new = (*value, 0.9)
        out.append(model.model_copy(update={field: new}))
    return out


@pytest.mark.parametrize("indicator", DEFAULT_INDICATORS, ids=lambda i: i.kind)
def test_changing_any_parameter_changes_the_version(indicator: BaseModel) -> None:
    base = FeatureSetSpec(indicators=(indicator,), normalize=())
    for tweaked in _tweaked(indicator):
        spec = FeatureSetSpec(indicators=(tweaked,), normalize=())
        assert spec.version != base.version, tweaked


def test_changing_a_normalisation_changes_the_version() -> None:
    base = FeatureSetSpec(indicators=(SmaSpec(),), normalize=(NormalizeSpec(feature="sma_20"),))
    for norm in (NormalizeSpec(feature="sma_20", window=101), NormalizeSpec(feature="sma_20", method="minmax")):
        assert FeatureSetSpec(indicators=(SmaSpec(),), normalize=(norm,)).version != base.version


def test_equal_specs_have_equal_versions_however_written() -> None:
    written = FeatureSetSpec(indicators=(BbandsSpec(nbdev=2),), normalize=())
    parsed = FeatureSetSpec.model_validate_json('{"indicators": [{"kind": "bbands", "period": 20, "nbdev": 2.0}], '
                                                '"normalize": []}')

    assert written.version == parsed.version
    assert FeatureSetSpec.model_validate_json(FeatureSetSpec().model_dump_json()).version == FeatureSetSpec().version


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"indicators": (RsiSpec(), RsiSpec())}, "duplicate feature names"),
    ({"indicators": (RsiSpec(),), "normalize": (NormalizeSpec(feature="rsi_15"),)}, "unknown feature 'rsi_15'"),
])
def test_a_spec_with_clashing_or_dangling_names_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FeatureSetSpec(**kwargs)


def test_macd_needs_its_slow_period_above_its_fast_one() -> None:
    with pytest.raises(ValidationError, match="slow period must be > fast period"):
        MacdSpec(fast=26, slow=12)


def test_the_engine_returns_every_named_feature_in_spec_order() -> None:
    spec = FeatureSetSpec()
    row = FeatureEngine(spec).update(Candle(0, 10.0, 11.0, 9.0, 10.5, 3.0))

    assert tuple(row) == spec.feature_names
    assert row["obv"] == 3.0 and row["rsi_14"] is None


def test_the_engine_takes_the_candle_events_the_services_receive() -> None:
    event = candle()  # Decimal prices, an aware datetime open time
    row = FeatureEngine(FeatureSetSpec(indicators=(ObvSpec(), SessionVwapSpec()), normalize=())).update(event)

    assert row == {"obv": float(event.volume),
                   "vwap_session_24h": pytest.approx(float((event.high + event.low + event.close) / 3), rel=1e-15)}


def test_engines_keep_one_state_per_series() -> None:
    engines = FeatureEngines(FeatureSetSpec(indicators=(SmaSpec(period=2),), normalize=()))
    engines.update("BTC", Candle(0, 1.0, 1.0, 1.0, 1.0, 1.0))
    engines.update("ETH", Candle(0, 5.0, 5.0, 5.0, 5.0, 1.0))

    assert engines.update("BTC", Candle(60_000, 3.0, 3.0, 3.0, 3.0, 1.0)) == {"sma_2": 2.0}
