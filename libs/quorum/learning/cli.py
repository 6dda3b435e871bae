"""``quorum train`` and ``quorum evaluate``: the learning loop from the command line.

``quorum train`` builds the dataset from candle files or the stored candles, scores the model family walk-forward
(purged, embargoed folds) against the naive zero-return predictor and the champion, backtests the model-driven
council on the same folds, fits the model on every row, registers it in MLflow as the ``challenger`` and prints
the promotion verdict (it becomes ``champion`` only with ``--promote`` and every check passed). Same data, same
parameters, same seed: the same metrics.

  quorum train --data ../shared/data/ohlcv/binance_BTCUSDT_1h.csv --data ../shared/data/ohlcv/binance_ETHUSDT_1h.csv \\
      --from 2022-01-01 --family lightgbm --task classification

``quorum evaluate`` scores a registered model on a candle file it was not trained on and prints one JSON object.

  quorum evaluate --model quorum-global@challenger --data ../shared/data/ohlcv/binance_BTCUSDT_1h.csv --to 2021-12-31

``quorum compare-models`` runs every model family (baseline, trees, LSTM, Transformer, meta-learner, Sharpe policy)
on the same walk-forward folds and writes comparison.md and comparison.json.

Bad input exits 2 with one line saying what was wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from quorum.backtest.cli import InputError, add_market_options, load_candles
from quorum.learning.families import Family


def _registry_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking server or database URI (default: QUORUM_MLFLOW_TRACKING_URI, else the "
                        "local store in --state-dir)")
    p.add_argument("--state-dir", type=Path, default=None,
                   help="the local store's folder (default: QUORUM_MLFLOW_STATE_DIR, else .quorum)")


def add_parsers(subparsers: Any) -> None:
    t = subparsers.add_parser("train", help="train, score walk-forward and register a model (MLflow challenger)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_market_options(t, database_help="stored candles instead of files (default without --data: DATABASE_URL or "
                                        "the running native stack's)")
    t.add_argument("--name", default="quorum-global", help="the registered model's name")
    t.add_argument("--family", default="lightgbm", choices=[f.value for f in Family],
                   help="a tree family or a sequence model (lstm, transformer: torch, over windows of rows)")
    t.add_argument("--task", default="classification", choices=["regression", "classification"])
    t.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a hyper-parameter of the family (repeatable), e.g. n_estimators=300")
    t.add_argument("--seed", type=int, default=7)
    t.add_argument("--specialists", action="store_true",
                   help="per-coin specialists: one model per symbol, registered and served as one version")
    t.add_argument("--search-trials", type=int, default=0, metavar="N",
                   help="tune the family's parameters first (N Optuna trials on the rows before the first test "
                        "window; the primary metric), then score the choice like hand-set parameters")
    t.add_argument("--horizon", type=int, default=1, help="label horizon in bars")
    t.add_argument("--lags", default="", help="lagged copies of every feature, e.g. 1,2,3")
    t.add_argument("--extra-timeframe", action="append", default=[], metavar="TF",
                   help="higher-timeframe features joined as of the last closed bar, e.g. 4h (repeatable)")
    t.add_argument("--train-days", type=float, default=180)
    t.add_argument("--test-days", type=float, default=90)
    t.add_argument("--embargo-bars", type=int, default=24)
    t.add_argument("--expanding", action="store_true", help="expanding training windows (default: rolling)")
    t.add_argument("--no-backtest", action="store_true", help="skip the model-driven council's walk-forward")
    t.add_argument("--promote", action="store_true",
                   help="make it champion when every promotion check passes (QUORUM_LEARNING_AUTO_PROMOTE)")
    t.add_argument("--json", action="store_true", help="print the summary as JSON only")
    _registry_options(t)
    t.set_defaults(func=_guarded("train", cmd_train))

    e = subparsers.add_parser("evaluate", help="score a registered model on candles it was not trained on (JSON)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--model", required=True, metavar="NAME[@ALIAS|:VERSION]")
    add_market_options(e, database_help="stored candles instead of files")
    e.add_argument("--no-backtest", action="store_true", help="only the prediction metrics")
    _registry_options(e)
    e.set_defaults(func=_guarded("evaluate", cmd_evaluate))

    c = subparsers.add_parser("compare-models", help="every model family on the same walk-forward folds: a table "
                                                     "and a report (prediction and strategy metrics after fees)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_market_options(c, database_help="stored candles instead of files")
    c.add_argument("--family", action="append", default=[], metavar="NAME",
                   help="baseline, xgboost, lightgbm, random_forest, lstm, transformer, meta, policy (repeatable; "
                        "default: all)")
    c.add_argument("--task", default="classification", choices=["regression", "classification"])
    c.add_argument("--train-days", type=float, default=180)
    c.add_argument("--test-days", type=float, default=90)
    c.add_argument("--embargo-bars", type=int, default=24)
    c.add_argument("--window", type=int, default=24, help="bars per sequence-model sample")
    c.add_argument("--epochs", type=int, default=8, help="most epochs of a sequence model")
    c.add_argument("--fee", type=float, default=0.001, help="per unit of position change (0.001: 0.1 %%)")
    c.add_argument("--out", type=Path, default=Path(".quorum") / "compare",
                   help="where comparison.md and comparison.json go")
    c.set_defaults(func=_guarded("compare-models", cmd_compare))

    b = subparsers.add_parser("bootstrap-model", help="train and register a first champion from the shared data "
                                                      "when the registry has none (what `quorum dev` does first)")
    b.add_argument("--data-dir", type=Path, default=None,
                   help="the shared data folder (default: QUORUM_DATA_DIR, else ../shared/data)")
    _registry_options(b)
    b.set_defaults(func=_guarded("bootstrap-model", cmd_bootstrap))


def _guarded(name: str, command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args, sys.stdout, sys.stderr))
        except InputError as exc:
            print(f"quorum {name}: {exc}", file=sys.stderr)
            return 2

    return run


def _registry(args: argparse.Namespace) -> Any:
    from quorum.learning.settings import RegistrySettings

    given = {k: v for k, v in (("tracking_uri", args.tracking_uri), ("state_dir", args.state_dir)) if v is not None}
    try:
        return RegistrySettings(**given).registry()
    except ValueError as exc:
        raise InputError(" ".join(str(exc).split())) from None


def _params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def _request(args: argparse.Namespace, symbols: tuple[str, ...]) -> Any:
    from pydantic import ValidationError

    from quorum.learning.dataset import DatasetSpec
    from quorum.learning.families import ModelSpec
    from quorum.learning.train import FoldPlan, TrainingRequest

    try:
        lags = tuple(int(x) for x in args.lags.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--lags {args.lags!r}: expected whole numbers separated by commas") from None
    timeframe = args.timeframe or "1h"
    try:
        return TrainingRequest(
            model_name=args.name,
            dataset=DatasetSpec(symbols=symbols, timeframe=timeframe, lags=lags,  # the range: the candles loaded
                                extra_timeframes=tuple(args.extra_timeframe), horizon=args.horizon,
                                symbol_feature=len(symbols) > 1 or args.specialists),
            model=ModelSpec(family=args.family, task=args.task, params=_params(args.param), seed=args.seed,
                            per_symbol=args.specialists),
            folds=FoldPlan(train_days=args.train_days, test_days=args.test_days, embargo_bars=args.embargo_bars,
                           mode="expanding" if args.expanding else "rolling"),
            strategy_backtest=not args.no_backtest,
            search=None if not args.search_trials else {"trials": args.search_trials})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        raise InputError(f"{where}: {first['msg']}") from None


def cmd_train(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm

    from quorum.backtest.report import code_version
    from quorum.learning.dataset import LeakageError
    from quorum.learning.promotion import LearningSettings
    from quorum.learning.train import train

    loaded, _ = load_candles(args)
    symbols = tuple(args.symbol or sorted({c.symbol for c in loaded.candles}))
    timeframes = sorted({c.timeframe for c in loaded.candles if c.symbol in symbols})
    if len(timeframes) > 1 and args.timeframe is None:
        raise InputError(f"the candles have several timeframes ({', '.join(timeframes)}): choose one with --timeframe")
    if args.timeframe is None:
        args.timeframe = timeframes[0]
    request = _request(args, symbols)
    settings = LearningSettings(**({"auto_promote": True} if args.promote else {}))
    registry = _registry(args)
    with tqdm(total=100, unit="%", file=err, disable=None, mininterval=0.5, dynamic_ncols=True,
              bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]") as bar:
        def progress(p: Any) -> None:
            bar.set_description(p.stage if p.fold is None else f"{p.stage} {p.fold}/{p.folds}", refresh=False)
            bar.update(p.percent - bar.n)

        try:
            result = train(request, loaded.candles, registry, code_version=code_version(), settings=settings,
                           progress=progress)
        except LeakageError as exc:
            raise InputError(f"the dataset failed its leakage check: {exc}") from None
        except ValueError as exc:
            raise InputError(" ".join(str(exc).split())) from None
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=1, sort_keys=True, default=str), file=out)
        return 0
    m, champ = summary["oos"], summary["champion_oos"]
    print(f"{summary['model']} version {summary['version']} (run {summary['run_id']}), aliases: "
          f"{', '.join(summary['aliases'])}", file=out)
    print(f"dataset {summary['dataset_hash'][:16]}: {summary['rows']:,} rows x {summary['features']} features, "
          f"{summary['folds']} folds", file=out)
    if m["mse"] is None:
        print(f"out of sample: {m['rows']:,} rows; a position policy predicts no return (judged by its strategy "
              f"below)", file=out)
    else:
        print(f"out of sample: {m['rows']:,} rows, MSE {m['mse']:.4g} vs naive {m['naive_mse']:.4g} "
              f"({m['mse_vs_naive']:.4f}x), direction {m['direction_accuracy']:.2%} vs always-up "
              f"{m['always_up_accuracy']:.2%}, Brier {m['brier']:.4f}", file=out)
    if champ and champ["mse"] is not None:
        print(f"champion, same folds: MSE {champ['mse']:.4g}, direction {champ['direction_accuracy']:.2%}", file=out)
    for asset, s in summary["strategy"].items():
        bench = s.get("buy_and_hold") or {}
        print(f"model-driven council {asset}: return {s['total_return']:+.2%}, Sharpe {_num(s['sharpe'])}, "
              f"max drawdown {s['max_drawdown']:.2%}, {s['round_trips']} round trips; buy-and-hold "
              f"{bench.get('total_return', 0):+.2%}, Sharpe {_num(bench.get('sharpe'))}, max drawdown "
              f"{bench.get('max_drawdown', 0):.2%}", file=out)
    if summary["strategy_skipped"]:
        print(f"no strategy backtest: {summary['strategy_skipped']}", file=out)
    if summary["search"]:
        found = summary["search"]
        print(f"search: {found['trials']} trials on the rows before {found['until']}, best {found['value']:.4g}: "
              + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in sorted(found["params"].items())), file=out)
    for check in summary["verdict"]["checks"]:
        print(f"  {'pass' if check['passed'] else 'FAIL'} {check['name']}: {check['detail']}", file=out)
    print("promoted to champion" if summary["promoted"] else
          "stays challenger" + ("" if summary["verdict"]["promote"] else
                                f" (failed: {', '.join(summary['verdict']['failed'])})"), file=out)
    return 0


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def cmd_evaluate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from quorum.learning.evaluate import evaluate
    from quorum.learning.registry import UnknownModelError

    registry = _registry(args)
    try:
        model, info = registry.load(args.model)
    except UnknownModelError as exc:
        raise InputError(str(exc)) from None
    loaded, _ = load_candles(args)
    try:
        found = evaluate(model, info, loaded.candles, symbols=tuple(args.symbol or ()), backtest=not args.no_backtest)
    except ValueError as exc:
        raise InputError(" ".join(str(exc).split())) from None
    print(json.dumps(found, sort_keys=True, default=str), file=out)
    return 0


def cmd_compare(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from pydantic import ValidationError

    from quorum.learning.compare import FAMILIES, CompareRequest, compare
    from quorum.learning.dataset import DatasetSpec
    from quorum.learning.train import FoldPlan, frames_of

    loaded, _ = load_candles(args)
    symbols = tuple(args.symbol or sorted({c.symbol for c in loaded.candles}))
    timeframes = sorted({c.timeframe for c in loaded.candles if c.symbol in symbols})
    if len(timeframes) != 1:
        raise InputError(f"the candles have timeframes {', '.join(timeframes) or 'none'}: choose one with "
                         "--timeframe")
    try:
        request = CompareRequest(
            dataset=DatasetSpec(symbols=symbols, timeframe=timeframes[0], symbol_feature=True),
            folds=FoldPlan(train_days=args.train_days, test_days=args.test_days, embargo_bars=args.embargo_bars),
            families=tuple(args.family) or FAMILIES, task=args.task, fee_rate=args.fee,
            sequence={**CompareRequest().sequence, "window": args.window, "max_epochs": args.epochs})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"{'.'.join(str(p) for p in first['loc']) or 'request'}: {first['msg']}") from None
    try:
        found = compare(request, frames_of([c for c in loaded.candles if c.symbol in symbols]),
                        progress=lambda family, n, total: print(f"[{n}/{total}] {family} done", file=err))
    except ValueError as exc:
        raise InputError(" ".join(str(exc).split())) from None
    written = found.write(args.out)
    print(found.table(), file=out)
    print("written: " + ", ".join(str(p) for p in written), file=out)
    return 0


def cmd_bootstrap(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from quorum.backtest.report import code_version
    from quorum.cli import default_data_dir
    from quorum.learning.bootstrap import ensure_champion

    found = ensure_champion(_registry(args), args.data_dir or default_data_dir(), code_version=code_version(),
                            say=lambda line: print(line, file=out))
    if found is None:
        return 1
    print(f"champion: {found.name}:{found.version} (run {found.run_id})", file=out)
    return 0
