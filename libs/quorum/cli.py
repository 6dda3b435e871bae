"""``quorum``: the operator's command line (start the native stack, migrate, provision, backfill)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATA_DIR_ENV = "QUORUM_DATA_DIR"


def default_data_dir() -> Path:
    from quorum.devstack import REPO_ROOT

    return Path(os.environ.get(DATA_DIR_ENV, REPO_ROOT.parent / "shared" / "data"))


def chain_key() -> bytes:
    """The chain key the services write with (``QUORUM_CHAIN_KEY``); a wrong one makes every row look altered."""
    from quorum.runtime.settings import StackSecrets

    return StackSecrets().chain_key.get_secret_value().encode()


def cmd_migrate(args: argparse.Namespace) -> int:
    from quorum.devstack import migrate
    from quorum.runtime.settings import DEV_DATABASE_URL

    url = os.environ.get("DATABASE_URL", DEV_DATABASE_URL)
    migrate(url, args.revision, downgrade=args.downgrade)
    print(f"database {'downgraded' if args.downgrade else 'upgraded'} to {args.revision}")
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    from quorum.devstack import provision_topology

    for line in asyncio.run(provision_topology(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))):
        print(line)
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    """verify: re-walk the hash chain. rebuild: replay the journal and compare with (or, --apply, restore)
    the stored balances and positions. Exit 1 when anything differs."""
    from quorum import ledger_books
    from quorum.clock import LiveClock
    from quorum.db.engine import create_engine
    from quorum.runtime.settings import DEV_DATABASE_URL
    from quorum.types import TradingMode

    mode = TradingMode(args.mode)

    async def run() -> list[str]:
        engine = create_engine(os.environ.get("DATABASE_URL", DEV_DATABASE_URL))
        try:
            async with engine.begin() as conn:
                if args.action == "verify":
                    return await ledger_books.verify(conn, mode, key=chain_key())
                found = await ledger_books.differences(conn, mode)
                if found and args.apply:
                    await ledger_books.restore(conn, mode, LiveClock().now())
                return found
        finally:
            await engine.dispose()

    problems = asyncio.run(run())
    for p in problems:
        print(p)
    what = "hash chain" if args.action == "verify" else "projections vs journal"
    if not problems:
        print(f"{mode.value} ledger: {what} OK")
    elif args.action == "rebuild" and args.apply:
        print(f"{mode.value} ledger: {len(problems)} differences; projections restored from the journal")
        return 0
    return 1 if problems else 0


def cmd_audit(args: argparse.Namespace) -> int:
    """verify: re-walk the audit trail's hash chain. Exit 1 when a row was altered, removed or reordered."""
    from sqlalchemy import select

    from quorum import audit_chain
    from quorum.db.engine import create_engine
    from quorum.db.tables import audit_log
    from quorum.runtime.settings import DEV_DATABASE_URL

    async def run() -> tuple[int, list[str]]:
        engine = create_engine(os.environ.get("DATABASE_URL", DEV_DATABASE_URL))
        try:
            async with engine.connect() as conn:
                rows = [{**r._mapping, "event_id": str(r.event_id)}
                        for r in (await conn.execute(select(audit_log).order_by(audit_log.c.id))).all()]
            return len(rows), audit_chain.verify(rows, key=chain_key())
        finally:
            await engine.dispose()

    n, problems = asyncio.run(run())
    for p in problems:
        print(p)
    print(f"audit trail: {n} rows, " + ("hash chain OK" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


class RoutingWatch:
    """Says loudly, in the dev log, when order routing is (or becomes) disconnected — after an OMS restart
    trading stops until an operator authorizes it again, and that must not go unnoticed."""

    def __init__(self, gateway: str, token: str, say: Callable[[str], None], every_s: float = 5.0,
                 repeat_s: float = 60.0) -> None:
        self.gateway, self.token, self.say, self.every_s, self.repeat_s = gateway, token, say, every_s, repeat_s
        self._next = 0.0
        self._said: tuple[object, float] | None = None  # (disconnected since, when we last said it)

    def poll(self) -> None:
        import httpx

        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        try:
            status = httpx.get(f"{self.gateway}/status", headers={"Authorization": f"Bearer {self.token}"},
                               timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return  # the gateway restarts or is busy: the next poll tells
        if status.get("routing_connected", True):
            self._said = None
            return
        since = status.get("routing_disconnected_since")
        if self._said is None or self._said[0] != since or now - self._said[1] >= self.repeat_s:
            self._said = (since, now)
            bar = "!" * 100
            self.say(bar)
            self.say(f"!!! ORDER ROUTING {str(status.get('routing') or 'disconnected').upper()}")
            self.say(f"!!! nothing trades until an operator authorizes it: POST {self.gateway}/controls/routing/"
                     "authorize")
            self.say(bar)


def cmd_dev(args: argparse.Namespace) -> int:
    """Start everything natively; Ctrl-C stops every process cleanly."""
    from quorum.devstack import Stack, running_stack

    state = Path(args.state_dir).resolve()  # the servers change directory: a relative path would move
    other = running_stack((state,))
    if other is not None:
        print(f"quorum dev: another stack (pid {other[1]['pid']}) runs on {state}; stop it or use --state-dir",
              file=sys.stderr)
        return 2
    if args.fresh and state.exists():
        shutil.rmtree(state)
    replay = args.replay or default_data_dir() / "ohlcv" / "binance_BTCUSDT_1h.csv"
    env = {"QUORUM_ENVIRONMENT": "development"}
    if args.replay != Path("-"):
        if not Path(replay).is_file():
            print(f"replay file {replay} not found (set --replay or {DATA_DIR_ENV}); starting without replay")
        else:
            env.update({"QUORUM_MARKET_DATA_REPLAY_FILE": str(replay),
                        "QUORUM_MARKET_DATA_REPLAY_SPEED": str(args.speed)})
            if args.limit:
                env["QUORUM_MARKET_DATA_REPLAY_LIMIT"] = str(args.limit)
    try:
        stack = Stack(base_dir=state, nats_url=os.environ.get("NATS_URL"),
                      database_url=os.environ.get("DATABASE_URL"), env=env)
    except ValueError as exc:  # e.g. a QUORUM_<SERVICE>_HTTP_PORT that is not a port
        print(f"quorum dev: {exc}", file=sys.stderr)
        return 2
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start_infra()
        stack.prepare()
        stack.say("stack", f"recorded in {stack.record()}: `quorum ledger verify` and friends use this stack")
        names = tuple(n for n in (args.only.split(",") if args.only else ())) or None
        if names is None or "inference" in names:
            stack.ensure_model(default_data_dir())
        stack.start_services(names) if names else stack.start_services()
        stack.wait_ready(timeout=120, stopping=lambda: stopping)
        if stopping:
            return 0
        token = os.environ.get("QUORUM_GATEWAY_API_TOKEN", "dev-token-change-me")
        gw = f"http://127.0.0.1:{stack.ports['gateway']}"
        stack.say("stack", f"all services ready; gateway {gw} (token from QUORUM_GATEWAY_API_TOKEN)")
        if args.authorize_paper_routing:
            import httpx

            r = httpx.post(f"{gw}/controls/routing/authorize", headers={"Authorization": f"Bearer {token}"},
                           json={"reason": "quorum dev --authorize-paper-routing"}, timeout=30)
            stack.say("stack", f"paper routing authorization: {r.status_code} {r.text}")
        else:
            stack.say("stack", f"routing is DISCONNECTED; authorize with: curl -X POST -H 'Authorization: Bearer "
                               f"$TOKEN' {gw}/controls/routing/authorize")
        watch = RoutingWatch(gw, token, lambda line: stack.say("stack", line))
        while not stopping:
            for name, sp in list(stack.procs.items()):
                if sp.proc.poll() is not None:
                    stack.say("stack", f"{name} exited with {sp.proc.returncode}; restarting")
                    stack.start_service(name)
            watch.poll()
            time.sleep(0.5)
    finally:
        stack.say("stack", "stopping")
        stack.stop()
        stack.say("stack", "stopped")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-run the stored candles through the in-process runner and compare with what the services recorded.
    Exit 1 when anything differs."""
    from datetime import datetime

    from quorum.backtest.config import RunnerConfig
    from quorum.backtest.replay import Range, recorded, replay
    from quorum.db.engine import create_engine
    from quorum.runtime.settings import DEV_DATABASE_URL

    def when(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))

    rng = Range(when(args.start), when(args.end), tuple(args.symbol or ()), args.timeframe)

    async def load() -> tuple[Any, Any, Any]:
        engine = create_engine(args.database_url or os.environ.get("DATABASE_URL", DEV_DATABASE_URL))
        try:
            async with engine.connect() as conn:
                return await recorded(conn, rng)
        finally:
            await engine.dispose()

    stream, rows, configs = asyncio.run(load())
    if not stream:
        print("quorum replay: no stored candles in that range", file=sys.stderr)
        return 2
    if rng != Range():
        rows.pop("balances")  # the books hold the whole session: compared only when the whole session is replayed
    try:
        configs.predictors.update(_registered_predictors(configs.trained_models()))
    except LookupError as exc:
        print(f"quorum replay: {exc}", file=sys.stderr)
        return 2
    return 1 if replay(stream, rows, RunnerConfig.from_env(), configs=configs) else 0


def _registered_predictors(tags: set[str]) -> dict[str, Any]:
    """The trained models the recorded predictions name (``name@version``), from the MLflow registry
    (``QUORUM_MLFLOW_*``, else the local store in ``.quorum``)."""
    if not tags:
        return {}
    from quorum.learning.registry import UnknownModelError
    from quorum.learning.settings import RegistrySettings
    from quorum.learning.train import served

    settings = RegistrySettings()
    registry = settings.registry()
    found = {}
    for tag in sorted(tags):
        name, _, version = tag.partition("@")
        try:
            model, info = registry.load(f"{name}:{version}")
        except UnknownModelError as exc:
            raise LookupError(f"the recorded model {tag} is not in {settings.describe()}: {exc}") from None
        found[tag] = served(model, info)
    return found


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quorum", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("migrate", help="apply database migrations (DATABASE_URL)")
    m.add_argument("revision", nargs="?", default="head")
    m.add_argument("--downgrade", action="store_true")
    m.set_defaults(func=cmd_migrate)

    pr = sub.add_parser("provision", help="create/update JetStream streams, consumers and KV buckets (NATS_URL)")
    pr.set_defaults(func=cmd_provision)

    from quorum.marketdata import backfill_cli

    backfill_cli.add_parser(sub)

    from quorum.backtest import cli as backtest_cli

    backtest_cli.add_parser(sub)

    from quorum.backtest import optimize_cli

    optimize_cli.add_parser(sub)

    from quorum.learning import cli as learning_cli

    learning_cli.add_parsers(sub)

    lg = sub.add_parser("ledger", help="verify the journal's hash chain or rebuild the books from it (DATABASE_URL)")
    lg.add_argument("action", choices=["verify", "rebuild"])
    lg.add_argument("--mode", default="PAPER", choices=["PAPER", "LIVE"])
    lg.add_argument("--apply", action="store_true", help="rebuild: restore differing projections from the journal")
    lg.set_defaults(func=cmd_ledger)

    au = sub.add_parser("audit", help="verify the audit trail's hash chain (DATABASE_URL)")
    au.add_argument("action", choices=["verify"])
    au.set_defaults(func=cmd_audit)

    rp = sub.add_parser("replay", help="re-run the stored candles through the runner and report every decision, "
                                       "order, fill or balance that differs from what was recorded (DATABASE_URL)")
    rp.add_argument("--database-url", default=None, help="default: DATABASE_URL, else the running native stack's")
    rp.add_argument("--from", dest="start", default=None, help="first candle open time (ISO 8601)")
    rp.add_argument("--to", dest="end", default=None, help="last candle open time (ISO 8601)")
    rp.add_argument("--symbol", action="append", help="only this symbol (repeatable)")
    rp.add_argument("--timeframe", default=None)
    rp.set_defaults(func=cmd_replay)

    d = sub.add_parser("dev", help="run the whole system natively (embedded NATS + PostgreSQL unless URLs given)")
    d.add_argument("--replay", type=Path, default=None,
                   help="OHLCV file to replay (default: $QUORUM_DATA_DIR/ohlcv/binance_BTCUSDT_1h.csv; '-' for none)")
    d.add_argument("--speed", type=float, default=0.0, help="replay speed: 0 = as fast as possible, N = N x real time")
    d.add_argument("--limit", type=int, default=2000, help="replay at most this many candles (0 = all)")
    d.add_argument("--state-dir", default=".quorum", help="where embedded servers keep their data")
    d.add_argument("--fresh", action="store_true", help="delete the state directory first")
    d.add_argument("--only", default="", help="comma-separated subset of services to start")
    d.add_argument("--authorize-paper-routing", action="store_true",
                   help="as the operator, authorize paper order routing once everything is ready (audited)")
    d.set_defaults(func=cmd_dev)
    return p


def use_running_stack() -> None:
    """Commands run beside ``quorum dev`` talk to its servers: DATABASE_URL / NATS_URL that are not set come
    from the running native stack's record (``.quorum/stack.json``), not from the compose defaults."""
    from quorum.devstack import STACK_URLS, running_stack

    if all(os.environ.get(var) for var in STACK_URLS):
        return
    found = running_stack()
    if found is None:
        return
    path, doc = found
    taken = [var for var in STACK_URLS if not os.environ.get(var) and isinstance(doc.get(var), str)]
    for var in taken:
        os.environ[var] = str(doc[var])
    if taken:
        print(f"quorum: {' and '.join(taken)} of the native stack running as pid {doc['pid']} ({path})",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "dev":
        use_running_stack()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
