"""The model families: validated specs, deterministic fits, predict_one agreeing with predict, the save format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from quorum.learning.families import TREE_FAMILIES, Family, ModelSpec, Normalizer, Task, TrainedModel, fit

COLUMNS = ("rsi_14", "macd", "atr_14", "ret_1", "vol_z")
TINY = {Family.XGBOOST: {"n_estimators": 15}, Family.LIGHTGBM: {"n_estimators": 15, "min_child_samples": 5},
        Family.RANDOM_FOREST: {"n_estimators": 15, "min_samples_leaf": 5}}
EVERY = [(family, task) for family in TREE_FAMILIES for task in Task]


def _data(rows: int = 400, seed: int = 0, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=shift, size=(rows, len(COLUMNS))) * [10.0, 1.0, 0.1, 0.01, 3.0]
    y = 0.002 * np.tanh(X[:, 0] / 10) - 0.01 * X[:, 3] + 0.003 * rng.normal(size=rows)
    return X, y


def _spec(family: Family, task: Task = Task.REGRESSION, seed: int = 7) -> ModelSpec:
    return ModelSpec(family=family, task=task, params=TINY[family], seed=seed)


def _fit(family: Family, task: Task = Task.REGRESSION, seed: int = 7) -> TrainedModel:
    X, y = _data()
    return fit(_spec(family, task, seed), X, y, COLUMNS, "fs2-test")


@pytest.fixture(scope="module")
def models() -> dict[tuple[Family, Task], TrainedModel]:
    return {(family, task): _fit(family, task) for family, task in EVERY}


# --- specs ----------------------------------------------------------------------------------------------------

def test_unknown_param_is_rejected_naming_it() -> None:
    with pytest.raises(ValidationError, match="unknown xgboost params \\['num_trees'\\]"):
        ModelSpec(family=Family.XGBOOST, params={"num_trees": 10})


@pytest.mark.parametrize(("params", "message"), [
    ({"max_depth": "4"}, "'max_depth' must be int"),
    ({"max_depth": 2.5}, "'max_depth' must be int"),
    ({"bootstrap": 1}, "'bootstrap' must be bool"),
    ({"max_features": 0.0}, "'max_features'=0.0 is outside"),
    ({"n_estimators": 0}, "'n_estimators'=0 is outside"),
])
def test_param_of_wrong_type_or_range_is_rejected(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelSpec(family=Family.RANDOM_FOREST, params=params)


def test_resolved_params_are_the_defaults_with_overrides_and_ints_accepted_as_floats() -> None:
    spec = ModelSpec(family=Family.LIGHTGBM, params={"learning_rate": 1, "num_leaves": 7})

    resolved = spec.resolved_params()

    assert resolved["learning_rate"] == 1.0 and isinstance(resolved["learning_rate"], float)
    assert resolved["num_leaves"] == 7
    assert resolved["n_estimators"] == 200 and resolved["max_depth"] == 4


@pytest.mark.parametrize("family", TREE_FAMILIES)
def test_params_reach_the_estimator(family: Family) -> None:
    X, y = _data()

    model = fit(ModelSpec(family=family, params={"n_estimators": 3}), X, y, COLUMNS, "fs2-test")

    trees = {Family.XGBOOST: lambda e: e.num_boosted_rounds(), Family.LIGHTGBM: lambda e: e.current_iteration(),
             Family.RANDOM_FOREST: lambda e: len(e.estimators_)}[family](model.estimator)
    assert trees == 3


# --- fitting and predicting -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("family", "task"), EVERY)
def test_same_data_and_seed_give_bit_identical_predictions(models: dict, family: Family, task: Task) -> None:
    X, _ = _data(rows=100, seed=1)

    again = _fit(family, task)

    first, second = models[family, task].predict(X), again.predict(X)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_the_seed_changes_a_random_model() -> None:
    X, _ = _data(rows=100, seed=1)

    one, other = _fit(Family.RANDOM_FOREST, seed=1), _fit(Family.RANDOM_FOREST, seed=2)

    assert not np.array_equal(one.predict(X)[0], other.predict(X)[0])


@pytest.mark.parametrize(("family", "task"), EVERY)
def test_predict_one_equals_predict(models: dict, family: Family, task: Task) -> None:
    model = models[family, task]
    X, _ = _data(rows=60, seed=2)

    expected, p_up = model.predict(X)
    one = [model.predict_one(dict(zip(COLUMNS, row, strict=True))) for row in X.tolist()]

    assert one == list(zip(expected.tolist(), p_up.tolist(), strict=True))


def test_predictions_are_in_range_and_follow_the_signal(models: dict) -> None:
    X, y = _data(rows=300, seed=3)

    for (family, task), model in models.items():
        expected, p_up = model.predict(X)
        assert ((p_up >= 0) & (p_up <= 1)).all(), (family, task)
        assert np.corrcoef(expected, y)[0, 1] > 0.3, (family, task)
        assert np.all((expected > 0) == (p_up > 0.5)), (family, task)


def test_regression_p_up_is_phi_of_the_prediction_over_the_residual_std(models: dict) -> None:
    model = models[Family.LIGHTGBM, Task.REGRESSION]
    X, y = _data()

    expected, p_up = model.predict(X[:20])

    fitted, _ = model.predict(X)
    assert model.residual_std == pytest.approx(np.std(y - fitted))
    phi = [0.5 * (1 + math.erf(e / model.residual_std / math.sqrt(2))) for e in expected]
    assert p_up == pytest.approx(phi, abs=1e-12)


def test_classification_expected_return_is_the_edge_times_the_mean_move(models: dict) -> None:
    model = models[Family.XGBOOST, Task.CLASSIFICATION]
    X, y = _data()

    expected, p_up = model.predict(X[:20])

    assert model.mean_abs_return == pytest.approx(np.abs(y).mean())
    assert expected == pytest.approx((2 * p_up - 1) * model.mean_abs_return)


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_predict_one_is_none_while_a_feature_warms_up(models: dict, missing: float | None) -> None:
    row = dict.fromkeys(COLUMNS, 0.5) | {"atr_14": missing}

    assert models[Family.XGBOOST, Task.REGRESSION].predict_one(row) is None


def test_predict_one_ignores_extra_features_and_names_a_missing_one(models: dict) -> None:
    model = models[Family.LIGHTGBM, Task.REGRESSION]
    row = dict.fromkeys(COLUMNS, 0.5)

    assert model.predict_one(row | {"unused": 1.0}) == model.predict_one(row)
    with pytest.raises(ValueError, match="lacks 'macd'"):
        model.predict_one({k: v for k, v in row.items() if k != "macd"})


def test_predict_rejects_rows_of_the_wrong_width_or_with_nan(models: dict) -> None:
    model = models[Family.RANDOM_FOREST, Task.REGRESSION]
    X, _ = _data(rows=5)

    with pytest.raises(ValueError, match="shape"):
        model.predict(X[:, :3])
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.predict(X)


# --- the normaliser -------------------------------------------------------------------------------------------

def test_normalizer_uses_training_rows_only() -> None:
    X_train, y = _data(rows=300, seed=4)
    X_test, _ = _data(rows=300, seed=5, shift=2.0)

    model = fit(_spec(Family.XGBOOST), X_train, y, COLUMNS, "fs2-test")
    scaled_test = model.normalizer.transform(X_test)

    assert np.allclose(model.normalizer.mean, X_train.mean(axis=0))
    assert np.allclose(model.normalizer.std, X_train.std(axis=0))
    assert np.allclose(model.normalizer.transform(X_train).mean(axis=0), 0.0)
    assert (scaled_test.mean(axis=0) > 1.0).all()  # the test rows' own shift survives: not re-centred on them


def test_a_row_scores_the_same_whatever_else_is_in_the_batch(models: dict) -> None:
    model = models[Family.LIGHTGBM, Task.CLASSIFICATION]
    X, _ = _data(rows=50, seed=6)
    far, _ = _data(rows=50, seed=7, shift=5.0)

    alone = model.predict(X[:1])
    mixed = model.predict(np.vstack([X[:1], far]))

    assert alone[0][0] == mixed[0][0] and alone[1][0] == mixed[1][0]


def test_a_constant_column_is_scaled_by_one() -> None:
    X = np.array([[1.0, 5.0], [3.0, 5.0]])

    normalizer = Normalizer.fit(X)

    assert normalizer.std.tolist() == [1.0, 1.0]
    assert normalizer.transform(X).tolist() == [[-1.0, 0.0], [1.0, 0.0]]


def test_normalizer_serialises_exactly() -> None:
    normalizer = Normalizer.fit(_data()[0])

    back = Normalizer.from_dict(json.loads(json.dumps(normalizer.to_dict())))

    assert back == normalizer


# --- saving and loading ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("family", "task"), EVERY)
def test_save_and_load_round_trip(models: dict, tmp_path: Path, family: Family, task: Task) -> None:
    model = models[family, task]
    X, _ = _data(rows=80, seed=8)

    model.save(tmp_path / "m")
    back = TrainedModel.load(tmp_path / "m")

    assert (back.spec, back.feature_columns, back.feature_set) == (model.spec, model.feature_columns, "fs2-test")
    assert (back.normalizer, back.residual_std, back.mean_abs_return) == (
        model.normalizer, model.residual_std, model.mean_abs_return)
    for got, want in zip(back.predict(X), model.predict(X), strict=True):
        assert np.array_equal(got, want)
    row = dict(zip(COLUMNS, X[0].tolist(), strict=True))
    assert back.predict_one(row) == model.predict_one(row)


def test_save_writes_the_estimator_in_its_native_format(models: dict, tmp_path: Path) -> None:
    for (family, task), model in models.items():
        model.save(tmp_path / f"{family}-{task}")

    names = {p.parent.name.split("-")[0]: p.name for p in tmp_path.glob("*/estimator.*")}
    assert names == {"xgboost": "estimator.ubj", "lightgbm": "estimator.txt", "random_forest": "estimator.joblib"}


def test_load_rejects_another_format_version(models: dict, tmp_path: Path) -> None:
    models[Family.LIGHTGBM, Task.REGRESSION].save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps(meta | {"format_version": 99}))

    with pytest.raises(ValueError, match="format version 99"):
        TrainedModel.load(tmp_path)


def test_load_names_a_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no model.json"):
        TrainedModel.load(tmp_path)


# --- bad training input ---------------------------------------------------------------------------------------

def test_fit_rejects_bad_input() -> None:
    X, y = _data(rows=50)
    spec = _spec(Family.LIGHTGBM)
    with_nan = X.copy()
    with_nan[3, 1] = np.nan

    with pytest.raises(ValueError, match="NaN"):
        fit(spec, with_nan, y, COLUMNS, "fs")
    with pytest.raises(ValueError, match="y must have shape"):
        fit(spec, X, y[:-1], COLUMNS, "fs")
    with pytest.raises(ValueError, match="feature_columns"):
        fit(spec, X, y, COLUMNS[:-1], "fs")
    with pytest.raises(ValueError, match="feature_columns"):
        fit(spec, X, y, ("a", "a", "b", "c", "d"), "fs")
    with pytest.raises(ValueError, match="both up"):
        fit(_spec(Family.LIGHTGBM, Task.CLASSIFICATION), X, np.abs(y) + 0.01, COLUMNS, "fs")
