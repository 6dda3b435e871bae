"""Benchmark: the durable service pipeline against its floor, in one run. Not a test.

    .venv/bin/python bench/pipeline_throughput.py [--candles 2000] [--floor 2000] [--paced 300 --rate 10]

* floor: what one hop cannot go below, serially: one JetStream publish (acked), fetch and ack, plus one committed
  PostgreSQL transaction (an inbox row), per message; and the same with a fetched batch per transaction.
* runtime hop: one ``ConsumerLoop`` whose handler only emits, batched and not: what the runtime adds to the floor.
* pipeline: ``--candles`` real BTC/USDT hourly candles replayed with free pacing through every service (each its
  own process), with batched transactions (the default) and without (``QUORUM_<SERVICE>_BATCH_TRANSACTIONS=false``).
  Throughput is read from the servers' own clocks: the first candle stored on the MD stream to the last decision
  stored on the COUNCIL stream, and over the middle 80 % of the decisions (sustained).
* latency: ``--paced`` candles at ``--rate`` candles/s (low load), candle -> decision per candle, both stored
  timestamps of the same NATS server: percentiles.

Embedded durable servers (PostgreSQL fsync on, JetStream sync_interval always), as the stack runs natively.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from quorum.devstack import SERVICES, Stack  # noqa: E402
from quorum.events.features import FeaturesComputed  # noqa: E402
from quorum.events.market_data import CandleClosed  # noqa: E402
from quorum.events.predictions import PredictionMade  # noqa: E402
from quorum.events.signals import DecisionMade  # noqa: E402
from quorum.subjects import subject  # noqa: E402
from replay_publish import servers  # noqa: E402

from tests.support import run_sql  # noqa: E402

DATA = Path(os.environ.get("QUORUM_DATA_DIR", REPO.parent / "shared" / "data"))
PIPELINE = tuple(n for n in SERVICES if n not in ("market_data", "gateway"))
BATCH = 64  # the services' default consume batch


# --- the floor --------------------------------------------------------------------------------------------
async def floor(db: str, nats_url: str, n: int, batch: int) -> tuple[float, float]:
    """(messages/s one at a time, messages/s a fetched batch per transaction): publish+fetch+ack+commit."""
    import nats
    from nats.aio.msg import Msg
    from nats.js import api
    from quorum.db.engine import create_engine
    from sqlalchemy import text

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(api.StreamConfig(name="FLOOR", subjects=["floor.>"], storage=api.StorageType.FILE))
    await js.add_consumer("FLOOR", api.ConsumerConfig(durable_name="floor", ack_policy=api.AckPolicy.EXPLICIT,
                                                      max_ack_pending=10_000))
    sub = await js.pull_subscribe_bind(durable="floor", stream="FLOOR")
    engine = create_engine(db)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS floor_inbox (id uuid PRIMARY KEY)"))
    insert = text("INSERT INTO floor_inbox (id) VALUES (:id)")
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            await js.publish("floor.x", b"{}", headers={"Nats-Msg-Id": str(uuid.uuid4())})
            msg = (await sub.fetch(1, timeout=5))[0]
            async with engine.begin() as conn:
                await conn.execute(insert, {"id": uuid.uuid4()})
            await msg.ack()
        serial = n / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        done = 0
        while done < n:
            size = min(batch, n - done)
            await asyncio.gather(*(js.publish("floor.x", b"{}", headers={"Nats-Msg-Id": str(uuid.uuid4())})
                                   for _ in range(size)))
            msgs: list[Msg] = []
            while len(msgs) < size:
                msgs += await sub.fetch(size - len(msgs), timeout=5)
            async with engine.begin() as conn:
                await conn.execute(insert, [{"id": uuid.uuid4()} for _ in msgs])
            for m in msgs:
                await m.ack()
            done += size
        batched = n / (time.perf_counter() - t0)
    finally:
        await engine.dispose()
        await nc.close()
    return serial, batched


# --- one hop through the runtime -----------------------------------------------------------------------------
async def hop(db: str, nats_url: str, n: int, *, batched: bool) -> float:
    """Messages/s through one ``ConsumerLoop`` whose handler only emits one event per candle: the runtime's own
    cost per hop (decode, inbox claim, outbox, commit, ack, publish), without any service's logic."""
    import dataclasses
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from quorum.bus.connection import connect, jetstream
    from quorum.bus.provision import provision
    from quorum.bus.publisher import Publisher
    from quorum.clock import LiveClock
    from quorum.db.engine import create_engine
    from quorum.events.base import new_envelope
    from quorum.runtime.handling import ConsumerLoop, Context
    from quorum.topology import TOPOLOGY, Topology

    nc = await connect(nats_url, name="bench-hop")
    js = jetstream(nc)
    durable = f"bench-hop-{'batched' if batched else 'unbatched'}"
    spec = dataclasses.replace(TOPOLOGY.consumer("features-candles"), durable=durable, service="bench")
    await provision(js, Topology(streams=TOPOLOGY.streams, consumers=(spec,), kv=()))
    engine = create_engine(db)
    pub = Publisher(js, "bench")
    t0 = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=3650 if batched else 0)  # each run its own candles
    candles = [CandleClosed(exchange="binance", symbol="BTC/USDT", timeframe="1h", ts=t0 + timedelta(hours=i),
                            open=Decimal(1), high=Decimal(1), low=Decimal(1), close=Decimal(1), volume=Decimal(1))
               for i in range(n)]
    for i in range(0, n, 500):
        await asyncio.gather(*(pub.publish(new_envelope(c, clock=LiveClock(), source="bench", key=str(c.ts)))
                               for c in candles[i:i + 500]))

    async def handler(ctx: Context) -> None:
        c = ctx.message.payload
        ctx.emit(FeaturesComputed(exchange=c.exchange, symbol=c.symbol, timeframe=c.timeframe, ts=c.ts,
                                  feature_set="bench", close=c.close, values={"x": 1.0}))

    before = (await js.stream_info("FEATURES")).state.messages
    loop = ConsumerLoop(spec, handler, js=js, engine=engine, publisher=pub, clock=LiveClock(), service="bench",
                        batch_transactions=batched)
    await loop.bind()
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(loop.run(stop))
    try:
        while (await js.stream_info("FEATURES")).state.messages < before + n:
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        await task
        await loop.close()
        await engine.dispose()
        await nc.close()
    return n / seconds


