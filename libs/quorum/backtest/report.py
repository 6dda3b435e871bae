"""A backtest's report in one folder: ``report.html`` (one self-contained file, plotly's JS inline: equity beside
buy-and-hold, drawdown, the fills on each symbol's closes, monthly returns, the metrics table, the configuration
and its hash, the data range, the code version), ``metrics.json``, ``equity.csv`` and ``trades.csv``.

Everything but the HTML's charts is deterministic: the same run writes the same ``metrics.json`` and CSVs."""

from __future__ import annotations

import csv
import html
import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from quorum.backtest.engine import BacktestResult, EquityPoint, Trade
from quorum.backtest.metrics import Metrics, bar_curve, benchmark_of, drawdown_series, monthly_returns
from quorum.types import Side

FILES = ("report.html", "metrics.json", "equity.csv", "trades.csv")


@dataclass(frozen=True)
class Provenance:
    """What the report says the run was: the configuration's name and where the candles came from."""

    config_name: str
    source: tuple[str, ...]  # files, or the database and its filters (no password)
    rejected: int = 0  # candles the validation skipped


# --- the metrics table (the HTML's and the command line's) -----------------------------------------------------

def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.2f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _quote(x: Decimal | None) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def _duration(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    return f"{days}d {rest // 3600}h" if days else f"{rest // 3600}h {rest % 3600 // 60}m"


def _drawdown_length(m: Metrics) -> str:
    if not m.max_drawdown:
        return "none"
    return (f"{m.max_drawdown_bars} bars ({_duration(m.max_drawdown_seconds)})"
            + ("" if m.max_drawdown_recovered else ", not recovered"))


def _average(amount: Decimal | None, ret: float | None) -> str:
    return "n/a" if amount is None else f"{_quote(amount)} ({_pct(ret)})"


ROWS: tuple[tuple[str, Callable[[Metrics], str]], ...] = (
    ("final equity", lambda m: _quote(m.final_equity)),
    ("total return", lambda m: _pct(m.total_return)),
    ("CAGR", lambda m: _pct(m.cagr)),
    ("Sharpe (annualised)", lambda m: _num(m.sharpe)),
    ("Sortino (annualised)", lambda m: _num(m.sortino)),
    ("max drawdown", lambda m: _pct(-m.max_drawdown)),
    ("max drawdown duration", _drawdown_length),
    ("Calmar", lambda m: _num(m.calmar)),
    ("round trips (still open)", lambda m: f"{m.round_trips} ({m.open_round_trips})"),
    ("fills", lambda m: str(m.fills)),
    ("win rate", lambda m: "n/a" if m.win_rate is None else f"{m.win_rate * 100:.1f}%"),
    ("average win", lambda m: _average(m.avg_win, m.avg_win_return)),
    ("average loss", lambda m: _average(m.avg_loss, m.avg_loss_return)),
    ("exposure", lambda m: f"{m.exposure * 100:.1f}%"),
    ("turnover", lambda m: f"{m.turnover:.2f}x"),
    ("fees paid", lambda m: _quote(m.fees)),
    ("slippage paid", lambda m: _quote(m.slippage)),
)


def summary_rows(m: Metrics) -> list[tuple[str, str, str]]:
    """(what, the strategy's, buy-and-hold's) for every row of the table."""
    bench = m.buy_and_hold
    return [(label, show(m), show(bench) if bench is not None else "n/a") for label, show in ROWS]


def summary_table(m: Metrics) -> str:
    rows = [("", "strategy", "buy & hold"), *summary_rows(m)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows)


# --- the files -------------------------------------------------------------------------------------------------

def code_version() -> str:
    """``git describe`` of the checkout the code runs from, else the installed package's version."""
    from quorum.devstack import REPO_ROOT

    try:
        found = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10)
        if found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("quorum")
    except PackageNotFoundError:
        return "unknown"


def document(result: BacktestResult, metrics: Metrics, provenance: Provenance, version: str) -> dict[str, Any]:
    """``metrics.json``: the metrics and what they are of."""
    return {
        "metrics": metrics.as_dict(),
        "decisions": dict(sorted(result.decisions.items())),
        "config": {"name": provenance.config_name, "hash": result.config.config_hash,
                   "settings": result.config.described},
        "data": {"source": list(provenance.source), "symbols": list(metrics.symbols), "timeframe": metrics.timeframe,
                 "start": metrics.start.isoformat(), "end": metrics.end.isoformat(), "bars": metrics.bars,
                 "candles": result.bars, "rejected": provenance.rejected},
        "code_version": version,
    }


