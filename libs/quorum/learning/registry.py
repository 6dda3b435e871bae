"""Trained models in MLflow: each training run (its parameters, per-fold and aggregate metrics, provenance tags)
and its model, registered as a numbered version of a named model that aliases ("champion", "challenger") point
at. Inference loads "name@alias"; promotion is moving an alias.

The model is logged as an MLflow pyfunc (so MLflow's own tools can serve it) whose artifact is the
``Model`` directory; ``Registry.load`` reads that directory back directly, not through pickle.

MLflow is imported lazily (it takes seconds) and only through an explicit ``MlflowClient``: no global tracking
URI is set, and every experiment this registry creates puts its artifacts under ``artifact_root``, so nothing
lands in the current directory (MLflow's default is ``./mlruns``).
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from quorum.learning.artifacts import Model, is_policy, load_model
from quorum.learning.families import Family

MODEL_ARTIFACT = "model"
"""The run's artifact folder holding the pyfunc model."""

QUORUM_ARTIFACT = "quorum_model"
"""The pyfunc's artifact key, and the folder under ``<model>/artifacts`` that holds the ``Model``."""

FOLD_PREFIX = "fold/"
"""Per-fold metrics are logged as ``fold/<metric>`` with step = the fold index."""

_LIBRARY = {Family.XGBOOST: "xgboost", Family.LIGHTGBM: "lightgbm", Family.RANDOM_FOREST: "scikit-learn",
            Family.LSTM: "torch", Family.TRANSFORMER: "torch", Family.SHARPE_POLICY: "torch",
            Family.META: "xgboost lightgbm scikit-learn torch"}  # a meta-learner's bases may be of any family


class UnknownModelError(ValueError):
    """A model reference names no registered model, alias or version."""


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]
    metrics: dict[str, float]  # the run's aggregate metrics (per-fold ones excluded)
    tags: dict[str, str]
    created_at: datetime


