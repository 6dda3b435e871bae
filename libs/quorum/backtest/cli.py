"""``quorum backtest``: the services' decisions over history, in process, with metrics beside buy-and-hold.

Candles come from files in the shared data format (``--data``, repeatable: several symbols merged in time order)
or from the ``candles`` table (``--database-url``, else DATABASE_URL or the running native stack). The
configuration is the services' own settings (the ``QUORUM_<SERVICE>_*`` environment) with the overrides of a
named configuration or a JSON file: ``{"council": {...}, "risk": {...}, "matching": {...}, "features": {...}}``.

Prints the metrics beside buy-and-hold; ``--out DIR`` also writes report.html, metrics.json, equity.csv and
trades.csv. Bad input exits 2 with one line saying what was wrong.

  quorum backtest --data ../shared/data/ohlcv/binance_BTCUSDT_1h.csv --config solo-rsi --out out/rsi
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from difflib import get_close_matches
from pathlib import Path
from typing import Any, TextIO

from quorum.clock import LiveClock

CONFIGS = Path(__file__).with_name("configs")


class InputError(ValueError):
    """What the operator gave cannot be used; the message names it, in one line."""


def add_market_options(p: argparse.ArgumentParser, *, database_help: str) -> None:
    """Which candles a command runs over: files, or the stored ones, narrowed by symbol, timeframe and range."""
    p.add_argument("--data", action="append", type=Path, metavar="FILE",
                   help="OHLCV file (CSV or Parquet, named like binance_BTCUSDT_1h.csv); repeatable")
    p.add_argument("--database-url", default=None, help=database_help)
    p.add_argument("--symbol", action="append", help="only this symbol, e.g. BTC/USDT (repeatable)")
    p.add_argument("--timeframe", default=None, help="only this timeframe, e.g. 1h")
    p.add_argument("--from", dest="start", default=None, help="first candle open time, ISO (naive: UTC)")
    p.add_argument("--to", dest="end", default=None, help="last candle open time, ISO (naive: UTC; inclusive)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("backtest", help="run the services' decisions over history and report the metrics "
                                               "beside buy-and-hold", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_market_options(p, database_help="stored candles instead of files (default without --data: DATABASE_URL or "
                                        "the running native stack's)")
    p.add_argument("--config", default="default",
                   help=f"a named configuration ({', '.join(named_configs())}) or a JSON file of overrides")
    p.add_argument("--fee", default=None, metavar="RATE[,MAKER]",
                   help="venue fee as a fraction of the notional for taker and maker (or TAKER,MAKER), e.g. 0.001")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write report.html, metrics.json, equity.csv, trades.csv")
    p.set_defaults(func=cmd_backtest)
    return p


# --- the configuration -----------------------------------------------------------------------------------------

def named_configs() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.json"))


def sections() -> dict[str, Any]:
    """The settings class of each service a configuration may override (as ``RunnerConfig.from_env`` reads)."""
    from quorum.council.settings import CouncilConfig
    from quorum.indicators.decide import FeaturesConfig
    from quorum.matching.settings import VenueConfig
    from quorum.risk.settings import RiskSettingsBase

    return {"features": FeaturesConfig, "council": CouncilConfig, "risk": RiskSettingsBase, "matching": VenueConfig}


def _init_name(cls: Any, key: str) -> str:
    """The name a settings class takes ``key`` by: a field read from a shared variable (``risk_profile`` ->
    ``QUORUM_RISK_PROFILE``) only by that variable's name; an unknown key is an error, not silently ignored."""
    from pydantic import AliasChoices

    aliases: dict[str, str] = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
            aliases[name] = alias.choices[0]
        elif isinstance(alias, str):
            aliases[name] = alias
    if key in aliases:
        return aliases[key]
    if key in cls.model_fields or key in aliases.values():
        return key
    close = get_close_matches(key, list(cls.model_fields), n=1)
    raise InputError(f"{key!r} is not a setting" + (f" (did you mean {close[0]!r}?)" if close else ""))


