"""Which configuration should ship as the default: a walk-forward, out of sample, of named configurations over the
developers' hourly BTC/USDT + ETH/USDT (one portfolio), each beside buy-and-hold over the same test windows.

Every fold's test window is scored from the equity at its start after a warm-up (see ``quorum.backtest.walkforward``);
the windows are chained into one out-of-sample curve. The figures are reported over all folds and over each half of
them: choose between variants on the first half only and read the second half as the held-out check.

    .venv/bin/python bench/default_config_walkforward.py --config default --config solo-composite \
        [--train-days 180 --test-days 90 --embargo-days 1 --warmup-days 30] [--fee 0.001] [--jobs 2] [--json out.json]

Data: ``$QUORUM_DATA_DIR`` (default ../shared/data), files ohlcv/binance_BTCUSDT_1h.csv and binance_ETHUSDT_1h.csv.
A configuration is a name in libs/quorum/backtest/configs or a JSON file of overrides, as ``quorum backtest`` takes.
The mean campaign return is the mean of every closed round trip's return on its cost, net of fees, pooled over the
folds: each fold's campaigns opened and closed in its own test window (one carried in from the warm-up is left out,
its cost being outside the window; one still open at the window's end is not closed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from quorum.backtest.cli import InputError, load_config, runner_config, with_fee
from quorum.backtest.data import from_files
from quorum.backtest.engine import Trade
from quorum.backtest.metrics import metrics_of, round_trips
from quorum.backtest.walkforward import FoldResult, chain, folds, span, walk_forward
from quorum.types import Side

DATA = Path(os.environ.get("QUORUM_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
FILES = ("binance_BTCUSDT_1h.csv", "binance_ETHUSDT_1h.csv")
COLUMNS = ("total_return", "sharpe", "max_drawdown", "mean_campaign_return", "round_trips")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=None,
                   help="a named configuration or a JSON file of overrides (repeatable; default: default)")
    p.add_argument("--data-dir", type=Path, default=DATA, help="the shared data folder (default $QUORUM_DATA_DIR)")
    p.add_argument("--train-days", type=float, default=180.0)
    p.add_argument("--test-days", type=float, default=90.0)
    p.add_argument("--embargo-days", type=float, default=1.0)
    p.add_argument("--warmup-days", type=float, default=30.0,
                   help="bars fed before each test window (default 30 days; 0: from the fold's training start)")
    p.add_argument("--fee", default="0.001", help="venue fee per side, TAKER[,MAKER] (default 0.001)")
    p.add_argument("--jobs", type=int, default=1, help="configurations run in parallel processes")
    p.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    return p.parse_args(argv)


def load_candles(data_dir: Path) -> list[Any]:
    paths = [data_dir / "ohlcv" / name for name in FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"no data file {missing[0]} (set QUORUM_DATA_DIR to the shared data folder)")
    return from_files(paths, now=datetime(2100, 1, 1, tzinfo=UTC)).candles


def opened_in_window(trades: Sequence[Trade]) -> list[Trade]:
    """The window's fills less those of a position carried in from the warm-up: a symbol's fills before its first
    ENTRY (an entry is only ever made flat). Counted, such a campaign's return would be its whole position's
    proceeds over the cost of only what the window bought."""
    entered: set[str] = set()
    kept = []
    for t in trades:
        if t.side is Side.BUY and t.purpose == "ENTRY":
            entered.add(t.symbol)
        if t.symbol in entered:
            kept.append(t)
    return kept


def figures(windows: Sequence[FoldResult], timeframe: str) -> dict[str, Any]:
    """The chained out-of-sample curve of ``windows`` and its buy-and-hold, as the table's columns."""
    oos = chain([w.result for w in windows])
    m = metrics_of(oos, timeframe)
    trips = [t for w in windows for t in round_trips(opened_in_window(w.result.trades))[0]]
    returns = [t.ret for t in trips]
    bh = m.buy_and_hold
    return {
        "start": m.start.isoformat(), "end": m.end.isoformat(), "folds": len(windows),
        "total_return": m.total_return, "sharpe": m.sharpe, "max_drawdown": m.max_drawdown,
        "mean_campaign_return": sum(returns) / len(returns) if returns else None, "round_trips": len(trips),
        "win_rate": m.win_rate if trips else None, "exposure": m.exposure, "fees": float(m.fees),
        "buy_and_hold": None if bh is None else {"total_return": bh.total_return, "sharpe": bh.sharpe,
                                                 "max_drawdown": bh.max_drawdown},
    }


