"""The meta-learner: its composition is stable under reordering of inputs, the fixed combiners match hand-computed
values, bad weights and inputs are named, the logistic combiner trusts the informative base model, the save format
round-trips, and out-of-fold folds stack with checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from quorum.learning.meta import MetaLearner, MetaSpec, fit_meta, stack_folds
from quorum.learning.scoring import prediction_metrics
from scipy.special import ndtr

ROWS = 600


def _inputs(rows: int = ROWS, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``good`` sees the latent move, ``noise`` does not; a regime column that is weakly informative."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=rows)
    y = 0.01 * latent + 0.01 * rng.normal(size=rows)
    inputs = {
        "good.p_up": ndtr(latent),
        "good.expected_return": 0.01 * latent,
        "noise.p_up": rng.uniform(0.3, 0.7, size=rows),
        "noise.expected_return": 0.01 * rng.normal(size=rows),
        "regime.p_trending_up": np.clip(0.5 + 0.1 * latent + 0.2 * rng.normal(size=rows), 0.0, 1.0),
    }
    return inputs, y


FIXED_NAMES = ("good.p_up", "good.expected_return", "noise.p_up", "noise.expected_return")
WEIGHTS = {"good.p_up": 3.0, "noise.p_up": 1.0, "good.expected_return": 1.0, "noise.expected_return": 4.0}


def _spec(combiner: str) -> MetaSpec:
    return MetaSpec(combiner=combiner, weights=WEIGHTS if combiner == "weights" else None)


def _used(combiner: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The fixed combiners average only p_up and expected_return columns."""
    return {n: inputs[n] for n in FIXED_NAMES} if combiner in ("mean", "weights") else inputs


