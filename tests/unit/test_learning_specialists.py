"""Per-coin specialists: each member is exactly the model its own symbol's rows train, rows are routed by symbol
code, the bundle saves and loads as one model, and walk-forward scoring takes it like any family."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from quorum.backtest.walkforward import Fold
from quorum.learning.artifacts import fit_model, load_model
from quorum.learning.dataset import Dataset, DatasetSpec
from quorum.learning.families import Family, ModelSpec, Task, TrainedModel, fit
from quorum.learning.scoring import score
from quorum.learning.specialists import MIN_MEMBER_ROWS, Specialists
from quorum.times import to_ms

COLUMNS = ("f1", "f2", "symbol_code")
SPEC = ModelSpec(family=Family.LIGHTGBM, task=Task.REGRESSION, per_symbol=True,
                 params={"n_estimators": 20, "min_child_samples": 5})


def _rows(rows_per_symbol: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two symbols whose returns answer the same feature with opposite signs."""
    rng = np.random.default_rng(seed)
    parts_x, parts_y = [], []
    for code, sign in ((0, 1.0), (1, -1.0)):
        f = rng.normal(size=(rows_per_symbol, 2))
        parts_x.append(np.column_stack([f, np.full(rows_per_symbol, float(code))]))
        parts_y.append(sign * 0.01 * f[:, 0] + 0.001 * rng.normal(size=rows_per_symbol))
    return np.vstack(parts_x), np.concatenate(parts_y)


@pytest.fixture(scope="module")
def bundle() -> Specialists:
    X, y = _rows()
    model = fit_model(SPEC, X, y, COLUMNS, "fs-test")
    assert isinstance(model, Specialists)
    return model


def test_each_specialist_is_the_model_its_own_symbols_rows_train(bundle: Specialists) -> None:
    X, y = _rows()
    X_test, _ = _rows(seed=1)
    member_spec = SPEC.model_copy(update={"per_symbol": False})

    for code in (0, 1):
        mine = X[:, 2] == code
        alone = fit(member_spec, X[mine][:, :2], y[mine], ("f1", "f2"), "fs-test")
        theirs = X_test[X_test[:, 2] == code][:, :2]
        assert np.array_equal(bundle.members[code].predict(theirs)[0], alone.predict(theirs)[0])


def test_rows_are_routed_to_their_symbols_specialist_and_learn_opposite_answers(bundle: Specialists) -> None:
    X_test, y_test = _rows(seed=1)

    expected, p_up = bundle.predict(X_test)

    for code in (0, 1):
        rows = X_test[:, 2] == code
        assert np.array_equal(expected[rows], bundle.members[code].predict(X_test[rows][:, :2])[0])
        assert np.mean(np.sign(expected[rows]) == np.sign(y_test[rows])) > 0.8
    one = bundle.predict_one({"f1": X_test[0, 0], "f2": X_test[0, 1], "symbol_code": 0.0})
    assert one == pytest.approx((expected[0], p_up[0]), rel=1e-12)


def test_a_symbol_without_a_specialist_gets_the_naive_output_in_batch_and_no_prediction_served(
        bundle: Specialists) -> None:
    X = np.array([[0.5, -0.2, 7.0]])

    expected, p_up = bundle.predict(X)

    assert (expected[0], p_up[0]) == (0.0, 0.5)
    assert bundle.predict_one({"f1": 0.5, "f2": -0.2, "symbol_code": 7.0}) is None
    with pytest.raises(ValueError, match="lacks 'symbol_code'"):
        bundle.predict_one({"f1": 0.5, "f2": -0.2})


def test_a_symbol_with_too_few_rows_gets_no_specialist() -> None:
    X, y = _rows()
    few = np.vstack([X, np.column_stack([np.zeros((MIN_MEMBER_ROWS - 1, 2)), np.full(MIN_MEMBER_ROWS - 1, 2.0)])])

    model = fit_model(SPEC, few, np.concatenate([y, np.zeros(MIN_MEMBER_ROWS - 1)]), COLUMNS, "fs-test")

    assert sorted(model.members) == [0, 1]


def test_the_bundle_saves_and_loads_as_one_model(bundle: Specialists, tmp_path: Path) -> None:
    X_test, _ = _rows(seed=2)

    bundle.save(tmp_path / "m")
    back = load_model(tmp_path / "m")

    assert isinstance(back, Specialists) and back.spec == SPEC and sorted(back.members) == [0, 1]
    assert all(np.array_equal(a, b) for a, b in zip(back.predict(X_test), bundle.predict(X_test), strict=True))


def test_a_single_model_still_loads_through_the_one_loader(tmp_path: Path) -> None:
    X, y = _rows()
    single = fit_model(SPEC.model_copy(update={"per_symbol": False}), X, y, COLUMNS, "fs-test")
    single.save(tmp_path / "m")

    assert isinstance(load_model(tmp_path / "m"), TrainedModel)


def test_specialists_need_the_symbol_code_column() -> None:
    X, y = _rows()
    with pytest.raises(ValueError, match="needs the 'symbol_code' column"):
        fit_model(SPEC, X[:, :2], y, ("f1", "f2"), "fs-test")


def test_walk_forward_scoring_trains_specialists_per_fold() -> None:
    X, y = _rows(rows_per_symbol=400)
    t0 = datetime(2022, 1, 1, tzinfo=UTC)
    hour = timedelta(hours=1)
    ts = [to_ms(t0 + (i % 400) * hour) for i in range(800)]
    frame = pl.DataFrame({"ts": ts, "symbol": ["A/USDT"] * 400 + ["B/USDT"] * 400, "f1": X[:, 0], "f2": X[:, 1],
                          "symbol_code": X[:, 2], "label_return": y})
    ds = Dataset(DatasetSpec(symbols=("A/USDT", "B/USDT"), symbol_feature=True), frame, COLUMNS, "hash")
    fold = Fold(t0, t0 + 300 * hour, t0 + 300 * hour, t0 + 400 * hour)

    scored = score(ds, SPEC, [fold])

    assert isinstance(scored.models[0], Specialists)
    assert scored.metrics["rows"] == 200 and scored.metrics["mse_vs_naive"] < 0.2
