"""Sequence models: windows of one symbol's feature rows, LSTM and Transformer fits that reproduce bit for bit from
their seed, early stopping that keeps the best epoch, a directory format that round-trips, one-window serving."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from quorum.learning.dataset import DatasetSpec, build_dataset, frames_from_files
from quorum.learning.families import Task
from quorum.learning.scoring import prediction_metrics
from quorum.learning.sequence import (
    KIND,
    SequenceModel,
    SequenceSpec,
    fit_sequence,
    signature_example,
    window_rows,
    windows,
)

from tests.support import data_file

WINDOW = 16
SMALL: dict[str, Any] = {"window": WINDOW, "hidden_size": 16, "max_epochs": 3, "patience": 2, "batch_size": 128,
                         "learning_rate": 3e-3}
CASES = [(a, t) for a in ("lstm", "transformer") for t in (Task.REGRESSION, Task.CLASSIFICATION)]


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    """Two months of hourly BTC+ETH rows: the first 75 % train, windows ending in the rest are scored."""
    frames = frames_from_files([data_file("ohlcv", "binance_BTCUSDT_1h.csv"),
                                data_file("ohlcv", "binance_ETHUSDT_1h.csv")])
    ds = build_dataset(frames, DatasetSpec(start=datetime(2023, 1, 1, tzinfo=UTC), end=datetime(2023, 3, 1, tzinfo=UTC),
                                           symbol_feature=True))
    X, y = ds.feature_matrix(), ds.frame.get_column("label_return").to_numpy()
    groups = ds.frame.get_column("symbol").to_numpy()
    cut = int(len(y) * 0.75)
    W, index = windows(X, groups, WINDOW)
    scored = index >= cut
    return {"ds": ds, "X": X, "y": y, "groups": groups, "cut": cut, "W": W[scored], "index": index[scored]}


_FITS: dict[tuple[str, Task, int], SequenceModel] = {}


def fitted(real: dict[str, Any], architecture: str, task: Task, seed: int = 7, fresh: bool = False) -> SequenceModel:
    """The case's model (cached per seed unless ``fresh``: a second, independent fit)."""
    key = (architecture, task, seed)
    if fresh or key not in _FITS:
        cut = real["cut"]
        spec = SequenceSpec(architecture=architecture, task=task, seed=seed, **SMALL)  # type: ignore[arg-type]
        model = fit_sequence(spec, real["X"][:cut], real["y"][:cut], real["groups"][:cut],
                             real["ds"].feature_columns, "fs-test")
        if fresh:
            return model
        _FITS[key] = model
    return _FITS[key]


# --- windows ---------------------------------------------------------------------------------------------------


def test_windows_hold_the_rows_of_one_group_ending_at_their_index_oldest_first() -> None:
    X = np.arange(16.0).reshape(8, 2)  # row r is (2r, 2r + 1)
    groups = np.array([5, 9, 5, 9, 9, 5, 5, 9])  # interleaved, not contiguous

    W, index = windows(X, groups, 3)

    assert W.shape == (4, 3, 2) and index.tolist() == [4, 5, 6, 7]
    assert W[0, :, 0].tolist() == [2.0, 6.0, 8.0]  # group 9: rows 1, 3, 4
    assert W[1, :, 0].tolist() == [0.0, 4.0, 10.0]  # group 5: rows 0, 2, 5
    assert W[2, :, 0].tolist() == [4.0, 10.0, 12.0]
    assert W[3, :, 0].tolist() == [6.0, 8.0, 14.0]
    assert np.array_equal(W[:, -1], X[index])


def test_rows_without_enough_history_in_their_group_get_no_window() -> None:
    groups = np.array(["BTC", "ETH", "BTC", "BTC", "ETH"])  # ETH has 2 rows, BTC 3

    rows, index = window_rows(groups, 3)
    W, _ = windows(np.ones((5, 4)), groups, 6)

    assert rows.tolist() == [[0, 2, 3]] and index.tolist() == [3]
    assert W.shape == (0, 6, 4)


