"""Benchmark: the gateway's ``/status`` and ``/orders`` under a steady request rate, against ``/healthz`` (no
auth, no database, no bus) on the same server, so the figures say what the endpoints themselves cost.

Starts an embedded PostgreSQL and NATS (unless DATABASE_URL / NATS_URL are set), migrates and provisions them,
seeds some orders and heartbeats, runs the gateway as its own process (``python -m services.gateway``) and
sends an open-loop load: request i is sent at t0 + i/rate whatever the earlier ones are doing, and its latency
is measured from that scheduled moment (a slow server cannot hide its queueing). The gateway's CPU time per
request is printed too: on a shared machine latencies move with the load, that figure much less. Not a test.

    python bench/gateway_bench.py [--rate 200] [--seconds 10] [--orders 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-admin-token-0123456789"
ENDPOINTS = ("/healthz", "/status", "/orders")


@contextmanager
def infrastructure() -> Iterator[tuple[str, str]]:
    """(database url, nats url): as configured, or fresh embedded servers."""
    from quorum.infra.embedded import EmbeddedNats, EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="quorum-bench-gw-") as tmp:
        pg = nats = None
        try:
            db = os.environ.get("DATABASE_URL")
            if not db:
                pg = EmbeddedPostgres(Path(tmp) / "pg", durable=False).start()
                db = pg.url("quorum")  # created by start()
            url = os.environ.get("NATS_URL")
            if not url:
                nats = EmbeddedNats(Path(tmp) / "nats").start()
                url = nats.url
            yield db, url
        finally:
            for server in (nats, pg):
                if server is not None:
                    server.stop()


async def seed(db: str, nats_url: str, n_orders: int) -> None:
    """Orders for ``/orders`` to page through, heartbeats for ``/status`` to show."""
    from quorum.bus.connection import connect, jetstream
    from quorum.db.engine import create_engine
    from quorum.db.tables import orders
    from sqlalchemy.dialects.postgresql import insert

    now = datetime.now(UTC)
    rows = [{"client_order_id": f"Qbench{i:06d}", "decision_id": uuid.uuid4(), "mode": "PAPER", "venue": "paper",
             "exchange": "binance", "symbol": "BTC/USDT", "side": "BUY", "order_type": "MARKET",
             "quantity": Decimal("0.01"), "status": "FILLED", "filled_quantity": Decimal("0.01"),
             "fees": Decimal("0.01"), "quote_spent": Decimal("300"), "reference_ts": now, "updated_at": now}
            for i in range(n_orders)]
    engine = create_engine(db)
    async with engine.begin() as conn:
        if rows:
            await conn.execute(insert(orders), rows)
    await engine.dispose()
    nc = await connect(nats_url, name="bench")
    kv = await jetstream(nc).key_value("service_health")
    for name in ("risk", "oms", "council", "ledger", "matching", "market_data", "features", "inference"):
        await kv.put(name, json.dumps({"service": name, "state": "RUNNING", "ts": now.isoformat(),
                                       "details": {}}).encode())
    await nc.close()


async def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"the gateway exited with {proc.returncode}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the gateway did not become ready in 30 s")


async def load(http: httpx.AsyncClient, path: str, rate: float, seconds: float) -> tuple[list[float], dict[int, int]]:
    """Open loop: latencies (ms, from each request's scheduled send time) and a count per status code."""
    n = int(rate * seconds)
    latencies: list[float] = []
    codes: dict[int, int] = {}
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05

    async def one(i: int) -> None:
        due = t0 + i / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            code = (await http.get(path)).status_code
        except httpx.HTTPError:
            code = 0
        latencies.append((loop.time() - due) * 1000)
        codes[code] = codes.get(code, 0) + 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return latencies, codes


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU the process has used (Linux /proc; None elsewhere): a figure the load on the machine
    does not distort, unlike the latencies."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] if len(values) > 1 else values[0]


async def bench(base: str, rate: float, seconds: float, pid: int) -> None:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30,
                                 limits=limits) as http:
        for path in ENDPOINTS:  # warm up connections and caches
            await load(http, path, rate, 1.0)
        print(f"{'endpoint':<10} {'requests':>8} {'rate/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'cpu ms/req':>10}  status codes")
        for path in ENDPOINTS:
            started, cpu = time.perf_counter(), cpu_seconds(pid)
            lat, codes = await load(http, path, rate, seconds)
            achieved = len(lat) / (time.perf_counter() - started)
            after = cpu_seconds(pid)
            per = f"{(after - cpu) * 1000 / len(lat):.2f}" if cpu is not None and after is not None else "n/a"
            print(f"{path:<10} {len(lat):>8} {achieved:>7.0f} {pct(lat, 50):>8.1f} {pct(lat, 99):>8.1f} "
                  f"{max(lat):>8.1f} {per:>10}  {dict(sorted(codes.items()))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second, per endpoint")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long each endpoint is loaded")
    ap.add_argument("--orders", type=int, default=500, help="orders seeded for /orders")
    args = ap.parse_args()
    from quorum.devstack import migrate, provision_topology
    from quorum.infra.embedded import free_port

    with infrastructure() as (db, nats_url):
        migrate(db)
        asyncio.run(provision_topology(nats_url))
        asyncio.run(seed(db, nats_url, args.orders))
        port = free_port()
        env = {**os.environ, "DATABASE_URL": db, "NATS_URL": nats_url, "QUORUM_ENVIRONMENT": "test",
               "QUORUM_GATEWAY_HTTP_PORT": str(port), "QUORUM_GATEWAY_API_TOKEN": TOKEN,
               "QUORUM_GATEWAY_RATE_LIMIT_PER_S": "1000000", "QUORUM_GATEWAY_RATE_LIMIT_BURST": "1000000",
               "QUORUM_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=REPO, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(wait_ready(base, proc))
            print(f"gateway {base}: {args.rate:.0f} requests/s per endpoint for {args.seconds:.0f} s each, "
                  f"{args.orders} orders seeded; latency from each request's scheduled send time")
            asyncio.run(bench(base, args.rate, args.seconds, proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
