"""The sequence models (``quorum.learning.sequence``) on the developers' data: per architecture, the walk-forward
folds the tree families are scored on (``FoldPlan()``: 180-day train, 90-day test, 24-bar embargo, rolling), the
training time per fold, pooled out-of-sample MSE against the zero-return predictor, direction accuracy against
"always up", the Brier score, and the serving latency of ``predict_recent`` (one window per closed candle).

  .venv/bin/python bench/sequence_models.py                          # lstm and transformer, classification
  .venv/bin/python bench/sequence_models.py --architecture lstm --task regression --window 24 --epochs 5

Test windows reach back into the rows before their fold's test window: features only (causal), as a served model
has them at that candle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from quorum.learning.dataset import DatasetSpec, build_dataset, frames_from_files
from quorum.learning.families import Task
from quorum.learning.scoring import prediction_metrics, splits
from quorum.learning.sequence import SequenceModel, SequenceSpec, fit_sequence, windows
from quorum.learning.train import FoldPlan

DATA = Path(os.environ.get("QUORUM_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--architecture", action="append", choices=["lstm", "transformer"])
    p.add_argument("--task", default=Task.CLASSIFICATION.value, choices=[t.value for t in Task])
    p.add_argument("--from", dest="start", default="2022-01-01")
    p.add_argument("--to", dest="end", default="2024-01-01", help="exclusive")
    p.add_argument("--window", type=int, default=48)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--epochs", type=int, default=15, help="max epochs (early stopping may end sooner)")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--latency-calls", type=int, default=500)
    args = p.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    end = datetime.fromisoformat(args.end).replace(tzinfo=UTC)
    files = [DATA / "ohlcv" / f"binance_{s}_1h.csv" for s in ("BTCUSDT", "ETHUSDT")]
    ds = build_dataset(frames_from_files(files), DatasetSpec(start=start, end=end, symbol_feature=True))
    chosen = splits(ds, FoldPlan().folds(start, end, ds.spec.timeframe))
    X, y = ds.feature_matrix(), ds.frame.get_column("label_return").to_numpy()
    groups = ds.frame.get_column("symbol").to_numpy()
    print(f"{ds.frame.height:,} rows x {len(ds.feature_columns)} features of BTC/USDT + ETH/USDT {args.start} to "
          f"{args.end}; {len(chosen)} folds (180-day train, 90-day test, 24-bar embargo, rolling); task {args.task}; "
          f"window {args.window}, hidden {args.hidden}, max epochs {args.epochs}, patience {args.patience}, "
          f"batch {args.batch}, lr {args.lr}; torch on 1 thread")
    for architecture in args.architecture or ["lstm", "transformer"]:
        spec = SequenceSpec(architecture=architecture, task=args.task, window=args.window,  # type: ignore[arg-type]
                            hidden_size=args.hidden, max_epochs=args.epochs, patience=args.patience,
                            batch_size=args.batch, learning_rate=args.lr)
        print(f"\n{architecture}")
        head = (f"  {'fold test window':<25}{'train rows':>11}{'fit s':>7}{'epochs':>7}{'best':>5}{'test':>7}"
                f"{'mse/naive':>10}{'dir acc':>9}{'up':>8}{'brier':>8}")
        print(head)
        pooled: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        fit_seconds: list[float] = []
        model: SequenceModel | None = None
        for sp in chosen:
            started = time.perf_counter()
            model = fit_sequence(spec, X[sp.train], y[sp.train], groups[sp.train], ds.feature_columns,
                                 ds.spec.feature_set.version)
            fit_seconds.append(time.perf_counter() - started)
            W, rows = _test_windows(X, groups, sp.test, args.window, len(ds.spec.symbols))
            expected, p_up = model.predict_windows(W)
            pooled.append((y[rows], expected, p_up))
            m = prediction_metrics(y[rows], expected, p_up)
            window_text = f"{sp.fold.test_start:%Y-%m-%d}..{sp.fold.test_end:%Y-%m-%d}"
            print(f"  {window_text:<25}{len(sp.train):>11,}{fit_seconds[-1]:>7.1f}{model.epochs_run:>7}"
                  f"{model.best_epoch:>5}{len(rows):>7,}{m['mse_vs_naive']:>10.4f}{m['direction_accuracy']:>9.2%}"
                  f"{m['always_up_accuracy']:>8.2%}{m['brier']:>8.4f}")
        m = prediction_metrics(*(np.concatenate([part[i] for part in pooled]) for i in range(3)))
        print(f"  {'pooled OOS':<25}{'':>11}{sum(fit_seconds):>7.1f}{'':>12}{m['rows']:>7,}{m['mse_vs_naive']:>10.4f}"
              f"{m['direction_accuracy']:>9.2%}{m['always_up_accuracy']:>8.2%}{m['brier']:>8.4f}"
              f"   (mse {m['mse']:.4e} vs naive {m['naive_mse']:.4e}; brier of p=0.5: 0.2500)")
        if model is not None:
            median, p99 = _latency(model, ds.frame, args.latency_calls)
            print(f"  predict_recent latency (last fold's model, one {args.window}-bar window): median "
                  f"{median:.0f} us, p99 {p99:.0f} us over {args.latency_calls} calls")


def _test_windows(X: np.ndarray, groups: np.ndarray, test: np.ndarray, window: int,
                  symbols: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows ending at the test rows (the rows before the test window supply their history), built on a
    slice of the rows so the whole dataset's windows are never materialised."""
    lo = max(0, int(test.min()) - 4 * window * symbols)
    W, index = windows(X[lo:int(test.max()) + 1], groups[lo:int(test.max()) + 1], window)
    keep = np.isin(index + lo, test)
    if keep.sum() != len(test):
        raise SystemExit(f"{len(test) - int(keep.sum())} test rows have no full window")
    return W[keep], index[keep] + lo


def _latency(model: SequenceModel, frame: object, calls: int) -> tuple[float, float]:
    """Per-call microseconds of ``predict_recent`` over the latest ETH rows, a new window each call."""
    import polars as pl

    assert isinstance(frame, pl.DataFrame)
    rows = frame.filter(pl.col("symbol") == "ETH/USDT").select(model.feature_columns).tail(
        calls + model.window).to_dicts()
    spent = []
    for i in range(calls):
        recent = rows[i:i + model.window]
        started = time.perf_counter()
        model.predict_recent(recent)
        spent.append((time.perf_counter() - started) * 1e6)
    return statistics.median(spent), float(np.percentile(spent, 99))


if __name__ == "__main__":
    main()