def _reordered(inputs: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    names = list(inputs)
    np.random.default_rng(seed).shuffle(names)
    return {n: inputs[n] for n in names}


COMBINERS = ["mean", "weights", "logistic", "linear"]


# --- the demanded property: stable under reordering -----------------------------------------------------------

@pytest.mark.parametrize("combiner", COMBINERS)
def test_composition_is_stable_under_reordering_of_inputs(combiner: str, tmp_path: Path) -> None:
    inputs, y = _inputs()
    inputs = _used(combiner, inputs)
    forward = inputs
    backward = dict(reversed(list(inputs.items())))
    shuffled = [_reordered(inputs, seed) for seed in (1, 2, 3)]
    assert list(forward) != list(backward) and len({tuple(s) for s in shuffled} | {tuple(forward)}) > 1
    spec_backward = MetaSpec(combiner=combiner, weights=dict(reversed(list(WEIGHTS.items())))
                             if combiner == "weights" else None)

    a = fit_meta(_spec(combiner), forward, y)
    b = fit_meta(spec_backward, backward, y)
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")

    assert a == b
    assert a.input_names == tuple(sorted(inputs))
    assert (tmp_path / "a" / "model.json").read_bytes() == (tmp_path / "b" / "model.json").read_bytes()
    reference = a.combine(forward)
    for order in [backward, *shuffled]:
        for learner in (a, b):
            out = learner.combine(order)
            assert np.array_equal(out[0], reference[0]) and np.array_equal(out[1], reference[1])


# --- the fixed combiners --------------------------------------------------------------------------------------

def test_mean_is_the_hand_computed_average() -> None:
    inputs = {"a.p_up": np.array([0.2, 0.9]), "b.p_up": np.array([0.6, 0.5]), "c.p_up": np.array([0.1, 0.4]),
              "a.expected_return": np.array([0.01, -0.02]), "b.expected_return": np.array([0.03, 0.0])}
    learner = fit_meta(MetaSpec(combiner="mean"), inputs, np.array([0.01, -0.01]))

    expected, p_up = learner.combine(inputs)

    assert p_up == pytest.approx([(0.2 + 0.6 + 0.1) / 3, (0.9 + 0.5 + 0.4) / 3])
    assert expected == pytest.approx([(0.01 + 0.03) / 2, (-0.02 + 0.0) / 2])


def test_weights_are_the_hand_computed_weighted_sum_normalised_per_output() -> None:
    inputs = {"a.p_up": np.array([0.2, 0.9]), "b.p_up": np.array([0.6, 0.5]),
              "a.expected_return": np.array([0.01, -0.02]), "b.expected_return": np.array([0.03, 0.0])}
    spec = MetaSpec(combiner="weights", weights={"a.p_up": 3.0, "b.p_up": 1.0, "a.expected_return": 1.0,
                                                 "b.expected_return": 0.0})
    learner = fit_meta(spec, inputs, np.array([0.01, -0.01]))

    expected, p_up = learner.combine(inputs)

    assert p_up == pytest.approx([0.75 * 0.2 + 0.25 * 0.6, 0.75 * 0.9 + 0.25 * 0.5])
    assert expected == pytest.approx([0.01, -0.02])
    assert learner.p_up_head is not None and learner.p_up_head.weights() == {"a.p_up": 0.75, "b.p_up": 0.25}


def test_only_p_up_inputs_give_the_expected_return_from_the_mean_move() -> None:
    inputs = {"a.p_up": np.array([0.2, 0.9, 0.5])}
    y = np.array([0.02, -0.01, 0.03])
    learner = fit_meta(MetaSpec(combiner="mean"), inputs, y)

    expected, _ = learner.combine(inputs)

    assert expected == pytest.approx((2 * inputs["a.p_up"] - 1) * 0.02)


@pytest.mark.parametrize(("weights", "message"), [
    ({"a.p_up": 1.0}, "weights lack input 'b.p_up'"),
    ({"a.p_up": 1.0, "b.p_up": 1.0, "c.p_up": 1.0}, "weights name 'c.p_up', which is not an input"),
    ({"a.p_up": 0.0, "b.p_up": 0.0}, "weights of the p_up inputs .* sum to 0"),
])
def test_weights_not_covering_exactly_the_inputs_are_rejected_naming_them(weights: dict, message: str) -> None:
    inputs = {"a.p_up": np.array([0.2, 0.9]), "b.p_up": np.array([0.6, 0.5])}
    with pytest.raises(ValueError, match=message):
        fit_meta(MetaSpec(combiner="weights", weights=weights), inputs, np.array([0.01, -0.01]))


def test_negative_weight_is_rejected_naming_it() -> None:
    with pytest.raises(ValidationError, match="weight of 'b.p_up' must be finite and >= 0"):
        MetaSpec(combiner="weights", weights={"a.p_up": 1.0, "b.p_up": -0.5})


@pytest.mark.parametrize(("combiner", "weights"), [("weights", None), ("mean", {"a.p_up": 1.0})])
def test_weights_go_with_the_weights_combiner_only(combiner: str, weights: dict | None) -> None:
    with pytest.raises(ValidationError, match="required by, and only by, the 'weights' combiner"):
        MetaSpec(combiner=combiner, weights=weights)


def test_fixed_combiner_refuses_a_column_it_cannot_average() -> None:
    inputs, y = _inputs()
    with pytest.raises(ValueError, match="'regime.p_trending_up' is neither"):
        fit_meta(MetaSpec(combiner="mean"), inputs, y)


# --- the fitted combiners -------------------------------------------------------------------------------------

def test_logistic_trusts_the_informative_model_and_beats_the_noise_one() -> None:
    inputs, y = _inputs()
    train = {n: x[:400] for n, x in inputs.items()}
    test = {n: x[400:] for n, x in inputs.items()}
    learner = fit_meta(MetaSpec(combiner="logistic"), train, y[:400])

    expected, p_up = learner.combine(test)

    weights = learner.p_up_head.weights()
    assert weights["good.p_up"] > 3 * abs(weights["noise.p_up"])
    assert learner.expected_head.weights()["good.expected_return"] > 3 * abs(
        learner.expected_head.weights()["noise.expected_return"])
    ours = prediction_metrics(y[400:], expected, p_up)
    noise = prediction_metrics(y[400:], test["noise.expected_return"], test["noise.p_up"])
    assert ours["brier"] < noise["brier"] - 0.02
    assert ours["mse"] < noise["mse"]


@pytest.mark.parametrize("combiner", ["logistic", "linear"])
def test_fitted_combiner_is_deterministic(combiner: str) -> None:
    inputs, y = _inputs()

    first, second = fit_meta(MetaSpec(combiner=combiner), inputs, y), fit_meta(MetaSpec(combiner=combiner),
                                                                               inputs, y)

    assert first == second
    assert all(np.array_equal(u, v) for u, v in zip(first.combine(inputs), second.combine(inputs), strict=True))


def test_linear_p_up_stays_a_probability() -> None:
    inputs, y = _inputs()
    learner = fit_meta(MetaSpec(combiner="linear"), inputs, y)

    _, p_up = learner.combine(inputs)

    assert (p_up > 0).all() and (p_up < 1).all()


def test_fitted_combiner_needs_both_up_and_down_rows() -> None:
    with pytest.raises(ValueError, match="needs both up"):
        fit_meta(MetaSpec(combiner="logistic"), {"a.p_up": np.array([0.2, 0.9])}, np.array([0.01, 0.02]))


# --- inputs at combine time -----------------------------------------------------------------------------------

def test_combine_names_a_missing_or_extra_input() -> None:
    inputs, y = _inputs()
    learner = fit_meta(MetaSpec(combiner="logistic"), inputs, y)
    lacking = {n: x for n, x in inputs.items() if n != "noise.p_up"}

    with pytest.raises(ValueError, match="inputs lack 'noise.p_up'"):
        learner.combine(lacking)
    with pytest.raises(ValueError, match="input 'lstm.p_up' is not one the meta-learner was fitted on"):
        learner.combine({**inputs, "lstm.p_up": inputs["good.p_up"]})


@pytest.mark.parametrize(("column", "message"), [
    (np.array([0.5, 1.2]), "'a.p_up' is a probability but has values outside"),
    (np.array([0.5, np.nan]), "'a.p_up' has NaN"),
    (np.array([0.5]), "'a.p_up' must be 1-d with 2 rows"),
])
def test_bad_input_column_is_rejected_naming_it(column: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_meta(MetaSpec(combiner="mean"), {"a.p_up": column}, np.array([0.01, -0.01]))


@pytest.mark.parametrize("combiner", COMBINERS)
def test_combine_one_is_bit_identical_to_its_row_of_combine(combiner: str) -> None:
    inputs, y = _inputs()
    inputs = _used(combiner, inputs)
    learner = fit_meta(_spec(combiner), inputs, y)
    expected, p_up = learner.combine(inputs)

    rows = [learner.combine_one({n: float(x[i]) for n, x in _reordered(inputs, i).items()}) for i in range(5)]

    assert rows == [(float(expected[i]), float(p_up[i])) for i in range(5)]


# --- the save format ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("combiner", COMBINERS)
def test_save_load_round_trip_gives_identical_outputs(combiner: str, tmp_path: Path) -> None:
    inputs, y = _inputs()
    inputs = _used(combiner, inputs)
    learner = fit_meta(_spec(combiner), inputs, y)

    learner.save(tmp_path)
    loaded = MetaLearner.load(tmp_path)

    assert loaded == learner
    assert all(np.array_equal(u, v) for u, v in zip(loaded.combine(inputs), learner.combine(inputs), strict=True))
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["kind"] == "meta" and meta["format_version"] == 1
    assert sorted(tmp_path.iterdir()) == [tmp_path / "model.json"]  # plain JSON, no pickle beside it


def test_load_refuses_a_base_model_directory(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text(json.dumps({"format_version": 1, "spec": {"family": "xgboost"}}))
    with pytest.raises(ValueError, match="kind None is not a meta-learner"):
        MetaLearner.load(tmp_path)


# --- stacking folds -------------------------------------------------------------------------------------------

def test_stack_folds_concatenates_in_fold_order() -> None:
    folds = [{"a.p_up": np.array([0.1, 0.2]), "b.p_up": np.array([0.3, 0.4])},
             {"b.p_up": np.array([0.7]), "a.p_up": np.array([0.6])}]

    inputs, y = stack_folds(folds, [np.array([0.01, -0.01]), np.array([0.02])])

    assert list(inputs) == ["a.p_up", "b.p_up"]
    assert inputs["a.p_up"].tolist() == [0.1, 0.2, 0.6] and inputs["b.p_up"].tolist() == [0.3, 0.4, 0.7]
    assert y.tolist() == [0.01, -0.01, 0.02]


@pytest.mark.parametrize(("folds", "labels", "message"), [
    ([{"a.p_up": np.array([0.1])}, {"b.p_up": np.array([0.2])}], [np.array([0.0]), np.array([0.0])],
     "fold 1 names inputs \\['b.p_up'\\].*differ: \\['a.p_up', 'b.p_up'\\]"),
    ([{"a.p_up": np.array([0.1, 0.2])}], [np.array([0.0])], "fold 0: input 'a.p_up' must be 1-d with 1 rows"),
    ([{"a.p_up": np.array([0.1])}], [], "one label array per fold"),
])
def test_stack_folds_rejects_mismatched_folds(folds: list, labels: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stack_folds(folds, labels)
