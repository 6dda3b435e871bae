"""The Sharpe-trained position policy walk-forward on the developers' data: per fold (the trainer's folds: 180-day
train, 90-day test, 24-bar embargo, rolling) a policy is fitted on the training rows and sets positions on the
test rows; its out-of-sample annualised Sharpe net of 0.1 % fees beside buy-and-hold (position 1 throughout) on the
same rows, max drawdown, mean position and turnover, per fold and symbol and pooled; then the per-row latency of
``position_one`` (the inference hot path).

  .venv/bin/python bench/rl_policy.py
  .venv/bin/python bench/rl_policy.py --objective differential_sharpe --epochs 100 --hidden 16

Each fold's test window starts flat for both (both pay the entry fee); the pooled figures chain a symbol's test
windows in time order. Turnover: the sum of |position change| per year, in full positions.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from quorum.backtest.metrics import drawdown_series, periods_per_year
from quorum.learning.dataset import DatasetSpec, build_dataset, frames_from_files
from quorum.learning.policy import PolicySpec, bar_returns, episode_reward, equity_curve, fit_policy
from quorum.learning.scoring import splits
from quorum.learning.train import FoldPlan

DATA = Path(os.environ.get("QUORUM_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
SYMBOLS = ("BTC/USDT", "ETH/USDT")


def _by_symbol(rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Dataset rows (in (ts, symbol) order) reordered into one contiguous, time-ordered episode per symbol."""
    return rows[np.argsort(codes[rows], kind="stable")]


