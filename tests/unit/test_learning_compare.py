"""The side-by-side comparison: every family on the same folds and rows, the meta-learner fitted only on the folds
before the one it predicts, one strategy rule after fees for every predictor, and the report written."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from quorum.learning.compare import FAMILIES, CompareRequest, compare
from quorum.learning.dataset import DatasetSpec, frames_from_files
from quorum.learning.train import FoldPlan

from tests.support import data_file

TINY = {"window": 8, "hidden_size": 4, "max_epochs": 1, "patience": 1, "batch_size": 1024}


@pytest.fixture(scope="module")
def frames() -> dict:
    return frames_from_files([data_file("ohlcv", f"binance_{s}USDT_1h.csv") for s in ("BTC", "ETH")])


def _request(**kw: object) -> CompareRequest:
    span = {"start": datetime(2022, 1, 1, tzinfo=UTC), "end": datetime(2022, 4, 1, tzinfo=UTC)}
    return CompareRequest(dataset=DatasetSpec(**span, symbol_feature=True),
                          folds=FoldPlan(train_days=45, test_days=15, warmup_days=5), sequence=TINY,
                          policy={"epochs": 5, "patience": 2}, **kw)


@pytest.fixture(scope="module")
def compared(frames: dict) -> object:
    return compare(_request(families=("baseline", "lightgbm", "lstm", "meta", "policy")), frames)


def test_every_family_is_scored_on_the_same_test_rows_of_the_same_folds(compared: object) -> None:
    results = {r.family: r for r in compared.results}

    assert list(results) == ["baseline", "lightgbm", "lstm", "meta", "policy"]
    assert len(compared.folds) == 2
    reference = [rows for rows, _, _ in results["baseline"].predicted]
    for r in results.values():
        assert all(np.array_equal(a, b) for a, b in zip((p[0] for p in r.predicted), reference, strict=True))
    rows = sum(len(x) for x in reference)
    assert {r.metrics["rows"] for r in results.values() if r.metrics is not None} == {rows}
    assert results["policy"].metrics is None and set(results["policy"].strategy) == {"BTC/USDT", "ETH/USDT"}


def test_the_meta_learner_averages_on_the_first_fold_and_is_fitted_on_earlier_folds_only(compared: object) -> None:
    results = {r.family: r for r in compared.results}
    first = results["meta"].predicted[0][2]
    bases = [results[f].predicted[0][2] for f in ("lightgbm", "lstm")]

    assert np.allclose(first, np.mean(bases, axis=0))  # fold 1: nothing before it to fit on
    assert not np.allclose(results["meta"].predicted[1][2], np.mean([results[f].predicted[1][2]
                                                                     for f in ("lightgbm", "lstm")], axis=0))


def test_the_same_request_twice_gives_the_same_comparison(frames: dict, compared: object) -> None:
    again = compare(_request(families=("baseline", "lightgbm", "lstm", "meta", "policy")), frames)

    def scores(c: object) -> str:  # everything but the timings
        found = c.as_dict()
        for f in found["families"]:
            f.pop("fit_seconds")
        return json.dumps(found, sort_keys=True, default=str)

    assert scores(again) == scores(compared)


def test_buy_and_hold_and_a_strategy_pay_the_fee_on_every_change_of_position(compared: object) -> None:
    for symbol, bh in compared.buy_and_hold.items():
        assert bh["entries"] == len(compared.folds)  # each test window starts flat and enters once
        assert bh["turnover"] == pytest.approx(len(compared.folds))
        assert bh["bars"] == compared.results[0].strategy[symbol]["bars"]


def test_the_report_is_written_as_markdown_and_json(compared: object, tmp_path: Path) -> None:
    md, data = (tmp_path / "comparison.md"), (tmp_path / "comparison.json")

    written = compared.write(tmp_path)

    assert set(written) == {md, data}
    text = md.read_text()
    assert all(f"| {f} |" in text for f in ("baseline", "lightgbm", "lstm", "meta", "policy"))
    assert "buy-and-hold" in text and {f["family"] for f in json.loads(data.read_text())["families"]} == {
        "baseline", "lightgbm", "lstm", "meta", "policy"}


def test_an_unknown_family_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="unknown families \\['perceptron'\\]"):
        CompareRequest(families=("lightgbm", "perceptron"))
    assert CompareRequest(families=("policy", "baseline")).families == ("baseline", "policy")
    assert CompareRequest().families == FAMILIES