def _text(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def write_equity(path: Path, curve: Sequence[EquityPoint], benchmark: Sequence[EquityPoint],
                 initial: Decimal) -> None:
    drawdown = _drawdowns(curve, initial)
    held = {p.ts: p.equity for p in benchmark}
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["time", "equity", "cash", "position_value", "drawdown", "buy_and_hold_equity"])
        for p, dd in zip(curve, drawdown, strict=True):
            out.writerow([p.ts.isoformat(), _text(p.equity), _text(p.cash), _text(p.position_value),
                          f"{dd:.10f}", _text(held.get(p.ts))])


def write_trades(path: Path, trades: Sequence[Trade]) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["time", "symbol", "side", "quantity", "price", "fee", "fee_currency", "order_id", "purpose",
                      "reference_price", "slippage"])
        for t in trades:
            out.writerow([t.ts.isoformat(), t.symbol, t.side.value, _text(t.quantity), _text(t.price), _text(t.fee),
                          t.fee_currency, t.order_id, t.purpose, _text(t.reference_price), _text(t.slippage)])


def _drawdowns(curve: Sequence[EquityPoint], initial: Decimal) -> np.ndarray:
    """Per bar close, measured from the peak since the start (the starting capital counts as one)."""
    values = np.array([float(initial), *(float(p.equity) for p in curve)])
    with np.errstate(divide="ignore", invalid="ignore"):
        return drawdown_series(values)[1:]


def write_report(out: Path, result: BacktestResult, metrics: Metrics, provenance: Provenance) -> dict[str, Path]:
    """Write the four files into ``out`` (created); returns their paths by name."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in FILES}
    curve = bar_curve(result.equity)
    bench, _ = benchmark_of(result)
    initial = result.config.starting_cash
    version = code_version()
    doc = document(result, metrics, provenance, version)
    paths["metrics.json"].write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    write_equity(paths["equity.csv"], curve, bench, initial)
    write_trades(paths["trades.csv"], result.trades)
    paths["report.html"].write_text(render_html(result, metrics, provenance, doc, curve, bench), encoding="utf-8")
    return paths


def write_walk_forward_index(out: Path, title: str, rows: Sequence[tuple[str, bool, str, Metrics]]) -> Path:
    """``index.html`` of a walk-forward over several assets: per asset (name, gate passed, the relative path of
    its out-of-sample report, its metrics) the verdict, the headline figures and a link to its report."""
    out.mkdir(parents=True, exist_ok=True)
    head = "".join(f"<th>{h}</th>" for h in ("asset", "gates", "total return", "Sharpe", "max drawdown",
                                              "round trips", ""))
    body = "".join(
        f"<tr><td>{html.escape(asset)}</td><td>{'passed' if passed else 'failed'}</td><td>{_pct(m.total_return)}</td>"
        f"<td>{_num(m.sharpe)}</td><td>{_pct(m.max_drawdown)}</td><td>{m.round_trips}</td>"
        f'<td><a href="{html.escape(link)}">report</a></td></tr>' for asset, passed, link, m in rows)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<table><tr>{head}</tr>{body}</table></body></html>\n")
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


# --- the HTML --------------------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
.meta td { text-align: left; }
"""