# --- the pipeline -----------------------------------------------------------------------------------------
async def stored_times(nats_url: str, stream: str, subject: str) -> dict[str, float]:
    """(symbol, candle ts) -> when the server stored that event (seconds), read with an ephemeral consumer."""
    import nats

    nc = await nats.connect(nats_url)
    out: dict[str, float] = {}
    try:
        sub = await nc.jetstream().pull_subscribe(subject, stream=stream)
        while True:
            try:
                msgs = await sub.fetch(1000, timeout=1)
            except TimeoutError:
                break
            for m in msgs:
                payload = json.loads(m.data)["payload"]
                out.setdefault(f"{payload['symbol']} {payload['ts']}", m.metadata.timestamp.timestamp())
                await m.ack()
    finally:
        await nc.close()
    return out


@dataclass(frozen=True)
class Run:
    candles: int
    seconds: float  # first candle stored -> last decision stored
    sustained: float  # decisions/s over the middle 80 % of them
    commits: int  # every PostgreSQL commit of the run's database (the bench's polling included)
    latencies: list[float]  # candle -> decision, seconds, sorted
    hops: dict[str, list[float]]  # stage -> next stage, seconds, sorted


def run_pipeline(candles: int, *, batched: bool, rate: float = 0.0) -> Run:
    """One fresh stack: replay ``candles`` (free pacing, or ``rate`` candles/s), wait for every decision, and
    read the candle and decision times off the streams."""
    csv = DATA / "ohlcv" / "binance_BTCUSDT_1h.csv"
    env = {"QUORUM_ENVIRONMENT": "test", "QUORUM_LOG_LEVEL": "WARNING", "QUORUM_MARKET_DATA_REPLAY_FILE": str(csv),
           "QUORUM_MARKET_DATA_REPLAY_LIMIT": str(candles), "QUORUM_MARKET_DATA_REPLAY_PACING": "free",
           "QUORUM_MARKET_DATA_REPLAY_SPEED": str(rate * 3600)}
    env |= {f"QUORUM_{name.upper()}_BATCH_TRANSACTIONS": str(batched).lower() for name in SERVICES}
    base = Path(tempfile.mkdtemp(prefix="quorum-pipeline-"))
    stack = Stack.with_free_ports(base, log=io.StringIO(), durable=True, env=env)
    try:
        stack.start_infra()
        stack.prepare()
        stack.start_services(PIPELINE)
        stack.wait_ready(120)
        stack.start_service("market_data")
        assert stack.database_url and stack.nats_url
        deadline = time.monotonic() + 60 + candles / max(rate, 5.0)
        while int(run_sql(stack.database_url, "SELECT count(*) AS n FROM decisions")[0]["n"]) < candles:
            if time.monotonic() > deadline:
                raise TimeoutError("the decisions did not all arrive; the log:\n" + stack.log.getvalue()[-4000:])
            time.sleep(0.5)
        stages = {name: asyncio.run(stored_times(stack.nats_url, stream, subject(cls))) for name, stream, cls in STAGES}
        for name in list(stack.procs):  # a backend reports its commits when it ends
            stack.stop_service(name)
        time.sleep(1)
        commits = int(run_sql(stack.database_url, "SELECT xact_commit AS n FROM pg_stat_database "
                                                  "WHERE datname = current_database()")[0]["n"])
    finally:
        stack.stop()
        shutil.rmtree(base, ignore_errors=True)
    candle_at, decided_at = stages["candle"], stages["decision"]
    hops = {f"{a[0]}->{b[0]}": sorted(stages[b[0]][k] - stages[a[0]][k] for k in stages[b[0]])
            for a, b in zip(STAGES, STAGES[1:], strict=False)}
    decided = sorted(decided_at.values())
    lo, hi = decided[len(decided) // 10], decided[len(decided) * 9 // 10]
    return Run(len(decided), decided[-1] - min(candle_at.values()), (len(decided) * 8 // 10) / (hi - lo), commits,
               sorted(decided_at[k] - candle_at[k] for k in decided_at), hops)


STAGES = (("candle", "MD", CandleClosed), ("features", "FEATURES", FeaturesComputed),
          ("prediction", "PREDICTIONS", PredictionMade), ("decision", "COUNCIL", DecisionMade))


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candles", type=int, default=2000, help="free-pacing candles per pipeline run")
    p.add_argument("--floor", type=int, default=2000, help="messages in each floor measurement")
    p.add_argument("--paced", type=int, default=300, help="candles in each low-load latency run (0: skip)")
    p.add_argument("--rate", type=float, default=10.0, help="candles/s of the low-load latency runs")
    p.add_argument("--only", choices=("batched", "unbatched"), help="one pipeline variant only")
    args = p.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/pipeline_throughput.py", *sys.argv[1:]]))
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the start (other work skews every figure)")
    from quorum.devstack import migrate, provision_topology

    with tempfile.TemporaryDirectory(prefix="quorum-floor-") as tmp, servers(Path(tmp)) as (db, nats_url, notes):
        for note in notes:
            print(note)
        migrate(db)
        asyncio.run(provision_topology(nats_url))
        serial, batched = asyncio.run(floor(db, nats_url, args.floor, BATCH))
        hops = {b: asyncio.run(hop(db, nats_url, args.floor, batched=b)) for b in (True, False)}
    print(f"floor, one hop serially (publish+fetch+ack + one commit per message): {serial:,.0f} msgs/s "
          f"({1000 / serial:.2f} ms each)")
    print(f"floor, one hop with a fetched batch of {BATCH} per commit: {batched:,.0f} msgs/s")
    for b, rate in hops.items():
        print(f"runtime hop ({'batched' if b else 'unbatched'} transactions; a handler that only emits): "
              f"{rate:,.0f} msgs/s = {serial / rate:.1f}x the serial floor's time per message")

    variants = [v for v in (True, False) if args.only is None or args.only == ("batched" if v else "unbatched")]
    for use_batches in variants:
        name = "batched" if use_batches else "unbatched"
        if args.candles:
            r = run_pipeline(args.candles, batched=use_batches)
            print(f"pipeline, {name} transactions: {r.candles} candles -> decisions in {r.seconds:.2f} s = "
                  f"{r.candles / r.seconds:,.0f} candles/s overall (first candle stored to last decision), "
                  f"{r.sustained:,.0f} candles/s sustained (middle 80 %) = {serial / r.sustained:.1f}x below the "
                  f"serial floor; {r.commits / r.candles:.1f} PostgreSQL commits per candle")
        if args.paced:
            r = run_pipeline(args.paced, batched=use_batches, rate=args.rate)
            ms = [x * 1000 for x in r.latencies]
            hops = ", ".join(f"{hop} {percentile(v, 50) * 1000:.1f}/{percentile(v, 99) * 1000:.1f}"
                             for hop, v in r.hops.items())
            print(f"latency, {name}, {args.paced} candles at {args.rate:g}/s: candle -> decision p50 "
                  f"{percentile(ms, 50):.1f} ms, p90 {percentile(ms, 90):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
                  f"max {ms[-1]:.1f} ms (mean {statistics.fmean(ms):.1f} ms); per hop p50/p99 ms: {hops}")


if __name__ == "__main__":
    main()