def _figures(positions: np.ndarray, returns: np.ndarray, fee: float, ppy: float) -> tuple[float, float, float]:
    """Sharpe, max drawdown, turnover per year of one symbol's positions on its rows (from flat)."""
    sharpe = episode_reward(positions, returns, fee, ppy)
    max_dd = float(drawdown_series(np.r_[1.0, equity_curve(positions, returns, fee)]).max())
    turnover = float(np.abs(np.diff(np.r_[0.0, positions])).sum()) / (len(positions) / ppy)
    return sharpe, max_dd, turnover


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="start", default="2022-01-01")
    p.add_argument("--to", dest="end", default="2024-01-01", help="exclusive")
    p.add_argument("--objective", default="episode_sharpe", choices=["episode_sharpe", "differential_sharpe"])
    p.add_argument("--epochs", type=int, default=PolicySpec().epochs)
    p.add_argument("--hidden", type=int, nargs="*", default=list(PolicySpec().hidden))
    p.add_argument("--latency-rows", type=int, default=2000)
    args = p.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    end = datetime.fromisoformat(args.end).replace(tzinfo=UTC)
    ppy = periods_per_year("1h")
    spec = PolicySpec(objective=args.objective, epochs=args.epochs, hidden=tuple(args.hidden), periods_per_year=ppy)
    fee = spec.fee_rate

    started = time.perf_counter()
    frames = frames_from_files([DATA / "ohlcv" / f"binance_{s.replace('/', '')}_1h.csv" for s in SYMBOLS])
    ds = build_dataset(frames, DatasetSpec(symbols=SYMBOLS, start=start, end=end))
    X, y = ds.feature_matrix(), ds.frame.get_column("label_return").to_numpy()
    codes = np.array([SYMBOLS.index(s) for s in ds.frame.get_column("symbol").to_list()], dtype=np.int64)
    chosen = splits(ds, FoldPlan().folds(start, end, ds.spec.timeframe))
    print(f"{ds.frame.height:,} rows x {len(ds.feature_columns)} features ({', '.join(SYMBOLS)}, "
          f"{args.start}..{args.end}), dataset {time.perf_counter() - started:.1f} s; {len(chosen)} folds; "
          f"policy {spec.objective}, hidden {spec.hidden}, <= {spec.epochs} epochs (patience {spec.patience}), "
          f"fee {fee:.2%}")
    head = (f"{'fold test window':<24}{'fit s':>6}{'epoch':>6}{'train':>7}{'valid':>7}  {'sym':<4}"
            f"{'Sharpe':>7}{'B&H':>7}{'maxDD':>7}{'B&H DD':>7}{'mean pos':>9}{'turn/yr':>8}")
    print(head)
    print("-" * len(head))
    pooled: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {c: ([], []) for c in range(len(SYMBOLS))}
    fit_total, policy = 0.0, None
    last_test = np.array([], dtype=np.int64)
    for sp in chosen:
        train, test = _by_symbol(sp.train, codes), _by_symbol(sp.test, codes)
        t0 = time.perf_counter()
        policy = fit_policy(spec, X[train], y[train], codes[train], ds.feature_columns, ds.spec.feature_set.version)
        fit_s = time.perf_counter() - t0
        fit_total += fit_s
        positions = policy.positions(X[test])
        window = f"{sp.fold.test_start:%Y-%m-%d}..{sp.fold.test_end:%Y-%m-%d}"
        for code, symbol in enumerate(SYMBOLS):
            mine = codes[test] == code
            pos, ret = positions[mine], y[test][mine]
            pooled[code][0].append(pos)
            pooled[code][1].append(ret)
            sharpe, dd, turnover = _figures(pos, ret, fee, ppy)
            bh_sharpe, bh_dd, _ = _figures(np.ones_like(ret), ret, fee, ppy)
            lead = (f"{window:<24}{fit_s:>6.1f}{policy.best_epoch:>6}{policy.training_reward:>7.2f}"
                    f"{policy.validation_reward or 0.0:>7.2f}" if code == 0 else " " * 50)
            print(f"{lead}  {symbol.split('/')[0]:<4}{sharpe:>7.2f}{bh_sharpe:>7.2f}{dd:>7.1%}{bh_dd:>7.1%}"
                  f"{pos.mean():>9.2f}{turnover:>8.0f}")
        last_test = test
    print("-" * len(head))
    both_pos, both_ret, both_ep = [], [], []
    for code, symbol in enumerate(SYMBOLS):
        pos, ret = np.concatenate(pooled[code][0]), np.concatenate(pooled[code][1])
        starts = np.concatenate([np.r_[1, np.zeros(len(r) - 1, dtype=np.int64)] for r in pooled[code][1]])
        episodes = np.cumsum(starts) + 1000 * code  # each fold's window its own episode: it starts flat
        both_pos.append(pos)
        both_ret.append(ret)
        both_ep.append(episodes)
        sharpe = episode_reward(pos, ret, fee, ppy, episodes=episodes)
        bh = episode_reward(np.ones_like(ret), ret, fee, ppy, episodes=episodes)
        dd = float(drawdown_series(np.r_[1.0, equity_curve(pos, ret, fee, episodes=episodes)]).max())
        bh_dd = float(drawdown_series(np.r_[1.0, equity_curve(np.ones_like(ret), ret, fee,
                                                              episodes=episodes)]).max())
        moved = np.abs(np.diff(np.r_[0.0, pos]) * (starts == 0) + pos * (starts == 1)).sum()
        print(f"{'pooled OOS ' + f'{len(ret):,} bars':<50}  {symbol.split('/')[0]:<4}{sharpe:>7.2f}{bh:>7.2f}"
              f"{dd:>7.1%}{bh_dd:>7.1%}{pos.mean():>9.2f}{moved / (len(ret) / ppy):>8.0f}")
    pos, ret, ep = (np.concatenate(a) for a in (both_pos, both_ret, both_ep))
    print(f"pooled OOS, both symbols' bars together: Sharpe {episode_reward(pos, ret, fee, ppy, episodes=ep):.2f} "
          f"(buy-and-hold {episode_reward(np.ones_like(ret), ret, fee, ppy, episodes=ep):.2f}); "
          f"strategy bar returns mean {bar_returns(pos, ret, fee, ep).mean():.2e}")
    print(f"training: {fit_total:.1f} s over {len(chosen)} folds ({fit_total / max(len(chosen), 1):.1f} s a fold, "
          f"~{np.mean([len(s.train) for s in chosen]):,.0f} rows each); total {time.perf_counter() - started:.1f} s")

    if policy is not None:
        rows = [dict(zip(ds.feature_columns, X[i].tolist(), strict=True)) for i in last_test[:args.latency_rows]]
        policy.position_one(rows[0])  # first call: torch's lazy imports
        took = []
        for values in rows:
            t0 = time.perf_counter_ns()
            policy.position_one(values)
            took.append(time.perf_counter_ns() - t0)
        us = np.array(took) / 1e3
        print(f"position_one latency over {len(us):,} rows: median {np.median(us):.0f} us, p99 "
              f"{np.percentile(us, 99):.0f} us, max {us.max():.0f} us")


if __name__ == "__main__":
    main()