def _figures(result: BacktestResult, metrics: Metrics, curve: Sequence[EquityPoint],
             bench: Sequence[EquityPoint]) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go

    initial = result.config.starting_cash
    times = [p.ts for p in curve]
    bench_times = [p.ts for p in bench]
    layout = {"height": 420, "margin": {"l": 60, "r": 20, "t": 40, "b": 40}, "hovermode": "x unified"}
    equity = go.Figure(layout={**layout, "title": "Equity", "yaxis": {"title": result.config.quote_currency}})
    equity.add_scatter(x=times, y=[float(p.equity) for p in curve], name="strategy")
    equity.add_scatter(x=bench_times, y=[float(p.equity) for p in bench], name="buy & hold")
    drawdown = go.Figure(layout={**layout, "title": "Drawdown", "yaxis": {"tickformat": ".1%"}})
    drawdown.add_scatter(x=times, y=list(-_drawdowns(curve, initial)), name="strategy", fill="tozeroy")
    drawdown.add_scatter(x=bench_times, y=list(-_drawdowns(bench, initial)), name="buy & hold")
    figures: list[tuple[str, Any]] = [("equity", equity), ("drawdown", drawdown)]
    for symbol in metrics.symbols:
        closes = result.closes[symbol]
        fig = go.Figure(layout={**layout, "title": f"{symbol}: closes and fills", "hovermode": "closest"})
        fig.add_scatter(x=[ts for ts, _ in closes], y=[float(c) for _, c in closes], name="close",
                        line={"color": "#888", "width": 1})
        for side, marker in ((Side.BUY, {"symbol": "triangle-up", "color": "#1a7f37", "size": 9}),
                             (Side.SELL, {"symbol": "triangle-down", "color": "#cf222e", "size": 9})):
            fills = [t for t in result.trades if t.symbol == symbol and t.side is side]
            fig.add_scatter(x=[t.ts for t in fills], y=[float(t.price) for t in fills], mode="markers",
                            marker=marker, name=side.value.lower(),
                            text=[f"{t.purpose} {_text(t.quantity)} @ {_text(t.price)}<br>fee {_text(t.fee)} "
                                  f"{t.fee_currency}, slippage {t.slippage:.4f}" for t in fills],
                            hovertemplate="%{x}<br>%{text}<extra></extra>")
        figures.append((f"fills-{symbol.replace('/', '-')}", fig))
    monthly = go.Figure(layout={**layout, "title": "Monthly returns", "yaxis": {"tickformat": ".1%"},
                                "barmode": "group", "hovermode": "x"})
    for name, points in (("strategy", curve), ("buy & hold", bench)):
        months = monthly_returns(points, initial, metrics.timeframe)
        monthly.add_bar(x=[m for m, _ in months], y=[r for _, r in months], name=name)
    figures.append(("monthly", monthly))
    return figures


def _table(rows: Sequence[Sequence[str]], head: Sequence[str] | None = None, cls: str = "") -> str:
    out = [f'<table class="{cls}">']
    if head:
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join([*out, "</table>"])


def render_html(result: BacktestResult, metrics: Metrics, provenance: Provenance, doc: dict[str, Any],
                curve: Sequence[EquityPoint], bench: Sequence[EquityPoint]) -> str:
    charts = [fig.to_html(full_html=False, include_plotlyjs=(n == 0), div_id=name)
              for n, (name, fig) in enumerate(_figures(result, metrics, curve, bench))]
    data = doc["data"]
    meta = [("configuration", f"{provenance.config_name} (hash {doc['config']['hash']})"),
            ("symbols", ", ".join(metrics.symbols)), ("timeframe", metrics.timeframe),
            ("range", f"{data['start']} .. {data['end']}"),
            ("bars", f"{metrics.bars:,} ({result.bars:,} candles, {provenance.rejected:,} rejected)"),
            ("source", "; ".join(provenance.source)), ("code version", doc["code_version"]),
            ("decisions", ", ".join(f"{k} {v:,}" for k, v in doc["decisions"].items()) or "none")]
    title = f"Backtest {provenance.config_name}: {', '.join(metrics.symbols)} {metrics.timeframe}"
    body = [f"<h1>{html.escape(title)}</h1>", _table(meta, cls="meta"),
            "<h2>Metrics</h2>", _table(summary_rows(metrics), head=("", "strategy", "buy & hold")),
            "<p>Sharpe and Sortino: per-bar returns annualised over "
            f"{metrics.periods_per_year:g} bars a year, risk-free rate 0. Buy-and-hold: equal parts of the starting "
            "cash in each symbol, bought at its first close and sold at its last, paying the taker fee each way. "
            "A round trip: a symbol's position from zero back to zero, net of fees.</p>",
            *charts,
            "<h2>Configuration</h2>",
            f"<pre>{html.escape(json.dumps(doc['config'], indent=2, sort_keys=True, default=str))}</pre>"]
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