@pytest.mark.parametrize(("X", "groups", "length", "says"), [
    (np.ones(5), np.zeros(5), 2, "2-d"),
    (np.ones((5, 2)), np.zeros(4), 2, "groups must have shape"),
    (np.ones((5, 2)), np.zeros((5, 1)), 2, "groups must have shape"),
    (np.ones((5, 2)), np.zeros(5), 0, "window length"),
    (np.ones((5, 2)), np.zeros(5), 2.0, "window length"),
    (np.array([["a", "b"]]), np.zeros(1), 1, "numeric"),
])
def test_windows_refuse_bad_inputs_naming_them(X: np.ndarray, groups: np.ndarray, length: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        windows(X, groups, length)


def test_the_spec_refuses_a_width_the_heads_do_not_divide_and_unknown_or_out_of_range_fields() -> None:
    with pytest.raises(ValidationError, match="multiple of heads"):
        SequenceSpec(architecture="transformer", hidden_size=30, heads=4)
    with pytest.raises(ValidationError, match="window"):
        SequenceSpec(architecture="lstm", window=1)
    with pytest.raises(ValidationError, match="extra"):
        SequenceSpec(architecture="lstm", epochs=3)  # type: ignore[call-arg]
    assert SequenceSpec(architecture="lstm", hidden_size=30, heads=4).heads == 4  # heads only bind transformers


# --- fits on real data -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("architecture", "task"), CASES)
def test_the_same_seed_gives_identical_predictions_metrics_and_best_epoch(real: dict[str, Any], architecture: str,
                                                                         task: Task) -> None:
    first = fitted(real, architecture, task)
    again = fitted(real, architecture, task, fresh=True)

    e1, p1 = first.predict_windows(real["W"])
    e2, p2 = again.predict_windows(real["W"])

    y = real["y"][real["index"]]
    assert np.array_equal(e1, e2) and np.array_equal(p1, p2)
    assert prediction_metrics(y, e1, p1) == prediction_metrics(y, e2, p2)
    assert (first.best_epoch, first.epochs_run, first.residual_std) == (again.best_epoch, again.epochs_run,
                                                                        again.residual_std)
    assert np.isfinite(e1).all() and ((p1 > 0) & (p1 < 1)).all() and np.std(p1) > 0


@pytest.mark.parametrize(("architecture", "task"), CASES)
def test_another_seed_gives_other_predictions(real: dict[str, Any], architecture: str, task: Task) -> None:
    seven, eight = fitted(real, architecture, task, 7), fitted(real, architecture, task, 8)

    assert not np.array_equal(seven.predict_windows(real["W"])[1], eight.predict_windows(real["W"])[1])


@pytest.mark.parametrize(("architecture", "task"), CASES)
def test_a_saved_model_loads_back_predicting_identically(real: dict[str, Any], architecture: str, task: Task,
                                                         tmp_path: Path) -> None:
    model = fitted(real, architecture, task)

    model.save(tmp_path)
    back = SequenceModel.load(tmp_path)

    assert json.loads((tmp_path / "model.json").read_text())["kind"] == KIND
    assert (tmp_path / "model.pt").is_file()
    assert back == model  # every field but the network
    for got, want in zip(back.predict_windows(real["W"]), model.predict_windows(real["W"]), strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize(("architecture", "task"), CASES)
def test_predict_recent_on_a_symbols_latest_rows_equals_predict_windows_on_that_window(
        real: dict[str, Any], architecture: str, task: Task) -> None:
    model = fitted(real, architecture, task)
    frame = real["ds"].frame
    eth = frame.filter(frame.get_column("symbol") == "ETH/USDT").select(model.feature_columns).to_dicts()
    last = windows(real["X"], real["groups"], WINDOW)
    at = int(np.flatnonzero(real["groups"][last[1]] == "ETH/USDT")[-1])

    got = model.predict_recent(eth[-WINDOW - 5:])  # more rows than the window: the latest are used

    expected, p_up = model.predict_windows(last[0][at:at + 1])
    assert got == (float(expected[0]), float(p_up[0]))
    batch = model.predict_windows(last[0][at - 50:at + 1])
    assert got == pytest.approx((batch[0][-1], batch[1][-1]), rel=1e-5, abs=1e-9)  # float32 kernels per batch size


def test_predict_recent_waits_for_a_full_warm_window_and_names_a_missing_column(real: dict[str, Any]) -> None:
    model = fitted(real, "lstm", Task.CLASSIFICATION)
    rows = [dict.fromkeys(model.feature_columns, 0.5) for _ in range(WINDOW)]
    warming = [*rows[:-1], {**rows[-1], "rsi_14": None}]
    nan = [{**rows[0], "rsi_14": float("nan")}, *rows[1:]]

    assert model.predict_recent(rows[1:]) is None
    assert model.predict_recent(warming) is None
    assert model.predict_recent(nan) is None
    assert model.predict_recent(rows) is not None
    with pytest.raises(ValueError, match="'rsi_14'"):
        model.predict_recent([{k: v for k, v in r.items() if k != "rsi_14"} for r in rows])


def test_the_signature_example_is_one_window_the_model_scores(real: dict[str, Any]) -> None:
    model = fitted(real, "transformer", Task.REGRESSION)

    example = signature_example(model)

    assert example.shape == (1, WINDOW, len(model.feature_columns))
    assert np.isfinite(model.predict_windows(example)[0]).all()
    with pytest.raises(ValueError, match="W must have shape"):
        model.predict_windows(example[:, 1:])


# --- early stopping, bad inputs, global state ------------------------------------------------------------------


def reversing(n: int = 800) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A return that follows feature 0 in the first 80 % of the rows and its opposite after: the better the
    network learns the training rows, the worse it does on the validation fold."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 3))
    sign = np.where(np.arange(n) < int(n * 0.8), 1.0, -1.0)
    return X, 0.01 * sign * X[:, 0] + rng.normal(0, 1e-3, n), np.zeros(n)


@pytest.mark.parametrize("architecture", ["lstm", "transformer"])
def test_training_stops_once_the_validation_loss_stops_falling_and_keeps_the_best_epochs_weights(
        architecture: str) -> None:
    X, y, groups = reversing()
    spec = SequenceSpec(architecture=architecture, window=4, hidden_size=8, max_epochs=40, patience=2,  # type: ignore[arg-type]
                        batch_size=64, learning_rate=1e-2)

    stopped = fit_sequence(spec, X, y, groups, ["a", "b", "c"], "fs")
    exactly = fit_sequence(spec.model_copy(update={"max_epochs": stopped.best_epoch}), X, y, groups,
                           ["a", "b", "c"], "fs")

    assert stopped.epochs_run == stopped.best_epoch + spec.patience < spec.max_epochs
    W, _ = windows(X, groups, 4)
    assert np.array_equal(stopped.predict_windows(W)[0], exactly.predict_windows(W)[0])


@pytest.mark.parametrize(("change", "says"), [
    ({"y": np.zeros(5)}, "y must have shape"),
    ({"X": np.full((800, 3), np.nan)}, "NaN"),
    ({"groups": np.zeros(7)}, "groups must have shape"),
    ({"columns": ["a", "a", "c"]}, "feature_columns"),
    ({"X": np.ones((4, 3)), "y": np.ones(4), "groups": np.zeros(4)}, "0 training and 1 validation windows"),
    ({"task": Task.CLASSIFICATION, "y": np.ones(800)}, "both up"),
])
def test_fit_refuses_bad_inputs_naming_them(change: dict[str, Any], says: str) -> None:
    X, y, groups = reversing()
    args = {"X": X, "y": y, "groups": groups, "columns": ["a", "b", "c"], "task": Task.REGRESSION, **change}
    spec = SequenceSpec(architecture="lstm", task=args["task"], window=4, hidden_size=4, max_epochs=1)

    with pytest.raises(ValueError, match=says):
        fit_sequence(spec, args["X"], args["y"], args["groups"], args["columns"], "fs")


def test_fit_and_predict_leave_threads_determinism_and_the_global_rng_as_they_found_them() -> None:
    X, y, groups = reversing(200)
    spec = SequenceSpec(architecture="lstm", window=4, hidden_size=4, max_epochs=2)
    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(123)
    rng = torch.get_rng_state()

    model = fit_sequence(spec, X, y, groups, ["a", "b", "c"], "fs")
    model.predict_windows(windows(X, groups, 4)[0])

    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, strict)
    assert torch.equal(torch.get_rng_state(), rng)


def test_loading_a_directory_of_another_kind_says_so(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text(json.dumps({"format_version": 1, "kind": "specialists"}))

    with pytest.raises(ValueError, match="kind 'specialists'"):
        SequenceModel.load(tmp_path)
