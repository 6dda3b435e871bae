"""Sequence models through the one-row interface: trained by ``fit_model`` from a ``ModelSpec``, scored walk-forward
with the rows before each test window as context, saved and loaded by the one loader, and served from the series'
earlier feature rows, which the runner passes from memory exactly as inference reads them from the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from quorum.backtest.walkforward import Fold
from quorum.events.features import FeaturesComputed
from quorum.learning.artifacts import Windowed, fit_model, load_model
from quorum.learning.dataset import DatasetSpec, build_dataset, frames_from_files
from quorum.learning.families import Family, ModelSpec, Task, fit
from quorum.learning.scoring import predict_rows, score, splits
from quorum.learning.serving import ServedModel

from tests.support import data_file

SPEC = ModelSpec(family=Family.LSTM, task=Task.CLASSIFICATION,
                 params={"window": 8, "hidden_size": 4, "max_epochs": 2, "patience": 1, "batch_size": 1024})
START, END = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ds():  # type: ignore[no-untyped-def]
    frames = frames_from_files([data_file("ohlcv", f"binance_{s}USDT_1h.csv") for s in ("BTC", "ETH")])
    return build_dataset(frames, DatasetSpec(start=START, end=END, symbol_feature=True))


@pytest.fixture(scope="module")
def model(ds):  # type: ignore[no-untyped-def]
    X, y = ds.feature_matrix(), ds.frame.get_column("label_return").to_numpy()
    return fit_model(SPEC, X, y, ds.feature_columns, ds.spec.feature_set.version)


def test_a_sequence_family_trains_from_a_model_spec_and_reports_it_back(model) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(model, Windowed) and model.window == 8
    assert model.spec.family is Family.LSTM and model.spec.resolved_params()["window"] == 8
    assert model.spec.resolved_params()["hidden_size"] == 4
    with pytest.raises(ValueError, match="sequence family"):
        fit(SPEC, np.zeros((10, 2)), np.zeros(10), ("a", "b"), "fs")


def test_rows_with_a_full_window_of_their_symbol_are_predicted_and_the_first_ones_naive(ds, model) -> None:  # type: ignore[no-untyped-def]
    X = ds.feature_matrix()[:40]  # 20 hours of two interleaved symbols

    expected, p_up = model.predict(X)

    assert (expected[:14] == 0).all() and (p_up[:14] == 0.5).all()  # fewer than 7 earlier rows of the symbol
    assert (p_up[14:] != 0.5).all()


def test_served_with_its_earlier_rows_the_model_gives_the_batch_prediction(ds, model) -> None:  # type: ignore[no-untyped-def]
    served = ServedModel(model, "quorum-lstm", "1", None, 1, ds.spec.symbols)
    frame = ds.frame.head(60)
    X = ds.feature_matrix()[:60]
    expected, p_up = model.predict(X)
    member = [c for c in ds.feature_columns if c != "symbol_code"]
    rows = [{c: r[c] for c in member} for r in frame.iter_rows(named=True)]
    eth = [i for i, s in enumerate(frame.get_column("symbol").to_list()) if s == "ETH/USDT"]
    last = eth[-1]
    f = FeaturesComputed(exchange="binance", symbol="ETH/USDT", timeframe="1h", ts=START + timedelta(hours=29),
                         feature_set=ds.spec.feature_set.version, close=100, values=rows[last])

    got = served.predict_features(f, [rows[i] for i in eth[:-1]])
    short = served.predict_features(f, [rows[i] for i in eth[-4:-1]])

    assert got == pytest.approx((expected[last], p_up[last]), rel=1e-5)  # float32 network, batch vs one window
    assert short is None  # fewer earlier rows than the window needs: no opinion yet


def test_walk_forward_scoring_gives_every_test_row_a_prediction_from_its_history(ds) -> None:  # type: ignore[no-untyped-def]
    fold = Fold(START, START + timedelta(days=40), START + timedelta(days=40), START + timedelta(days=59))
    [split] = splits(ds, [fold])
    X = ds.feature_matrix()

    scored = score(ds, SPEC, [fold])
    net = scored.models[0]
    expected, p_up = predict_rows(net, X, split.test, len(ds.spec.symbols))

    assert isinstance(net, Windowed) and scored.folds[0].metrics["rows"] == len(split.test)
    assert not (p_up == 0.5).any()  # none fell back to the naive output: each had its window
    full = net.predict(X[: split.test.max() + 1])
    assert np.allclose(p_up, full[1][split.test], rtol=1e-5)


def test_the_one_loader_reads_a_sequence_model_back_with_its_extras(model, ds, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    replace(model, extras={"drift_reference": "x"}).save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    X = ds.feature_matrix()[:80]

    assert isinstance(back, Windowed) and back.extras == {"drift_reference": "x"}
    assert all(np.array_equal(a, b) for a, b in zip(back.predict(X), model.predict(X), strict=True))
