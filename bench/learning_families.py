"""Training per model family on the developers' data: time to train, walk-forward out-of-sample prediction
metrics (MSE against the zero-return predictor, directional accuracy against "always up") and the model-driven
council's walk-forward Sharpe and drawdown per asset beside buy-and-hold, after the venue's 0.1 % fees.

  .venv/bin/python bench/learning_families.py                     # every family and task, 2022-2023 BTC+ETH
  .venv/bin/python bench/learning_families.py --family lightgbm --task classification --from 2021-04-01
  .venv/bin/python bench/learning_families.py --family lightgbm --scope global --scope specialists

Each job registers a version in a throwaway MLflow store (a temporary folder), so the figures are those a
``quorum train`` of the same request prints.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from quorum.backtest.data import from_files
from quorum.learning.dataset import DatasetSpec
from quorum.learning.families import TREE_FAMILIES, Family, ModelSpec, Task
from quorum.learning.registry import Registry
from quorum.learning.train import FoldPlan, TrainingRequest, train

DATA = Path(os.environ.get("QUORUM_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", action="append", choices=[f.value for f in Family],
                   help="default: the tree families")
    p.add_argument("--task", action="append", choices=[t.value for t in Task])
    p.add_argument("--from", dest="start", default="2022-01-01")
    p.add_argument("--to", dest="end", default="2024-01-01", help="exclusive")
    p.add_argument("--no-backtest", action="store_true")
    p.add_argument("--scope", action="append", choices=["global", "specialists"],
                   help="one global cross-asset model (symbol as a feature) and/or per-coin specialists")
    args = p.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    end = datetime.fromisoformat(args.end).replace(tzinfo=UTC)
    files = [DATA / "ohlcv" / f"binance_{s}_1h.csv" for s in ("BTCUSDT", "ETHUSDT")]
    candles = from_files(files, now=datetime(2100, 1, 1, tzinfo=UTC), end=end).candles
    print(f"{len(candles):,} candles of BTC/USDT + ETH/USDT (warm-up before {args.start} included); "
          f"folds: 180-day train, 90-day test, 24-bar embargo, rolling")
    head = (f"{'family':<14}{'task':<15}{'scope':<12}{'total s':>8}{'fit s':>7}{'rows':>8}{'mse/naive':>10}"
            f"{'dir acc':>9}{'up':>7}{'brier':>7}  strategy Sharpe / max DD per asset (buy-and-hold)")
    print(head)
    print("-" * len(head))
    jobs = [(f, t, s) for f in args.family or [f.value for f in TREE_FAMILIES]
            for t in args.task or [t.value for t in Task] for s in args.scope or ["global"]]
    for family, task, scope in jobs:
        request = TrainingRequest(dataset=DatasetSpec(start=start, end=end, symbol_feature=True),
                                  model=ModelSpec(family=family, task=task, per_symbol=scope == "specialists"),
                                  folds=FoldPlan(), strategy_backtest=not args.no_backtest)
        stages: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            result = train(request, candles, Registry.local(Path(tmp)), code_version="bench",
                           progress=lambda pr, seen=stages: seen.setdefault(pr.stage, time.perf_counter()))
            total = time.perf_counter() - started
        fit = stages.get("register", 0.0) - stages.get("fit", 0.0)
        m = result.score.metrics
        strategy = "  ".join(
            f"{a.split('/')[0]} {_f(s.get('sharpe'))} / {s.get('max_drawdown', 0):.1%} "
            f"({_f((s.get('buy_and_hold') or {}).get('sharpe'))} / "
            f"{(s.get('buy_and_hold') or {}).get('max_drawdown', 0):.1%})"
            for a, s in result.summary()["strategy"].items())
        print(f"{family:<14}{task:<15}{scope:<12}{total:>8.1f}{fit:>7.1f}{m['rows']:>8,}"
              f"{_cell(m['mse_vs_naive'], '.4f', 10)}{_cell(m['direction_accuracy'], '.2%', 9)}"
              f"{_cell(m['always_up_accuracy'], '.2%', 7)}{_cell(m['brier'], '.4f', 7)}  {strategy}")


def _cell(x: float | None, fmt: str, width: int) -> str:
    """A metric, or n/a (a position policy predicts no return)."""
    return f"{'n/a' if x is None else format(x, fmt):>{width}}"


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


if __name__ == "__main__":
    main()
