"""``quorum backfill``: page an exchange's REST OHLCV history into ``candles`` (DATABASE_URL), resumably.

Prints a progress line with rows/s and ETA, a summary per series, and exits non-zero when anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from quorum.marketdata import exchanges

DEFAULT_TIMEFRAMES = "1m,5m,1h,1d"
DEFAULT_YEARS = 2


def make_exchange(exchange_id: str, *, base_url: str | None = None, config: dict[str, Any] | None = None) -> Any:
    """The REST exchange a backfill uses: prices kept as the exchange's text, REST moved to ``base_url``."""
    return exchanges.make_exchange(exchange_id, base_url=base_url, pro=False, numbers_as_text=True, config=config)


def _when(value: str) -> datetime:
    """ISO date or date-time; naive means UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {value!r} (e.g. 2023-01-01 or 2023-01-01T12:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("backfill", help="fetch OHLCV history from an exchange's REST API into the database",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exchange", default="binance", help="ccxt exchange id (default: binance)")
    p.add_argument("--symbols", default="",
                   help="comma-separated ccxt symbols, e.g. BTC/USDT,ETH/USDT (default: the universe resolved "
                        "against the exchange's markets; unlisted bases are reported)")
    p.add_argument("--universe", default="v1", help="universe version for the default symbols (default: v1)")
    p.add_argument("--timeframes", default=DEFAULT_TIMEFRAMES, help=f"default: {DEFAULT_TIMEFRAMES}")
    p.add_argument("--since", type=_when, default=None,
                   help=f"first open time, ISO (default: {DEFAULT_YEARS} years ago); a checkpoint beyond it wins")
    p.add_argument("--until", type=_when, default=None, help="last open time, ISO (default: last closed candle)")
    p.add_argument("--exchange-url", default=None,
                   help="base URL replacing the exchange's REST hosts (offline tests, a local fake or a mirror)")
    p.add_argument("--page-limit", type=int, default=1000, help="candles per request (Binance: at most 1000)")
    p.add_argument("--restart", action="store_true",
                   help="ignore checkpoints and re-fetch from --since (finds late corrections; inserts no duplicates)")
    p.add_argument("--repair-gaps", action="store_true",
                   help="afterwards, re-fetch missing candles and report those the exchange does not have")
    p.set_defaults(func=cmd_backfill)
    return p


class ProgressLine:
    """Rewrites one terminal line (or prints a line every few seconds when not a terminal, e.g. in logs)."""

    def __init__(self, out: TextIO, every_s: float = 2.0) -> None:
        self.out = out
        self.tty = out.isatty()
        self.every_s = every_s
        self._last = 0.0

    def __call__(self, p: Any) -> None:
        from quorum.marketdata.backfill import format_progress

        now = time.monotonic()
        if self.tty:
            self.out.write("\r\x1b[2K" + format_progress(p))
            self.out.flush()
        elif now - self._last >= self.every_s:
            self._last = now
            print(format_progress(p), file=self.out, flush=True)

    def end(self) -> None:
        if self.tty:
            self.out.write("\n")


def cmd_backfill(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run_backfill(args, sys.stdout))
    except KeyboardInterrupt:
        print("\ninterrupted; committed pages are kept and the next run resumes from the checkpoint")
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's boundary: say what failed, exit non-zero
        print(f"\nbackfill failed: {type(exc).__name__}: {exc}\n(committed pages are kept; re-run to resume)",
              file=sys.stderr)
        return 1


async def run_backfill(args: argparse.Namespace, out: TextIO) -> int:
    from quorum.clock import LiveClock
    from quorum.db.engine import create_engine
    from quorum.marketdata.backfill import backfill
    from quorum.marketdata.gaps import repair_gaps
    from quorum.marketdata.universe import get_universe, resolve
    from quorum.runtime.settings import DEV_DATABASE_URL

    clock = LiveClock()
    since = args.since or clock.now() - timedelta(days=365 * DEFAULT_YEARS)
    timeframes = [t.strip() for t in args.timeframes.split(",") if t.strip()]
    exchange = make_exchange(args.exchange, base_url=args.exchange_url)
    engine = create_engine(os.environ.get("DATABASE_URL", DEV_DATABASE_URL), pool_size=2)
    try:
        if args.symbols:
            symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
        else:
            resolution = resolve(get_universe(args.universe), args.exchange, await exchange.load_markets())
            symbols = list(resolution.listed)
            print(f"universe {resolution.universe} on {args.exchange}: {len(symbols)} listed"
                  + (f"; not listed: {', '.join(resolution.unlisted)}" if resolution.unlisted else ""), file=out)
        series = [(s, tf) for s in symbols for tf in timeframes]
        line = ProgressLine(out)
        started = time.perf_counter()
        report = await backfill(exchange, engine, exchange_id=args.exchange, series=series, since=since,
                                until=args.until, clock=clock, page_limit=args.page_limit, progress=line,
                                resume=not args.restart)
        line.end()
        elapsed = time.perf_counter() - started
        for s in report.series:
            rejected = sum(s.rejected.values())
            print(f"{s.label}: {s.fetched:,} fetched, {s.inserted:,} inserted, {rejected:,} rejected"
                  + (f" {dict(s.rejected)}" if rejected else "")
                  + f", {s.corrected} corrected, {s.pages} pages, {s.retries} retries"
                  + (f", resumed from {s.resumed_from:%Y-%m-%d %H:%M}" if s.resumed_from else "")
                  + (f"; ERROR {s.error}" if s.error else ""), file=out)
        print(f"total: {report.inserted:,} rows inserted in {elapsed:.1f}s "
              f"({report.fetched / max(elapsed, 1e-9):,.0f} rows/s fetched)", file=out)
        if args.repair_gaps:
            repair = await repair_gaps(exchange, engine, exchange_id=args.exchange,
                                       series=[(s.symbol, s.timeframe) for s in report.series if s.error is None],
                                       start=since, end=args.until, clock=clock, page_limit=args.page_limit)
            for r in repair.series:
                print(f"{r.exchange} {r.symbol} {r.timeframe}: {len(r.gaps)} gaps, {r.inserted} candles repaired, "
                      f"unrepairable (the exchange has none): "
                      + (", ".join(f"{a:%Y-%m-%d %H:%M}..{b:%Y-%m-%d %H:%M}" for a, b in r.unrepairable) or "none"),
                      file=out)
        return 0 if report.ok else 1
    finally:
        await exchange.close()
        await engine.dispose()

