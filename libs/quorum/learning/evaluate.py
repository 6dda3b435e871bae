"""A registered model scored on candles it was not trained on (``quorum evaluate``): features computed as for its
training (its dataset's feature set, lags and higher timeframes), the warm-up rows left out, every remaining row
predicted; plus the model-driven council's backtest over the same candles after the venue's fees, beside
buy-and-hold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl

from quorum.backtest.config import RunnerConfig
from quorum.events.market_data import CandleClosed
from quorum.learning.artifacts import Model
from quorum.learning.dataset import build_dataset
from quorum.learning.registry import ModelVersionInfo
from quorum.learning.scoring import score_rows
from quorum.learning.serving import SYMBOL_CODE, compatibility
from quorum.learning.train import council_for, dataset_spec_of, frames_of, served

HEADLINE = ("total_return", "sharpe", "max_drawdown", "round_trips", "fees")


def evaluate(model: Model, info: ModelVersionInfo, candles: Sequence[CandleClosed], *,
             symbols: Sequence[str] = (), backtest: bool = True) -> dict[str, Any]:
    trained = dataset_spec_of(info)
    present = sorted({c.symbol for c in candles})
    chosen = tuple(symbols) or tuple(present)
    if missing := [s for s in chosen if s not in present]:
        raise ValueError(f"no candles of {', '.join(missing)} in the data (it has {', '.join(present) or 'none'})")
    if SYMBOL_CODE in model.feature_columns and (unknown := [s for s in chosen if s not in trained.symbols]):
        raise ValueError(f"{', '.join(unknown)}: the global model {info.name}:{info.version} was trained on "
                         f"{', '.join(trained.symbols)} only (symbol_code)")
    timeframes = {c.timeframe for c in candles if c.symbol in chosen}
    if timeframes != {trained.timeframe}:
        raise ValueError(f"the model was trained on {trained.timeframe} candles; the data has "
                         f"{', '.join(sorted(timeframes))}")
    spec = trained.model_copy(update={"symbols": chosen, "symbol_feature": False, "start": None, "end": None})
    ds = build_dataset(frames_of([c for c in candles if c.symbol in chosen]), spec)
    frame = ds.frame
    if SYMBOL_CODE in model.feature_columns:
        codes = {s: float(trained.symbols.index(s)) for s in chosen}
        frame = frame.with_columns(pl.col("symbol").replace_strict(codes, return_dtype=pl.Float64).alias(SYMBOL_CODE))
    X = frame.select(model.feature_columns).to_numpy().astype(np.float64, copy=False)
    y = frame.get_column("label_return").to_numpy()
    m, _ = score_rows(model, X, y, np.arange(len(y)), len(chosen))
    out: dict[str, Any] = {
        "model": f"{info.name}:{info.version}", "run_id": info.run_id, "aliases": list(info.aliases),
        "symbols": list(chosen), "timeframe": trained.timeframe,
        "start": frame.get_column("ts").min(), "end": frame.get_column("ts").max(),
        "rows_scored": m["rows"], "mse": m["mse"], "naive_mse": m["naive_mse"],
        "direction_accuracy": m["direction_accuracy"], "always_up_accuracy": m["always_up_accuracy"],
        "brier": m["brier"],
    }
    out["start"], out["end"] = (_iso(out["start"]), _iso(out["end"]))
    if backtest:
        out["backtest"] = _backtest(model, info, [c for c in candles if c.symbol in chosen])
    return out


def _iso(ms: Any) -> str | None:
    from quorum.times import from_ms

    return None if ms is None else from_ms(int(ms)).isoformat()


def _backtest(model: Model, info: ModelVersionInfo, candles: Sequence[CandleClosed]) -> dict[str, Any]:
    from quorum.backtest.engine import backtest
    from quorum.backtest.metrics import metrics_of

    config = RunnerConfig.from_env(council=council_for(model))
    reason = compatibility(model, config.feature_set)
    if reason is not None:
        return {"skipped": reason}
    result = backtest(replace(config, predictor=served(model, info)), candles)
    metrics = metrics_of(result, candles[0].timeframe).as_dict()
    bench = metrics.get("buy_and_hold") or {}
    return {"council": "Solo, model strategy", "fee": str(config.venue.engine.fees.taker),
            "strategy": {k: metrics.get(k) for k in HEADLINE},
            "buy_and_hold": {k: bench.get(k) for k in HEADLINE if k != "round_trips"}}
