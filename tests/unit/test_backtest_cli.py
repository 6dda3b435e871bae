"""``quorum backtest`` over the shared data files: the report's files, the same run giving the same results, and
bad input named in one line with exit status 2."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest
from quorum.backtest import cli as backtest_cli
from quorum.cli import build_parser

from tests.support import data_file

RANGE = ["--from", "2021-04-05", "--to", "2021-04-19T00:00"]  # 337 hourly candles, with RSI trades in them


def btc() -> str:
    return str(data_file("ohlcv", "binance_BTCUSDT_1h.csv"))


def backtest(*args: str) -> int:
    """``quorum backtest ARGS`` as ``main`` runs it, without looking for a running native stack's URLs."""
    parsed = build_parser().parse_args(["backtest", *args])
    return int(parsed.func(parsed))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    for out in (a, b):
        assert backtest("--data", btc(), *RANGE, "--config", "solo-rsi", "--out", str(out)) == 0
    return a, b


def test_a_backtest_of_a_data_file_writes_the_report_metrics_equity_and_trades(runs: tuple[Path, Path]) -> None:
    out = runs[0]
    doc = json.loads((out / "metrics.json").read_text())
    m = doc["metrics"]
    assert (m["bars"], m["timeframe"], m["symbols"]) == (337, "1h", ["BTC/USDT"])
    assert m["fills"] > 0 and m["buy_and_hold"]["fills"] == 2
    assert doc["config"]["name"] == "solo-rsi" and len(doc["config"]["hash"]) == 16
    assert doc["data"]["start"] == "2021-04-05T00:00:00+00:00" and doc["code_version"]
    with (out / "equity.csv").open() as f:
        equity = list(csv.DictReader(f))
    with (out / "trades.csv").open() as f:
        trades = list(csv.DictReader(f))
    assert len(equity) == 337 and Decimal(equity[-1]["equity"]) == Decimal(m["final_equity"])
    assert {"time", "equity", "cash", "position_value", "drawdown"} <= set(equity[0])
    assert len(trades) == m["fills"]
    assert {"time", "symbol", "side", "quantity", "price", "fee", "order_id", "purpose", "slippage"} <= set(trades[0])
    page = (out / "report.html").read_text()
    assert "<script src=" not in page and "plotly.js" in page.lower()  # one file: plotly's JS inline
    assert doc["config"]["hash"] in page and "buy &amp; hold" in page


def test_the_same_run_twice_gives_the_same_metrics_and_trades(runs: tuple[Path, Path]) -> None:
    a, b = runs
    for name in ("metrics.json", "trades.csv", "equity.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_the_summary_table_puts_the_metrics_beside_buy_and_hold(capsys: pytest.CaptureFixture[str]) -> None:
    assert backtest("--data", btc(), "--from", "2021-04-05", "--to", "2021-04-06", "--fee", "0") == 0
    out = capsys.readouterr().out
    assert "buy & hold" in out and "Sharpe (annualised)" in out and "fees paid" in out


def test_several_files_are_several_symbols_merged_in_time_order(tmp_path: Path) -> None:
    eth = str(data_file("ohlcv", "binance_ETHUSDT_1h.csv"))
    assert backtest("--data", btc(), "--data", eth, "--from", "2021-04-05", "--to", "2021-04-06",
                    "--out", str(tmp_path)) == 0
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["metrics"]["symbols"] == ["BTC/USDT", "ETH/USDT"]
    assert (doc["metrics"]["bars"], doc["data"]["candles"]) == (25, 50)  # one point per bar close, not per candle
    assert doc["metrics"]["buy_and_hold"]["fills"] == 4


def test_named_configurations_and_fee_overrides_build_runner_configurations() -> None:
    assert {"default", "solo-rsi"} <= set(backtest_cli.named_configs())
    for name in backtest_cli.named_configs():
        backtest_cli.runner_config(name, backtest_cli.load_config(name)[1])
    name, overrides = backtest_cli.load_config("solo-rsi")
    config = backtest_cli.runner_config(name, backtest_cli.with_fee(overrides, "0.002,0.0005"))
    fees, control = config.venue.engine.fees, config.council.default_control
    assert (fees.taker, fees.maker, control.solo_strategy) == (Decimal("0.002"), Decimal("0.0005"), "rsi")


def test_a_setting_read_from_a_shared_variable_is_taken_by_its_field_name(tmp_path: Path) -> None:
    path = tmp_path / "low.json"
    path.write_text(json.dumps({"risk": {"risk_profile": "LOW", "paper_starting_cash": "500"}}))
    config = backtest_cli.runner_config(*backtest_cli.load_config(str(path)))
    assert config.starting_cash == Decimal(500) and config.described["risk"]["risk_profile"] == "LOW"


@pytest.mark.parametrize(("args", "named"), [
    (["--data", "/no/such/binance_BTCUSDT_1h.csv"], "--data /no/such/binance_BTCUSDT_1h.csv: no such file"),
    (["--config", "nonesuch"], "unknown config 'nonesuch'"),
    (["--config", "{bad}.json"], "no such file"),
    (["--config", "BAD_JSON"], "not valid JSON"),
    (["--config", "UNKNOWN_SECTION"], "unknown section 'counsel'"),
    (["--config", "UNKNOWN_SETTING"], "council: 'mood' is not a setting (did you mean 'mode'?)"),
    (["--config", "BAD_VALUE"], "QUORUM_COUNCIL_THRESHOLD"),
    (["--from", "2030-01-01"], "no candles in"),
    (["--from", "yesterday"], "--from 'yesterday': not an ISO date"),
    (["--from", "2021-05-01", "--to", "2021-04-01"], "is after --to"),
    (["--fee", "abc"], "--fee 'abc'"),
    (["--fee", "2"], "--fee '2'"),
    (["--symbol", "ETH/USDT"], "no candles in"),
    (["--database-url", "postgresql://localhost/x"], "give one source of candles"),
])
def test_bad_input_is_named_in_one_line_and_exits_2(args: list[str], named: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    files = {"BAD_JSON": "{\"council\": ", "UNKNOWN_SECTION": json.dumps({"counsel": {}}),
             "UNKNOWN_SETTING": json.dumps({"council": {"mood": "SOLO"}}),
             "BAD_VALUE": json.dumps({"council": {"threshold": 7}})}
    for n, arg in enumerate(args):
        if arg in files:
            (tmp_path / f"{arg}.json").write_text(files[arg])
            args[n] = str(tmp_path / f"{arg}.json")
        elif arg == "{bad}.json":
            args[n] = str(tmp_path / "missing.json")
    data = [] if "--data" in args else ["--data", btc()]
    assert backtest(*data, *args) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and err.startswith("quorum backtest: ") and "\n" not in err


def test_a_file_whose_name_does_not_say_the_series_or_mixed_timeframes_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    odd = tmp_path / "prices.csv"
    odd.write_text("ts,open,high,low,close,volume\n")
    assert backtest("--data", str(odd)) == 2
    assert "the name does not say the series" in capsys.readouterr().err
    minutes = tmp_path / "binance_BTCUSDT_1m.csv"
    minutes.write_text("ts,open,high,low,close,volume\n1617580800000,1,1,1,1,1\n")  # 2021-04-05 00:00
    assert backtest("--data", btc(), "--data", str(minutes), "--from", "2021-04-05", "--to", "2021-04-06") == 2
    assert "several timeframes (1h, 1m)" in capsys.readouterr().err
