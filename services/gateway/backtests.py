"""Backtests in the gateway process: a request is queued as a ``backtests`` row (with its audit row, one
transaction) and run in a worker process, so a long run takes neither the event loop nor the interpreter lock
from the API. The worker reports progress through a queue that the gateway drains into the row; the result
(metrics, report path, or the error) and, for a walk-forward, each asset's gate report are written when it ends.

A gateway that stops takes its running backtests with it: they are marked FAILED then, or at the next start if
the process died."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import queue as queues
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quorum.backtest.config import RunnerConfig
from quorum.backtest.gates import Criterion, GateReport, GateSettings, gate_each_asset
from quorum.clock import Clock
from quorum.db.tables import backtests, gate_reports
from quorum.events.market_data import CandleClosed
from quorum.runtime.handling import Context
from sqlalchemy import insert, update

from .commands import Commands
from .schemas import BacktestRequest
from .settings import GatewaySettings

if TYPE_CHECKING:
    from quorum.backtest.walkforward import WalkForwardResult

UNFINISHED = ("QUEUED", "RUNNING")
INTERRUPTED = "interrupted: the gateway stopped before the backtest finished"
MAX_FOLDS = 1000
PROGRESS_EVERY_S = 0.5


class UnknownConfiguration(LookupError):
    pass


@dataclass(frozen=True)
class Job:
    """What a worker process needs (pickled to it): the configuration, where the candles are, what to run."""

    id: uuid.UUID
    config: RunnerConfig
    config_name: str
    source: str
    path: str | None  # a data file the worker reads; None: ``candles`` are given
    candles: tuple[CandleClosed, ...]
    start: datetime | None
    end: datetime | None
    symbols: tuple[str, ...]
    timeframe: str | None
    now: datetime  # only candles closed by then
    walk_forward: dict[str, Any] | None
    criteria: tuple[Criterion, ...]
    report_dir: str | None


# --- in the worker process ----------------------------------------------------------------------------------
_reports: Any = None  # the queue back to the gateway, set by ``work`` when the worker starts


def work(job: Job, reports: Any) -> None:
    """The worker process: run the job and send the outcome back (the last message it sends)."""
    global _reports
    _reports = reports
    try:
        out = run(job)
    except BaseException as exc:  # noqa: BLE001 - whatever the run raised is the row's error
        _say("failed", job.id, f"{type(exc).__name__}: {exc}"[:4000])
    else:
        _say("done", job.id, out)


def _say(*message: Any) -> None:
    if _reports is not None:
        _reports.put(message)


def _throttled(job_id: uuid.UUID) -> Callable[[int, int], None]:
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            _say("progress", job_id, done, total)

    return progress


def run(job: Job) -> dict[str, Any]:
    """Load the candles, run the backtest (or the walk-forward and its gates) and return what the row stores."""
    from quorum.backtest.data import DataError, from_files, timeframe_of
    from quorum.backtest.engine import backtest
    from quorum.backtest.metrics import metrics_of
    from quorum.backtest.report import Provenance, write_report

    rejected = 0
    candles = list(job.candles)
    if job.path is not None:
        loaded = from_files([Path(job.path)], now=job.now, start=job.start, end=job.end, symbols=job.symbols,
                            timeframe=job.timeframe)
        candles, rejected = loaded.candles, loaded.rejected
    if not candles:
        raise DataError(f"no candles in {job.source} for the range and filters asked for")
    timeframe = timeframe_of(candles)
    data = {"range_start": candles[0].ts, "range_end": candles[-1].ts, "symbols": sorted({c.symbol for c in candles}),
            "timeframe": timeframe}
    _say("loaded", job.id, data)
    progress = _throttled(job.id)
    if job.walk_forward is not None:
        return {**_walk(job, candles, timeframe, progress), **data}
    result = backtest(job.config, candles, progress=lambda n: progress(n, len(candles)))
    metrics = metrics_of(result, timeframe)
    report_path = None
    if job.report_dir is not None:
        paths = write_report(Path(job.report_dir) / str(job.id), result, metrics,
                             Provenance(job.config_name, (job.source,), rejected))
        report_path = str(paths["report.html"])
    return {"metrics": metrics.as_dict(), "report_path": report_path, "bars": result.bars, "gates": [], **data}


def _walk(job: Job, candles: list[CandleClosed], timeframe: str,
          progress: Callable[[int, int], None]) -> dict[str, Any]:
    from quorum.backtest.data import DataError
    from quorum.backtest.walkforward import folds, span
    from quorum.times import timeframe_step

    assert job.walk_forward is not None
    w, bar = job.walk_forward, timeframe_step(timeframe)
    start, end = span(candles)
    step = None if w.get("step_bars") is None else w["step_bars"] * bar
    plan = []
    for fold in folds(start, end, train=w["train_bars"] * bar, test=w["test_bars"] * bar, step=step,
                      embargo=w.get("embargo_bars", 0) * bar, mode=w.get("mode", "rolling")):
        plan.append(fold)
        if len(plan) > MAX_FOLDS:
            raise DataError(f"more than {MAX_FOLDS} folds: use longer test windows or steps")
    if not plan:
        raise DataError(f"the data ({start} to {end}) is shorter than one fold (train + embargo + test bars)")
    warmup = None if w.get("warmup_bars") is None else w["warmup_bars"] * bar
    results: dict[str, WalkForwardResult] = {}
    reports = gate_each_asset(lambda _: job.config, candles, plan, job.criteria, config_hash=job.config.config_hash,
                              warmup=warmup, progress=progress, on_result=results.__setitem__)
    report_path = None
    if job.report_dir is not None:
        report_path = str(_walk_reports(job, Path(job.report_dir) / str(job.id), results, reports))
    return {"metrics": {asset: r.walk_forward["oos"]["metrics"] for asset, r in reports.items()},
            "report_path": report_path, "bars": sum(r.walk_forward["oos"]["bars"] for r in reports.values()),
            "gates": [r.row() for r in reports.values()]}


def _walk_reports(job: Job, out: Path, results: dict[str, WalkForwardResult],
                  reports: dict[str, GateReport]) -> Path:
    """Each asset's out-of-sample report (its folds' test windows chained) and an index with the verdicts."""
    from quorum.backtest.report import Provenance, write_report, write_walk_forward_index

    rows = []
    for asset, result in sorted(results.items()):
        folder = asset.replace("/", "-")
        write_report(out / folder, result.oos, result.metrics,
                     Provenance(f"{job.config_name}, walk-forward out of sample", (job.source,)))
        rows.append((asset, reports[asset].passed, f"{folder}/report.html", result.metrics))
    return write_walk_forward_index(out, f"Walk-forward of {job.config_name} ({job.config.config_hash})", rows)


# --- in the gateway -----------------------------------------------------------------------------------------
@functools.cache
def code_version() -> str:
    from quorum.backtest.report import code_version as describe

    return describe()


class WorkerFailed(RuntimeError):
    pass


class BacktestJobs:
    def __init__(self, settings: GatewaySettings, commands: Commands, clock: Clock) -> None:
        self.settings = settings
        self.commands = commands
        self.clock = clock
        self._context = multiprocessing.get_context("spawn")  # not forked: the gateway's threads stay its own
        self._reports: Any = None  # one queue from every worker, made with the first
        self._slots = asyncio.Semaphore(settings.backtest_workers)
        self._outcomes: dict[uuid.UUID, asyncio.Future[dict[str, Any]]] = {}
        self._workers: dict[uuid.UUID, Any] = {}
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}

    def configuration(self, name: str) -> RunnerConfig:
        """A named configuration of ``quorum backtest`` (``quorum/backtest/configs``: the services' settings with
        its overrides; ``default`` is theirs as they are). Only names: never a file the caller points at."""
        from quorum.backtest.cli import load_config, named_configs, runner_config

        if name not in named_configs():
            raise UnknownConfiguration(name)
        config: RunnerConfig = runner_config(*load_config(name))
        return config

    def stored_configuration(self, row: Any) -> RunnerConfig:
        """An optimizer configuration (a ``configurations`` row): the services' settings with its council
        overrides, for the risk profile it was optimized for, as the optimizer scored it."""
        from quorum.backtest.cli import InputError
        from quorum.backtest.optimize import runner_config
        from quorum.types import RiskProfile

        try:
            return runner_config(row.overrides, RiskProfile(row.profile))
        except ValueError as exc:  # the settings it was built on changed under it
            raise InputError(f"configuration {row.id}: " + "; ".join(str(exc).splitlines())) from None

    def data_path(self, name: str) -> Path | None:
        """A file of the data folder's ``ohlcv/`` (the name has no separators, so it cannot leave it)."""
        folder = (self.settings.data_dir / "ohlcv").resolve()
        path = (folder / name).resolve()
        return path if path.parent == folder and path.is_file() else None

    async def submit(self, actor: str, body: BacktestRequest, config: RunnerConfig, path: Path | None) -> Any:
        """Queue the row (audited) and start the run; returns the row."""
        job_id = uuid.uuid4()
        walk = body.walk_forward.model_dump() if body.walk_forward is not None else None
        source = body.data_file or "candles"
        version = await asyncio.to_thread(code_version)
        job = Job(job_id, config, body.configuration, source, None if path is None else str(path), (),
                  body.since, body.until, body.symbols, body.timeframe, self.clock.now(), walk,
                  GateSettings().criteria(), str(self.settings.backtest_report_dir.resolve()))

        async def queue_it(ctx: Context) -> Any:
            row = (await ctx.conn.execute(insert(backtests).values(
                id=job_id, created_at=ctx.clock.now(), created_by=actor, config_name=body.configuration,
                config_hash=config.config_hash, configuration=config.described, source=source,
                range_start=body.since, range_end=body.until, symbols=list(body.symbols), timeframe=body.timeframe,
                walk_forward=walk, code_version=version, status="QUEUED").returning(backtests))).one()
            await self.commands.audit(ctx, actor, "backtest", "REQUESTED",
                                      {"backtest_id": str(job_id), "reason": body.reason,
                                       "configuration": body.configuration, "config_hash": config.config_hash,
                                       "source": source, "walk_forward": walk}, job_id)
            return row

        row = await self.commands.transact(queue_it)
        self._running[job_id] = asyncio.create_task(self._run(job, actor))
        return row

    async def _stored(self, job: Job) -> Job:
        """The stored candles are read here (the worker has no database) and pickled to the worker."""
        from quorum.backtest.data import DataError, stored_candles

        async def read(ctx: Context) -> list[CandleClosed]:
            return await stored_candles(ctx.conn, start=job.start, end=job.end, symbols=job.symbols,
                                        timeframe=job.timeframe)

        found = await self.commands.transact(read)
        if not found:
            raise DataError("no stored candles for the range and filters asked for")
        return replace(job, candles=tuple(found))

    async def _run(self, job: Job, actor: str) -> None:
        try:
            if job.path is None:
                job = await self._stored(job)
            async with self._slots:  # at most ``backtest_workers`` at once; the others wait QUEUED
                out = await self._in_worker(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the run raised is the row's error
            message = str(exc) if isinstance(exc, WorkerFailed) else f"{type(exc).__name__}: {exc}"
            await self._finish(job.id, actor, "FAILED", {"error": message[:4000]})
        else:
            gates = out.pop("gates")
            await self._finish(job.id, actor, "DONE", {**out, "progress": 1.0}, gates)
        finally:
            self._running.pop(job.id, None)

    async def _in_worker(self, job: Job) -> dict[str, Any]:
        """A process of its own per run: a run that must stop (the gateway stops) is terminated, whatever it is
        doing. Its outcome comes back through the queue; a worker that dies without one is a failure too."""
        if self._reports is None:
            self._reports = self._context.Queue()
        outcome = self._outcomes[job.id] = asyncio.get_running_loop().create_future()
        worker = self._workers[job.id] = self._context.Process(target=work, args=(job, self._reports), daemon=True,
                                                               name=f"backtest-{job.id}")
        try:
            await asyncio.to_thread(worker.start)  # the job is written to the child as it starts: not on the loop
            while True:
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(outcome), timeout=1.0)
                if not worker.is_alive():
                    await self._drain()  # its last message may have arrived as it exited
                    if not outcome.done():
                        raise WorkerFailed(f"the worker process exited without a result (exit code "
                                           f"{worker.exitcode})")
        finally:
            self._outcomes.pop(job.id, None)
            self._workers.pop(job.id, None)
            if worker.is_alive():
                worker.terminate()
            await asyncio.to_thread(worker.join, 5)

    async def _finish(self, job_id: uuid.UUID, actor: str, status: str, values: dict[str, Any],
                      gates: Sequence[dict[str, Any]] = ()) -> None:
        async def write(ctx: Context) -> None:
            now = ctx.clock.now()
            await ctx.conn.execute(update(backtests).where(backtests.c.id == job_id).values(
                status=status, finished_at=now, **values))
            for g in gates:
                await ctx.conn.execute(insert(gate_reports).values(created_at=now, **{**g, "backtest_id": job_id}))
            details = {"backtest_id": str(job_id), **({"error": values["error"]} if "error" in values else {}),
                       "gates": {g["asset"]: g["passed"] for g in gates}}
            await self.commands.audit(ctx, actor, "backtest", status, details, uuid.uuid4())

        await self.commands.transact(write)

    async def watch(self, stopping: asyncio.Event) -> None:
        """Write the workers' progress into the rows, a few times a second."""
        while not stopping.is_set():
            await self._drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=0.25)

    async def _drain(self) -> None:
        """Read what the workers sent: outcomes settle their run, progress goes into the rows."""
        if self._reports is None:
            return
        progress: dict[uuid.UUID, tuple[int, int]] = {}
        loaded: dict[uuid.UUID, dict[str, Any]] = {}
        while True:
            try:
                kind, job_id, *rest = self._reports.get_nowait()
            except queues.Empty:
                break
            outcome = self._outcomes.get(job_id)
            if kind == "loaded":
                loaded[job_id] = rest[0]
            elif kind == "progress":
                progress[job_id] = rest[0], rest[1]
            elif outcome is not None and not outcome.done():
                if kind == "done":
                    outcome.set_result(rest[0])
                else:
                    outcome.set_exception(WorkerFailed(rest[0]))
        if not progress and not loaded:
            return

        async def write(ctx: Context) -> None:
            for job_id in loaded.keys() | progress.keys():
                values: dict[str, Any] = {"status": "RUNNING", **loaded.get(job_id, {})}
                if job_id in progress:
                    done, total = progress[job_id]
                    values |= {"bars": done, "progress": done / total if total else 0.0}
                await ctx.conn.execute(update(backtests).where(
                    backtests.c.id == job_id, backtests.c.status.in_(UNFINISHED)).values(**values))

        await self.commands.transact(write)

    async def recover(self) -> None:
        """Rows a previous gateway process left unfinished cannot finish now."""
        async def fail(ctx: Context) -> None:
            await ctx.conn.execute(update(backtests).where(backtests.c.status.in_(UNFINISHED)).values(
                status="FAILED", error=INTERRUPTED, finished_at=ctx.clock.now()))

        await self.commands.transact(fail)

    async def close(self) -> None:
        """Stop every run (its worker is terminated) and mark it FAILED."""
        for worker in list(self._workers.values()):
            with contextlib.suppress(Exception):
                worker.terminate()
        for task in list(self._running.values()):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.recover()
        if self._reports is not None:
            self._reports.close()
            self._reports = None