def meets(f: dict[str, Any]) -> dict[str, bool]:
    """The three criteria: a positive mean campaign return, a Sharpe above buy-and-hold's, a smaller drawdown."""
    bh = f["buy_and_hold"] or {}
    sharpe, bh_sharpe = f["sharpe"], bh.get("sharpe")
    return {"mean_campaign_positive": (f["mean_campaign_return"] or 0.0) > 0,
            "sharpe_above_bh": sharpe is not None and (bh_sharpe is None or sharpe > bh_sharpe),
            "drawdown_below_bh": f["max_drawdown"] < bh.get("max_drawdown", float("inf"))}


def evaluate(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    """One configuration's walk-forward: all folds, the first half, the second half, and the folds one by one."""
    name, overrides = load_config(spec)
    config = runner_config(name, with_fee(overrides, args.fee))
    candles = load_candles(args.data_dir)
    start, end = span(candles)
    plan = list(folds(start, end, train=timedelta(days=args.train_days), test=timedelta(days=args.test_days),
                      embargo=timedelta(days=args.embargo_days)))
    if not plan:
        raise InputError("no fold fits in the data: shorten --train-days or --test-days")
    started = time.perf_counter()
    warmup = timedelta(days=args.warmup_days) if args.warmup_days > 0 else None
    result = walk_forward(lambda _fold: config, candles, plan, warmup=warmup)
    timeframe = candles[0].timeframe
    scored, half = list(result.folds), len(result.folds) // 2
    out = {"config": name, "config_hash": config.config_hash, "seconds": round(time.perf_counter() - started, 1),
           "all": figures(scored, timeframe), "first_half": figures(scored[:half], timeframe) if half else None,
           "second_half": figures(scored[half:], timeframe),
           "per_fold": [{"test_start": f.fold.test_start.isoformat(), **figures([f], timeframe)} for f in scored]}
    out["meets"] = {part: meets(out[part]) for part in ("all", "first_half", "second_half") if out[part]}
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.2f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


def table(results: Sequence[dict[str, Any]]) -> str:
    head = f"{'config':28s} {'part':11s} {'total':>9s} {'sharpe':>7s} {'maxDD':>8s} {'campaign':>9s} {'trips':>6s}" \
           f"   {'B&H total':>9s} {'B&H shp':>7s} {'B&H DD':>8s}  meets"
    lines = [head, "-" * len(head)]
    for r in results:
        for part in ("all", "first_half", "second_half"):
            f = r[part]
            if f is None:
                continue
            bh, ok = f["buy_and_hold"] or {}, r["meets"][part]
            lines.append(f"{r['config'][:28]:28s} {part:11s} {_pct(f['total_return']):>9s} {_num(f['sharpe']):>7s} "
                         f"{_pct(f['max_drawdown']):>8s} {_pct(f['mean_campaign_return']):>9s} "
                         f"{f['round_trips']:>6d}   {_pct(bh.get('total_return')):>9s} {_num(bh.get('sharpe')):>7s} "
                         f"{_pct(bh.get('max_drawdown')):>8s}  {''.join('y' if v else '-' for v in ok.values())}")
    lines.append("meets: mean campaign > 0, Sharpe > buy-and-hold's, max drawdown < buy-and-hold's")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    specs = args.config or ["default"]
    try:
        for spec in specs:  # bad names fail before any backtest runs
            runner_config(*load_config(spec))
        if args.jobs > 1:
            with ProcessPoolExecutor(max_workers=args.jobs) as pool:
                results = list(pool.map(evaluate, specs, [args] * len(specs)))
        else:
            results = [evaluate(spec, args) for spec in specs]
    except InputError as exc:
        print(f"default_config_walkforward: {exc}", file=sys.stderr)
        return 2
    print(table(results))
    doc = json.dumps({"folds": {"train_days": args.train_days, "test_days": args.test_days,
                                "embargo_days": args.embargo_days, "warmup_days": args.warmup_days, "fee": args.fee},
                      "results": results}, indent=2)
    print(doc)
    if args.json is not None:
        args.json.write_text(doc + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
