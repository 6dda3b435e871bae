"""The model registry on a real MLflow store (SQLite in a temp dir): log, register, alias, load, list."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from quorum.learning.families import Family, ModelSpec, Task, TrainedModel, fit
from quorum.learning.registry import ModelVersionInfo, Registry, UnknownModelError

pytestmark = pytest.mark.integration

COLUMNS = ("rsi_14", "macd", "ret_1")
FOLDS = [{"sharpe": 0.8, "hit_rate": 0.52}, {"sharpe": 1.1, "hit_rate": 0.55}, {"sharpe": 1.4, "hit_rate": 0.58}]


@dataclass(frozen=True)
class Logged:
    registry: Registry
    cwd: Path
    state: Path
    X: np.ndarray
    models: tuple[TrainedModel, TrainedModel]
    infos: tuple[ModelVersionInfo, ModelVersionInfo]


def _model(family: Family, task: Task, X: np.ndarray, y: np.ndarray) -> TrainedModel:
    return fit(ModelSpec(family=family, task=task, params={"n_estimators": 10}), X, y, COLUMNS, "fs2-abc")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """Two versions of "btc-1h" (one per family), logged from an empty working directory that must stay empty."""
    cwd, state = tmp_path_factory.mktemp("cwd"), tmp_path_factory.mktemp("state")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, len(COLUMNS)))
    y = 0.01 * X[:, 2] + 0.005 * rng.normal(size=300)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        registry = Registry.local(state)
        models = (_model(Family.LIGHTGBM, Task.REGRESSION, X, y), _model(Family.XGBOOST, Task.CLASSIFICATION, X, y))
        infos = tuple(
            registry.log_model("btc-1h", model, params={"lags": "(1, 2)", "horizon": 1},
                               metrics={"sharpe": 1.1 + i, "hit_rate": 0.55}, fold_metrics=FOLDS,
                               tags={"dataset_hash": f"ds-{i}", "code_version": "v0.1-test"}, example=X[:5])
            for i, model in enumerate(models))
        registry.set_alias("btc-1h", "champion", infos[0].version)
        registry.set_alias("btc-1h", "challenger", infos[1].version)
        yield Logged(registry, cwd, state, X, models, infos)  # type: ignore[arg-type]


def _same_predictions(a: TrainedModel, b: TrainedModel, X: np.ndarray) -> bool:
    return all(np.array_equal(p, q) for p, q in zip(a.predict(X), b.predict(X), strict=True))


def test_each_log_registers_the_next_version(logged: Logged) -> None:
    assert [info.version for info in logged.infos] == ["1", "2"]
    assert logged.infos[0].run_id != logged.infos[1].run_id


def test_load_by_alias_by_version_and_latest(logged: Logged) -> None:
    champion, champion_info = logged.registry.load("btc-1h@champion")
    challenger, challenger_info = logged.registry.load("btc-1h@challenger")
    first, _ = logged.registry.load("btc-1h:1")
    latest, latest_info = logged.registry.load("btc-1h")

    assert (champion_info.version, challenger_info.version, latest_info.version) == ("1", "2", "2")
    assert champion.spec.family is Family.LIGHTGBM and challenger.spec.task is Task.CLASSIFICATION
    assert _same_predictions(champion, logged.models[0], logged.X)
    assert _same_predictions(first, logged.models[0], logged.X)
    assert _same_predictions(challenger, logged.models[1], logged.X)
    assert _same_predictions(latest, logged.models[1], logged.X)
    assert champion.feature_columns == COLUMNS and champion.feature_set == "fs2-abc"


def test_versions_list_metrics_tags_and_aliases(logged: Logged) -> None:
    versions = logged.registry.versions("btc-1h")

    assert [(v.version, v.aliases) for v in versions] == [("1", ("champion",)), ("2", ("challenger",))]
    assert versions[1].metrics == {"sharpe": 2.1, "hit_rate": 0.55}  # aggregates only, no per-fold keys
    assert versions[0].tags == {"dataset_hash": "ds-0", "code_version": "v0.1-test", "feature_set": "fs2-abc",
                                "family": "lightgbm", "task": "regression", "seed": "7"}
    assert versions[0].created_at <= versions[1].created_at and versions[0].created_at.tzinfo is not None
    assert [v.version for v in logged.registry.versions()] == ["1", "2"]


def test_per_fold_metrics_are_logged_with_the_fold_as_step(logged: Logged) -> None:
    assert logged.registry.fold_metrics("btc-1h", "2") == FOLDS


def test_the_run_records_caller_and_model_params(logged: Logged) -> None:
    params = logged.registry._client.get_run(logged.infos[1].run_id).data.params

    assert params["lags"] == "(1, 2)" and params["horizon"] == "1"
    assert params["model.family"] == "xgboost" and params["model.n_estimators"] == "10"
    assert params["model.max_depth"] == "4"


def test_moving_an_alias_changes_what_loads_and_deleting_it_makes_it_unknown(logged: Logged) -> None:
    registry = logged.registry
    registry.set_alias("btc-1h", "canary", "2")
    assert registry.load("btc-1h@canary")[1].version == "2"

    registry.set_alias("btc-1h", "canary", "1")
    assert registry.load("btc-1h@canary")[1].version == "1"

    registry.delete_alias("btc-1h", "canary")
    with pytest.raises(UnknownModelError, match="no alias 'canary'"):
        registry.load("btc-1h@canary")


@pytest.mark.parametrize(("ref", "message"), [
    ("eth-1h", "no registered model 'eth-1h'"),
    ("eth-1h@champion", "no registered model 'eth-1h'"),
    ("btc-1h@nobody", "no alias 'nobody'"),
    ("btc-1h:9", "no version 9"),
    ("btc-1h:latest", "must be a number"),
])
def test_an_unknown_reference_is_a_clear_error(logged: Logged, ref: str, message: str) -> None:
    with pytest.raises(UnknownModelError, match=message):
        logged.registry.load(ref)


def test_aliasing_an_unknown_version_is_a_clear_error(logged: Logged) -> None:
    with pytest.raises(UnknownModelError, match="no version 7"):
        logged.registry.set_alias("btc-1h", "champion", "7")


def test_the_logged_pyfunc_serves_the_same_predictions(logged: Logged) -> None:
    import mlflow.pyfunc
    import pandas as pd

    source = logged.registry._client.get_model_version("btc-1h", "1").source
    served = mlflow.pyfunc.load_model(source)

    out = served.predict(pd.DataFrame(logged.X[:10], columns=list(COLUMNS)))

    expected, p_up = logged.models[0].predict(logged.X[:10])
    assert np.array_equal(out["expected_return"].to_numpy(), expected)
    assert np.array_equal(out["p_up"].to_numpy(), p_up)
    assert [c.name for c in served.metadata.get_input_schema().inputs] == list(COLUMNS)


def test_a_tag_contradicting_the_model_is_rejected(logged: Logged) -> None:
    with pytest.raises(ValueError, match="feature_set"):
        logged.registry.log_model("btc-1h", logged.models[0], params={}, metrics={}, fold_metrics=[],
                                  tags={"feature_set": "fs2-other"}, example=logged.X[:2])


def test_a_model_name_that_breaks_references_is_rejected(logged: Logged) -> None:
    with pytest.raises(ValueError, match="model name"):
        logged.registry.log_model("btc@1h", logged.models[0], params={}, metrics={}, fold_metrics=[], tags={},
                                  example=logged.X[:2])


def test_an_example_of_the_wrong_width_is_rejected_before_any_run(logged: Logged) -> None:
    client = logged.registry._client
    experiment = client.get_experiment_by_name("quorum").experiment_id
    runs_before = len(client.search_runs([experiment]))

    with pytest.raises(ValueError, match="example must have shape"):
        logged.registry.log_model("btc-1h", logged.models[0], params={}, metrics={}, fold_metrics=[], tags={},
                                  example=logged.X[:2, :2])

    assert len(client.search_runs([experiment])) == runs_before
    assert [v.version for v in logged.registry.versions("btc-1h")] == ["1", "2"]


def test_a_database_store_needs_an_artifact_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="artifact_root is required"):
        Registry(f"sqlite:///{tmp_path / 'x.db'}")


def test_nothing_is_written_outside_the_state_dir(logged: Logged) -> None:
    """Last: every test above ran in the fixture's working directory."""
    assert list(logged.cwd.iterdir()) == []
    assert (logged.state / "mlflow" / "mlflow.db").is_file()
    assert list((logged.state / "mlflow" / "artifacts").rglob("model.json"))
