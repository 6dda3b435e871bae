"""Inference latency per model family, in process: one feature vector in, one prediction out, as inference and
the runner call it (``ServedModel.predict_features``; a model that reads a window also gets the series' earlier
rows, which the service reads from the features table: that query is not in these figures). Each family is
trained with its defaults on the first half of 2022 of BTC/USDT + ETH/USDT hourly, then predicts the next 2,000
feature vectors.

  .venv/bin/python bench/serving_latency.py
  .venv/bin/python bench/serving_latency.py --family lstm --family meta
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from quorum.events.features import FeaturesComputed
from quorum.learning.artifacts import fit_model, window_of
from quorum.learning.dataset import SYMBOL_CODE, DatasetSpec, build_dataset, frames_from_files
from quorum.learning.families import Family, ModelSpec, Task
from quorum.learning.serving import ServedModel
from quorum.times import from_ms

DATA = Path(os.environ.get("QUORUM_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
EVENTS = 2000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", action="append", choices=[f.value for f in Family])
    args = p.parse_args()
    frames = frames_from_files([DATA / "ohlcv" / f"binance_{s}_1h.csv" for s in ("BTCUSDT", "ETHUSDT")])
    ds = build_dataset(frames, DatasetSpec(start=datetime(2022, 1, 1, tzinfo=UTC),
                                           end=datetime(2022, 9, 1, tzinfo=UTC), symbol_feature=True))
    X, y = ds.feature_matrix(), ds.frame.get_column("label_return").to_numpy()
    cut = len(X) - EVENTS
    rows = list(ds.frame.iter_rows(named=True))
    member = [c for c in ds.feature_columns if c != SYMBOL_CODE]
    print(f"{'family':<15}{'fit s':>7}{'median ms':>11}{'p99 ms':>9}{'window':>8}")
    for family in args.family or [f.value for f in Family]:
        spec = ModelSpec(family=family, task=Task.CLASSIFICATION)
        started = time.perf_counter()
        model = fit_model(spec, X[:cut], y[:cut], ds.feature_columns, ds.spec.feature_set.version)
        fitted = time.perf_counter() - started
        served = ServedModel(model, family, "1", None, 1, ds.spec.symbols)
        window = window_of(model)
        history: dict[str, list[dict[str, float | None]]] = {}
        for r in rows[:cut]:
            history.setdefault(r["symbol"], []).append({c: r[c] for c in member})
        timings = []
        for r in rows[cut:]:
            values = {c: r[c] for c in member}
            earlier = history[r["symbol"]][-(window - 1):] if window > 1 else []
            f = FeaturesComputed(exchange="binance", symbol=r["symbol"], timeframe="1h", ts=from_ms(r["ts"]),
                                 feature_set=ds.spec.feature_set.version, close=r["close"], values=values)
            t0 = time.perf_counter()
            served.predict_features(f, earlier)
            timings.append((time.perf_counter() - t0) * 1000)
            history[r["symbol"]].append(values)
        timings.sort()
        print(f"{family:<15}{fitted:>7.1f}{statistics.median(timings):>11.3f}{timings[int(len(timings) * 0.99)]:>9.3f}"
              f"{window:>8}")


if __name__ == "__main__":
    main()
