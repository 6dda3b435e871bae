"""The meta-learner as a model family: bases fitted on the earlier rows, the composition on their predictions of
the latest rows they never saw, then the bases refitted on every row; reproducible, independent of the order of
its bases, saved and loaded as one model, and served row by row like the batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from quorum.events.features import FeaturesComputed
from quorum.learning.artifacts import fit_model, load_model
from quorum.learning.dataset import DatasetSpec, build_dataset, frames_from_files
from quorum.learning.families import Family, ModelSpec, Task
from quorum.learning.serving import ServedModel
from quorum.learning.stacking import Stacked

from tests.support import data_file

SPEC = ModelSpec(family=Family.META, task=Task.CLASSIFICATION)  # LightGBM and random forest, logistic combiner
START, END = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ds():  # type: ignore[no-untyped-def]
    frames = frames_from_files([data_file("ohlcv", f"binance_{s}USDT_1h.csv") for s in ("BTC", "ETH")])
    return build_dataset(frames, DatasetSpec(start=START, end=END, symbol_feature=True))


def _fit(ds, spec: ModelSpec = SPEC) -> Stacked:  # type: ignore[no-untyped-def]
    model = fit_model(spec, ds.feature_matrix(), ds.frame.get_column("label_return").to_numpy(), ds.feature_columns,
                      ds.spec.feature_set.version)
    assert isinstance(model, Stacked)
    return model


@pytest.fixture(scope="module")
def stacked(ds) -> Stacked:  # type: ignore[no-untyped-def]
    return _fit(ds)


def test_the_composition_weighs_the_bases_it_stacks_and_the_same_job_gives_the_same_model(ds, stacked) -> None:  # type: ignore[no-untyped-def]
    again = _fit(ds)
    X = ds.feature_matrix()

    assert [f for f, _ in stacked.bases] == [Family.LIGHTGBM, Family.RANDOM_FOREST]
    assert stacked.learner.input_names == ("lightgbm.expected_return", "lightgbm.p_up", "random_forest.expected_return",
                                           "random_forest.p_up")
    assert all(np.array_equal(a, b) for a, b in zip(again.predict(X), stacked.predict(X), strict=True))
    expected, p_up = stacked.predict(X)
    assert ((0 < p_up) & (p_up < 1)).all() and np.isfinite(expected).all()


def test_served_row_by_row_it_gives_the_batch_prediction(ds, stacked) -> None:  # type: ignore[no-untyped-def]
    served = ServedModel(stacked, "quorum-meta", "1", None, 1, ds.spec.symbols)
    row = ds.frame.row(-1, named=True)
    values = {c: row[c] for c in ds.feature_columns if c != "symbol_code"}
    f = FeaturesComputed(exchange="binance", symbol=row["symbol"], timeframe="1h", ts=END - timedelta(hours=2),
                         feature_set=ds.spec.feature_set.version, close=100, values=values)

    got = served.predict_features(f)

    expected, p_up = stacked.predict(ds.feature_matrix()[-1:])
    assert got == pytest.approx((expected[0], p_up[0]), rel=1e-12)


def test_it_saves_and_loads_as_one_model(ds, stacked, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stacked.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    X = ds.feature_matrix()[:300]

    assert isinstance(back, Stacked) and back.spec == SPEC
    assert all(np.array_equal(a, b) for a, b in zip(back.predict(X), stacked.predict(X), strict=True))


def test_a_meta_learner_without_a_base_or_rows_to_compose_on_is_refused(ds) -> None:  # type: ignore[no-untyped-def]
    none = ModelSpec(family=Family.META, params={"use_lightgbm": False, "use_random_forest": False})
    with pytest.raises(ValueError, match="needs at least one base"):
        _fit(ds, none)
    with pytest.raises(ValueError, match="at least 50 rows"):
        fit_model(SPEC, ds.feature_matrix()[:90], ds.frame.get_column("label_return").to_numpy()[:90],
                  ds.feature_columns, ds.spec.feature_set.version)
    with pytest.raises(ValidationError, match="use_catboost"):
        ModelSpec(family=Family.META, params={"use_catboost": True})