def overrides_of(doc: Any, where: str) -> dict[str, dict[str, Any]]:
    """``{"council": {...}, ...}`` (and an optional ``"description"``) -> ``RunnerConfig.from_env`` overrides."""
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a JSON object of services, e.g. {{\"council\": {{\"mode\": \"SOLO\"}}}}")
    known = sections()
    out: dict[str, dict[str, Any]] = {}
    for section, values in doc.items():
        if section == "description":
            continue
        if section not in known:
            raise InputError(f"{where}: unknown section {section!r}; expected {', '.join(known)}")
        if not isinstance(values, dict):
            raise InputError(f"{where}: {section} must be an object of settings")
        try:
            out[section] = {_init_name(known[section], k): v for k, v in values.items()}
        except InputError as exc:
            raise InputError(f"{where}: {section}: {exc}") from None
    return out


def load_config(spec: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """(the name to report, the overrides) of a named configuration or a JSON file."""
    path = CONFIGS / f"{spec}.json"
    if spec in named_configs():
        name = spec
    elif spec.endswith(".json") or os.sep in spec or Path(spec).exists():
        path, name = Path(spec), Path(spec).stem
        if not path.is_file():
            raise InputError(f"config file {path}: no such file")
    else:
        raise InputError(f"unknown config {spec!r}; named configs: {', '.join(named_configs())} (or a JSON file)")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"config {path}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise InputError(f"config {path}: unreadable: {exc.strerror}") from None
    return name, overrides_of(doc, f"config {path}")


def with_fee(overrides: dict[str, dict[str, Any]], fee: str | None) -> dict[str, dict[str, Any]]:
    if fee is None:
        return overrides
    try:
        rates = [Decimal(part) for part in fee.split(",")]
    except InvalidOperation:
        raise InputError(f"--fee {fee!r}: expected a fraction like 0.001, or TAKER,MAKER") from None
    if len(rates) not in (1, 2) or not all(0 <= r < 1 for r in rates):
        raise InputError(f"--fee {fee!r}: expected one or two fractions in [0, 1), e.g. 0.001 or 0.001,0.0005")
    taker, maker = rates[0], rates[-1]
    return {**overrides, "matching": {**overrides.get("matching", {}), "taker_fee": taker, "maker_fee": maker}}


def runner_config(name: str, overrides: dict[str, dict[str, Any]]) -> Any:
    from quorum.backtest.config import RunnerConfig

    try:
        return RunnerConfig.from_env(**overrides)
    except ValueError as exc:  # the settings' own validation (ConfigurationError names the variable)
        raise InputError(f"config {name}: " + "; ".join(str(exc).splitlines())) from None


# --- the candles -----------------------------------------------------------------------------------------------

def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{option} {value!r}: not an ISO date (e.g. 2023-01-01 or 2023-01-01T12:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_candles(args: argparse.Namespace) -> tuple[Any, tuple[str, ...]]:
    """The candles asked for and where they came from (for the report)."""
    from quorum.backtest.data import DataError, from_database, from_files

    start, end = _when(args.start, "--from"), _when(args.end, "--to")
    if start and end and start > end:
        raise InputError(f"--from {args.start} is after --to {args.end}")
    if args.data and args.database_url:
        raise InputError("--data and --database-url: give one source of candles, not both")
    symbols = tuple(args.symbol or ())
    asked = [f"{k} {v}" for k, v in (("--symbol", ",".join(symbols)), ("--timeframe", args.timeframe),
                                     ("--from", args.start), ("--to", args.end)) if v]
    if args.data:
        missing = [p for p in args.data if not p.is_file()]
        if missing:
            raise InputError(f"--data {missing[0]}: no such file")
        source = tuple(str(p) for p in args.data)
        try:
            loaded = from_files(args.data, now=LiveClock().now(), start=start, end=end, symbols=symbols,
                                timeframe=args.timeframe)
        except DataError as exc:
            raise InputError(str(exc)) from None
    else:
        from sqlalchemy.engine import make_url

        from quorum.runtime.settings import DEV_DATABASE_URL

        url = args.database_url or os.environ.get("DATABASE_URL", DEV_DATABASE_URL)
        source = (f"candles table of {make_url(url).render_as_string()}",)  # the password hidden
        try:
            loaded = asyncio.run(from_database(url, start=start, end=end, symbols=symbols, timeframe=args.timeframe))
        except Exception as exc:  # noqa: BLE001 - the database's many errors: say which, in one line
            raise InputError(f"cannot read the {source[0]}: {type(exc).__name__}: "
                             + " ".join(str(exc).split())[:300]) from None
    if not loaded.candles:
        raise InputError(f"no candles in {', '.join(source)}" + (f" for {', '.join(asked)}" if asked else ""))
    return loaded, source + ((" ".join(asked),) if asked else ())


# --- the command -----------------------------------------------------------------------------------------------

def cmd_backtest(args: argparse.Namespace) -> int:
    try:
        return run(args, sys.stdout, sys.stderr)
    except InputError as exc:
        print(f"quorum backtest: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from tqdm import tqdm

    from quorum.backtest.data import DataError, timeframe_of
    from quorum.backtest.engine import backtest
    from quorum.backtest.metrics import metrics_of
    from quorum.backtest.report import Provenance, summary_table, write_report

    name, overrides = load_config(args.config)
    config = runner_config(name, with_fee(overrides, args.fee))
    loaded, source = load_candles(args)
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {args.out}: cannot create: {exc.strerror or exc}") from None
    try:
        timeframe = timeframe_of(loaded.candles)
    except DataError as exc:
        raise InputError(str(exc)) from None
    total = len(loaded.candles)
    with tqdm(total=total, unit="candle", file=err, disable=None, mininterval=0.5, dynamic_ncols=True) as bar:
        def progress(n: int) -> None:
            if n % 256 == 0 or n == total:
                bar.update(n - bar.n)

        started = time.perf_counter()
        result = backtest(config, loaded.candles, progress=progress)
        elapsed = time.perf_counter() - started
    metrics = metrics_of(result, timeframe)
    print(f"{total:,} candles in {elapsed:.1f}s ({total / max(elapsed, 1e-9):,.0f} candles/s)", file=err)
    print(f"backtest {name} (config {config.config_hash}): {', '.join(metrics.symbols)} {timeframe}, "
          f"{metrics.start:%Y-%m-%d %H:%M} .. {metrics.end:%Y-%m-%d %H:%M} UTC, {metrics.bars:,} bars", file=out)
    print(summary_table(metrics), file=out)
    if args.out is not None:
        try:
            paths = write_report(args.out, result, metrics, Provenance(name, source, loaded.rejected))
        except OSError as exc:
            raise InputError(f"--out {args.out}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {', '.join(str(p) for p in paths.values())}", file=out)
    return 0