class Registry:
    """An MLflow tracking store and model registry at ``tracking_uri`` (a database URI, or an MLflow server)."""

    def __init__(self, tracking_uri: str, artifact_root: Path | None = None) -> None:
        if artifact_root is None and not tracking_uri.startswith(("http://", "https://")):
            raise ValueError(f"artifact_root is required for the tracking store {tracking_uri!r} (else MLflow "
                             "writes artifacts to ./mlruns)")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network calls, no id file in $HOME
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in service logs
        # Quiet by choice: the store's "creating tables" notes, and the pyfunc warning about cloudpickle (the
        # wrapper is pickled on purpose; ``load`` reads the model's own files, never the pickle).
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root.resolve() if artifact_root is not None else None
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def local(cls, state_dir: Path) -> Registry:
        """The single-machine store: SQLite at ``<state_dir>/mlflow/mlflow.db``, artifacts beside it."""
        root = state_dir.resolve() / "mlflow"
        root.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{root / 'mlflow.db'}", artifact_root=root / "artifacts")

    # --- writing -------------------------------------------------------------------------------------------

    def log_model(self, name: str, model: Model, *, params: Mapping[str, Any],
                  metrics: Mapping[str, float], fold_metrics: Sequence[Mapping[str, float]],
                  tags: Mapping[str, str], example: np.ndarray, experiment: str = "quorum") -> ModelVersionInfo:
        """One run (params, per-fold and aggregate metrics, tags), the model with its signature, registered as
        the next version of ``name``. The model's own facts (family, task, seed, feature set, parameters) are
        added to the params and tags; a caller value that contradicts one is an error."""
        from mlflow.entities import Metric, Param

        _check_name(name)
        example = np.asarray(example, dtype=np.float64)
        if example.ndim != 2 or example.shape[0] == 0 or example.shape[1] != len(model.feature_columns):
            raise ValueError(f"example must have shape (rows, {len(model.feature_columns)}), got {example.shape}")
        run_tags = _merge("tag", {k: str(v) for k, v in tags.items()}, _model_tags(model))
        run_params = _merge("param", {k: str(v) for k, v in params.items()}, _model_params(model))
        now = int(time.time() * 1000)
        logged = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        for step, fold in enumerate(fold_metrics):
            logged += [Metric(f"{FOLD_PREFIX}{k}", float(v), now, step) for k, v in fold.items()]

        client = self._client
        run = client.create_run(self._experiment_id(experiment), tags=run_tags, run_name=name)
        run_id = run.info.run_id
        try:
            client.log_batch(run_id, metrics=logged, params=[Param(k, v) for k, v in run_params.items()])
            with tempfile.TemporaryDirectory(prefix="quorum-model-") as tmp:
                _save_pyfunc(model, Path(tmp) / MODEL_ARTIFACT, example)
                client.log_artifacts(run_id, str(Path(tmp) / MODEL_ARTIFACT), MODEL_ARTIFACT)
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
        self._ensure_registered(name)
        mv = client.create_model_version(name, f"{run.info.artifact_uri}/{MODEL_ARTIFACT}", run_id=run_id,
                                         tags=run_tags)
        return self._info(mv)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._version(name, str(version))  # a clear error for an unknown name or version first
        self._client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        self._by_alias(name, alias)
        self._client.delete_registered_model_alias(name, alias)

    # --- reading -------------------------------------------------------------------------------------------

    def load(self, ref: str) -> tuple[Model, ModelVersionInfo]:
        """``name@alias``, ``name:version`` or ``name`` (its latest version)."""
        if "@" in ref:
            mv = self._by_alias(*ref.split("@", 1))
        elif ":" in ref:
            mv = self._version(*ref.split(":", 1))
        else:
            mv = self._latest(ref)
        with tempfile.TemporaryDirectory(prefix="quorum-model-") as tmp:
            local = Path(self._client.download_artifacts(mv.run_id, MODEL_ARTIFACT, tmp))
            model = load_model(local / "artifacts" / QUORUM_ARTIFACT)  # read whole: the folder goes away
        return model, self._info(mv)

    def versions(self, name: str | None = None) -> list[ModelVersionInfo]:
        """Every version (of ``name``, or of every model), oldest first per model, with metrics and aliases."""
        if name is not None:
            self._registered(name)
        found = self._client.search_model_versions(f"name = '{name}'" if name is not None else None)
        return [self._info(mv) for mv in sorted(found, key=lambda mv: (mv.name, int(mv.version)))]

    def fold_metrics(self, name: str, version: str) -> list[dict[str, float]]:
        """The per-fold metrics of a version's run, one mapping per fold in fold order."""
        mv = self._version(name, str(version))
        folds: dict[int, dict[str, float]] = {}
        for key in self._client.get_run(mv.run_id).data.metrics:
            if key.startswith(FOLD_PREFIX):
                for m in self._client.get_metric_history(mv.run_id, key):
                    folds.setdefault(m.step, {})[key.removeprefix(FOLD_PREFIX)] = m.value
        return [folds[step] for step in sorted(folds)]

    # --- helpers -------------------------------------------------------------------------------------------

    def _experiment_id(self, name: str) -> str:
        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = (self.artifact_root / name).as_uri() if self.artifact_root is not None else None
        return self._client.create_experiment(name, artifact_location=location)

    def _ensure_registered(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(name)
        except MlflowException:
            self._client.create_registered_model(name)

    def _registered(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self._client.get_registered_model(name)
        except MlflowException:
            raise UnknownModelError(f"no registered model {name!r}") from None

    def _version(self, name: str, number: str) -> Any:
        from mlflow.exceptions import MlflowException

        self._registered(name)
        if not number.isdigit():
            raise UnknownModelError(f"model version must be a number, got {number!r} for {name!r}")
        try:
            return self._client.get_model_version(name, number)
        except MlflowException:
            raise UnknownModelError(f"model {name!r} has no version {number}") from None

    def _by_alias(self, name: str, alias: str) -> Any:
        from mlflow.exceptions import MlflowException

        self._registered(name)
        try:
            return self._client.get_model_version_by_alias(name, alias)
        except MlflowException:
            raise UnknownModelError(f"model {name!r} has no alias {alias!r}") from None

    def _latest(self, name: str) -> Any:
        self._registered(name)
        found = self._client.search_model_versions(f"name = '{name}'")
        if not found:
            raise UnknownModelError(f"model {name!r} has no versions")
        return max(found, key=lambda mv: int(mv.version))

    def _info(self, mv: Any) -> ModelVersionInfo:
        aliases = tuple(sorted(self._client.get_model_version(mv.name, mv.version).aliases))
        metrics = self._client.get_run(mv.run_id).data.metrics
        return ModelVersionInfo(
            name=mv.name, version=str(mv.version), run_id=mv.run_id, aliases=aliases,
            metrics={k: v for k, v in metrics.items() if not k.startswith(FOLD_PREFIX)}, tags=dict(mv.tags),
            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
        )


def _check_name(name: str) -> None:
    if not name or "@" in name or ":" in name or "'" in name:
        raise ValueError(f"model name must be non-empty without '@', ':' or quotes (they delimit refs), "
                         f"got {name!r}")


def _model_tags(model: Model) -> dict[str, str]:
    return {"feature_set": model.feature_set, "family": str(model.spec.family), "task": str(model.spec.task),
            "seed": str(model.spec.seed)}


def _model_params(model: Model) -> dict[str, str]:
    spec = model.spec
    resolved = {f"model.{k}": str(v) for k, v in spec.resolved_params().items()}
    return {"model.family": str(spec.family), "model.task": str(spec.task), "model.seed": str(spec.seed),
            "model.per_symbol": str(spec.per_symbol).lower(), **resolved}


def _merge(what: str, given: dict[str, str], derived: dict[str, str]) -> dict[str, str]:
    clash = sorted(k for k in given.keys() & derived.keys() if given[k] != derived[k])
    if clash:
        raise ValueError(f"{what}s {clash} contradict the model's own values "
                         f"{ {k: derived[k] for k in clash} }")
    return {**given, **derived}


def _save_pyfunc(model: Model, path: Path, example: np.ndarray) -> None:
    """The pyfunc model directory: the ``Model`` as its artifact, a column signature from ``example``."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import infer_signature

    signature = infer_signature(pd.DataFrame(example, columns=list(model.feature_columns)), _outputs(model, example))
    with tempfile.TemporaryDirectory(prefix="quorum-model-") as tmp:
        model_dir = Path(tmp) / QUORUM_ARTIFACT
        model.save(model_dir)
        with warnings.catch_warnings():  # the signature is explicit: no input example needed
            warnings.filterwarnings("ignore", message=".*input example", category=UserWarning)
            mlflow.pyfunc.save_model(str(path), python_model=_pyfunc_class()(),
                                     artifacts={QUORUM_ARTIFACT: str(model_dir)}, signature=signature,
                                     pip_requirements=_requirements(model.spec.family))


def _outputs(model: Model, X: np.ndarray) -> Any:
    """What the pyfunc returns for rows X: expected_return and p_up, or a policy's position_target."""
    import pandas as pd

    if is_policy(model):
        return pd.DataFrame({"position_target": model.positions(X)})  # type: ignore[attr-defined]
    expected, p_up = model.predict(X)
    return pd.DataFrame({"expected_return": expected, "p_up": p_up})


def _requirements(family: Family) -> list[str]:
    wanted = ["numpy", "scipy", "pandas", *_LIBRARY[family].split()]
    pins = []
    for package in wanted:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


@functools.cache
def _pyfunc_class() -> type:
    """Defined on first use: subclassing MLflow's PythonModel needs MLflow imported."""
    import mlflow.pyfunc

    class QuorumPyfunc(mlflow.pyfunc.PythonModel):
        """Feature rows (a frame with the model's columns) in, expected_return and p_up out."""

        _skip_type_hint_validation = True  # MLflow's opt-out: the logged signature describes the input instead

        def load_context(self, context):
            self.model = load_model(Path(context.artifacts[QUORUM_ARTIFACT]))

        def predict(self, context, model_input, params=None):
            X = np.asarray(model_input[list(self.model.feature_columns)], dtype=np.float64)
            return _outputs(self.model, X)

    return QuorumPyfunc
