"""Adapter around ``quorum.learning.train``: takes training jobs from the ``trainer-jobs`` work queue (one durable
consumer every trainer shares, so each command goes to one of them), runs one at a time, and keeps the job's
``training_jobs`` row and the bus told.

Handling a ``StartTraining`` only claims the job: the row becomes RUNNING under this trainer and
``TrainingStarted`` is emitted, in the message's transaction. The job runs after that commit, in a thread of its
own (the event loop keeps renewing the claim and publishing progress); its end (the row with the result or the
error, and ``TrainingCompleted`` / ``TrainingFailed`` / ``TrainingCanceled``) commits in one transaction.

* Busy: a command that arrives while this trainer runs a job leaves the row QUEUED; whichever trainer is free
  next claims it (each looks for such rows when it finishes a job and every ``takeover_every_s``).
* Crash safety: the claim is a lease. A RUNNING row whose heartbeat is older than ``lease_s`` (its trainer died)
  is claimed by the next free trainer and run again from the start; a redelivered command for a job that is
  finished, or running under a live claim, does nothing. A trainer that stops lets its job go at once.
* Cancel: the gateway sets ``cancel_requested``; the job sees it at its next progress report and stops.
* Retraining: every ``retrain_every_h`` hours (one job per period, whichever trainer queues it first), and on
  inference's ``DriftDetected`` when ``retrain_on_drift`` (one job per report, none while one is unfinished),
  the configured ``default_request`` is queued through the gateway's path (row, audit as SYSTEM, command).

Promotion: the job registers its version as ``challenger`` with the gate's verdict. With automatic promotion on
(``QUORUM_LEARNING_AUTO_PROMOTE``) a version that passed every check is not made champion here: the trainer sends
inference ``PromoteModel`` (audited as SYSTEM), which loads and checks it before it moves the alias.

A job registered in MLflow just before its trainer died is registered again by the rerun: the registry gets a
second version, the row names the one that finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from quorum import telemetry
from quorum.backtest.data import stored_candles
from quorum.db.tables import training_jobs
from quorum.events.control import (
    ControlRefused,
    DriftDetected,
    PromoteModel,
    StartTraining,
    TrainingCanceled,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgressed,
    TrainingStarted,
)
from quorum.events.market_data import CandleClosed
from quorum.ids import stable_uuid
from quorum.learning import jobs
from quorum.learning.promotion import LearningSettings
from quorum.learning.settings import RegistrySettings
from quorum.learning.train import Progress, TrainingRequest, TrainingResult, train
from quorum.runtime.audit import active_profile, record_audit
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from sqlalchemy import func, select, update

from .settings import TrainerSettings

log = logging.getLogger("quorum.trainer")
INVALID_REQUEST = "INVALID_TRAINING_REQUEST"


class JobCanceled(Exception):
    """An operator asked the job to stop."""


class JobInterrupted(Exception):
    """The trainer is stopping (or lost its claim): the job is left for another trainer."""


@dataclass(eq=False)
class RunningJob:
    """The job this trainer runs: the thread reads the flags at each progress report, the loop reads ``latest``."""

    id: uuid.UUID
    request: TrainingRequest
    run: str  # the claim's start: with the job id, what keys this run's events
    cancel: threading.Event = field(default_factory=threading.Event)
    interrupt: threading.Event = field(default_factory=threading.Event)
    latest: Progress | None = None

    def on_progress(self, progress: Progress) -> None:
        """Called by ``train`` from the job's thread. The last report ("done") comes after the registration: the
        work is complete, so it is no longer stopped there."""
        if progress.stage != "done":
            if self.interrupt.is_set():
                raise JobInterrupted()
            if self.cancel.is_set():
                raise JobCanceled()
        self.latest = progress


def request_error(exc: ValidationError) -> str:
    """The first thing wrong with a request, naming the field (``dataset.start: ...``)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "request"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


class TrainerService(Service):
    NAME = "trainer"
    settings: TrainerSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trainer_id = self.settings.trainer_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.registry_settings = RegistrySettings()
        self.learning = LearningSettings()
        self._gate = self.learning.model_copy(update={"auto_promote": False})  # promotion goes through inference
        self._registry: Any = None  # built on the first job, in its thread (MLflow takes seconds to import)
        self._code_version: str | None = None
        self._job: RunningJob | None = None
        self._task: asyncio.Task[None] | None = None
        self._reserved: tuple[uuid.UUID, float] | None = None  # a claim on its way to its commit
        self._wake = asyncio.Event()
        self.completed = 0  # jobs this trainer finished (any outcome), for tests and the health details

    # --- wiring ------------------------------------------------------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        return {"trainer-jobs": self.on_command, "trainer-drift": self.on_drift}

    def tasks(self) -> list[Any]:
        found: list[Any] = [self._look_for_work]
        if self.settings.retrain_every_h > 0:
            found.append(self._retrain_on_schedule)
        return found

    def health_details(self) -> dict[str, Any]:
        job = self._job
        return {"trainer": self.trainer_id, "job": None if job is None else str(job.id),
                "registry": self.registry_settings.describe()}

    async def on_start(self) -> None:
        from quorum.backtest.report import code_version

        self._code_version = await asyncio.to_thread(code_version)

    async def on_stop(self) -> None:
        job, task = self._job, self._task
        if job is None or task is None:
            return
        job.interrupt.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.settings.stop_timeout_s)
        except TimeoutError:
            log.warning("job %s did not reach a progress report in %.0fs; letting it go", job.id,
                        self.settings.stop_timeout_s)
            with contextlib.suppress(Exception):
                await self.transact(lambda ctx: jobs.release(ctx.conn, job.id, trainer=self.trainer_id))

    # --- claiming ----------------------------------------------------------------------------------------------
    def _idle(self, job_id: uuid.UUID | None = None) -> bool:
        """No job running and none being claimed (a claim whose commit never came is forgotten after a lease)."""
        if self._job is not None or self.stopping.is_set():
            return False
        reserved = self._reserved
        return (reserved is None or reserved[0] == job_id
                or time.monotonic() - reserved[1] > self.settings.lease_s)

    async def on_command(self, ctx: Context) -> None:
        cmd: StartTraining = ctx.message.payload
        now = ctx.clock.now()
        await jobs.adopt(ctx.conn, cmd.job_id, cmd.request, actor=cmd.actor, now=now)
        try:
            request = TrainingRequest.model_validate(cmd.request)
        except ValidationError as exc:
            detail = request_error(exc)
            await ctx.conn.execute(update(training_jobs).where(
                training_jobs.c.id == cmd.job_id, training_jobs.c.status == "QUEUED").values(
                status="FAILED", error=f"invalid training request: {detail}", finished_at=now))
            ctx.emit(ControlRefused(command_type=StartTraining.event_type(), reason_code=INVALID_REQUEST,
                                    detail=detail))
            return
        if not self._idle(cmd.job_id):
            log.info("busy: job %s stays queued for the next free trainer", cmd.job_id)
            return
        await self._claim(ctx, cmd.job_id, request)

    async def _claim(self, ctx: Context, job_id: uuid.UUID, request: TrainingRequest | None) -> bool:
        """Claim the job (QUEUED, or RUNNING past its lease) and start it after the commit; False: not claimable."""
        before = await jobs.job(ctx.conn, job_id)
        self._reserved = (job_id, time.monotonic())
        row = await jobs.claim(ctx.conn, job_id, trainer=self.trainer_id, now=ctx.clock.now(),
                               lease_s=self.settings.lease_s)
        if row is None:
            self._reserved = None
            return False
        if request is None:
            try:
                request = TrainingRequest.model_validate(row.request)
            except ValidationError as exc:
                error = f"invalid training request: {request_error(exc)}"
                await jobs.finish(ctx.conn, job_id, trainer=self.trainer_id, now=ctx.clock.now(), status="FAILED",
                                  error=error)
                ctx.emit(TrainingFailed(job_id=job_id, error=error), key=f"invalid:{job_id}")
                self._reserved = None
                return False
        takeover = before is not None and before.status == "RUNNING"
        run = row.started_at.isoformat()
        if row.cancel_requested:  # canceled while its trainer was gone: nothing to run again
            await jobs.finish(ctx.conn, job_id, trainer=self.trainer_id, now=ctx.clock.now(), status="CANCELED")
            ctx.emit(TrainingCanceled(job_id=job_id, detail="canceled while no trainer ran it"),
                     key=f"end:{job_id}:{run}")
            self._reserved = None
            return False
        ctx.emit(TrainingStarted(actor=row.created_by, job_id=job_id, trainer=self.trainer_id, takeover=takeover,
                                 reason=f"taken over from {before.claimed_by}" if takeover else ""),
                 key=f"started:{job_id}:{run}")
        chosen = request
        ctx.after_commit.append(lambda: self._start(job_id, chosen, run))
        return True

    async def _look_for_work(self) -> None:
        """When idle: claim the oldest job no live trainer runs (queued behind a busy trainer, or left by a dead
        one), at start, after each job and every ``takeover_every_s``."""
        while not self.stopping.is_set():
            self._wake.clear()  # before looking: a job that ends meanwhile wakes the next look
            if self._idle():
                try:
                    await self.transact(self._claim_next)
                except Exception as exc:  # noqa: BLE001 - the next look tries again
                    self._reserved = None
                    log.warning("looking for training jobs failed: %s", exc)
            waits = [asyncio.ensure_future(e.wait()) for e in (self._wake, self.stopping)]
            await asyncio.wait(waits, timeout=self.settings.takeover_every_s, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()

    async def _claim_next(self, ctx: Context) -> None:
        while self._idle():
            found = await jobs.claimable(ctx.conn, now=ctx.clock.now(), lease_s=self.settings.lease_s)
            if found is None:
                return
            job_id, takeover = found
            if takeover:
                log.warning("taking over training job %s: its trainer's lease ran out", job_id)
            if await self._claim(ctx, job_id, None):
                return

    # --- running -----------------------------------------------------------------------------------------------
    def _start(self, job_id: uuid.UUID, request: TrainingRequest, run: str) -> None:
        self._reserved = None
        job = self._job = RunningJob(job_id, request, run)
        self._task = asyncio.ensure_future(self._supervise(job))

    async def _supervise(self, job: RunningJob) -> None:
        """Run the job in its thread while renewing the claim; then record how it ended."""
        telemetry.TRAINING_RUNNING.inc()
        try:
            candles = await self._candles(job.request)
            result = await self._watch(job, self._in_thread(job, candles))
        except JobCanceled:
            await self._end(job, "CANCELED", TrainingCanceled(job_id=job.id, detail=self._where(job)))
        except JobInterrupted:
            log.info("job %s left for another trainer (%s)", job.id, self._where(job))
            with contextlib.suppress(Exception):
                await self.transact(lambda ctx: jobs.release(ctx.conn, job.id, trainer=self.trainer_id))
        except Exception as exc:  # noqa: BLE001 - whatever the run raised is the job's error
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:4000]
            log.warning("job %s failed: %s", job.id, error)
            await self._end(job, "FAILED", TrainingFailed(job_id=job.id, error=error), error=error)
        else:
            v = result.version
            promote = self.learning.auto_promote and result.verdict.promote
            summary = {**result.summary(), "promoted": promote}
            await self._end(job, "DONE", TrainingCompleted(
                job_id=job.id, model_name=v.name, version=v.version, run_id=v.run_id, verdict=summary["verdict"],
                promoted=promote), result=summary, model_name=v.name, version=v.version, run_id=v.run_id,
                stage="done", progress=100.0, elapsed_s=job.latest.elapsed_s if job.latest else None,
                then=self._promote(job, result) if promote else None)
        finally:
            telemetry.TRAINING_RUNNING.dec()
            self._job = self._task = None
            self.completed += 1
            self._wake.set()  # look for the next job at once

    @staticmethod
    def _where(job: RunningJob) -> str:
        p = job.latest
        return "before its first progress report" if p is None else f"at {p.stage} ({p.percent:.0f}%)"

    async def _candles(self, request: TrainingRequest) -> Sequence[CandleClosed]:
        """The stored candles of the request's symbols and timeframe up to its end (those before its start warm
        the features up)."""
        spec = request.dataset
        assert self.engine is not None
        async with self.engine.connect() as conn:
            found = await stored_candles(conn, end=spec.end, symbols=spec.symbols, timeframe=spec.timeframe)
        if not found:
            raise ValueError(f"no stored {spec.timeframe} candles of {', '.join(spec.symbols)}"
                             + (f" before {spec.end.isoformat()}" if spec.end else ""))
        return found

    def _in_thread(self, job: RunningJob, candles: Sequence[CandleClosed]) -> asyncio.Future[TrainingResult]:
        """The job in a daemon thread (a process that must exit does not wait for it), its outcome a future."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[TrainingResult] = loop.create_future()

        def settle(fn: Any, value: Any) -> None:
            if not outcome.done():
                fn(value)

        def work() -> None:
            try:
                if self._registry is None:
                    self._registry = self.registry_settings.registry()
                result = train(job.request, candles, self._registry, code_version=self._code_version or "unknown",
                               settings=self._gate, progress=job.on_progress)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop as the job's outcome
                with contextlib.suppress(RuntimeError):  # the loop closed: the process is going
                    loop.call_soon_threadsafe(settle, outcome.set_exception, exc)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(settle, outcome.set_result, result)

        threading.Thread(target=work, name=f"training-{job.id}", daemon=True).start()
        return outcome

    async def _watch(self, job: RunningJob, outcome: asyncio.Future[TrainingResult]) -> TrainingResult:
        """Until the job ends, every ``progress_every_s``: renew the claim with the latest progress (published as
        ``TrainingProgressed`` when it moved), pass a cancel request on to the job, stop it when the trainer stops
        or lost its claim."""
        reported: Progress | None = None
        sent = 0
        while True:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(outcome), timeout=self.settings.progress_every_s)
            if self.stopping.is_set():
                job.interrupt.set()
            latest = job.latest
            moved = latest if latest is not None and latest != reported else None

            async def renew(ctx: Context, progress: Progress | None = moved, n: int = sent) -> bool | None:
                answer = await jobs.report(ctx.conn, job.id, trainer=self.trainer_id, now=ctx.clock.now(),
                                           progress=progress)
                if answer is not None and progress is not None:
                    ctx.emit(TrainingProgressed(job_id=job.id, stage=progress.stage, percent=progress.percent,
                                                fold=progress.fold, folds=progress.folds,
                                                elapsed_s=progress.elapsed_s), key=f"progress:{job.id}:{job.run}:{n}")
                return answer

            try:
                cancel = await self.transact(renew)
            except Exception as exc:  # noqa: BLE001 - the database is away: the job goes on, the lease may lapse
                log.warning("could not renew the claim on job %s: %s", job.id, exc)
                continue
            reported, sent = moved or reported, sent + (moved is not None)
            if cancel is None:
                log.warning("job %s is no longer this trainer's (its lease ran out): stopping it", job.id)
                job.interrupt.set()
            elif cancel:
                job.cancel.set()

    def _promote(self, job: RunningJob, result: TrainingResult) -> Any:
        """Automatic promotion (``QUORUM_LEARNING_AUTO_PROMOTE``) of a version that passed every check: asked of
        inference, which loads and checks it before it moves the ``champion`` alias; audited as SYSTEM."""
        v = result.version

        async def ask(ctx: Context) -> None:
            reason = f"automatic: training job {job.id} passed every promotion check"
            ctx.emit(PromoteModel(actor=jobs.SYSTEM, reason=reason, model_name=v.name, version=v.version),
                     key=f"promote:{job.id}:{job.run}")
            s = self.settings
            await record_audit(ctx, actor=jobs.SYSTEM, action="model_promote", mode=s.trading_mode.value,
                               risk_profile=await active_profile(ctx.conn, s.risk_profile.value), status="REQUESTED",
                               details={"job_id": str(job.id), "model": v.name, "version": v.version,
                                        "run_id": v.run_id, "reason": reason}, key=f"promote:{job.id}:{job.run}",
                               chain_key=s.chain_key)

        return ask

    async def _end(self, job: RunningJob, status: str, event: Any, then: Any = None, **values: Any) -> None:
        async def write(ctx: Context) -> None:
            if await jobs.finish(ctx.conn, job.id, trainer=self.trainer_id, now=ctx.clock.now(), status=status,
                                 **values):
                ctx.emit(event, key=f"end:{job.id}:{job.run}")
                if then is not None:
                    await then(ctx)
            else:
                log.warning("job %s ended (%s) after another trainer took it over: not recorded", job.id, status)

        try:
            await self.transact(write)
        except Exception:  # noqa: BLE001 - the row stays RUNNING; its lease runs out and the job runs again
            log.exception("could not record the end of job %s", job.id)

    # --- retraining --------------------------------------------------------------------------------------------
    async def queue_system_job(self, ctx: Context, job_id: uuid.UUID, trigger: str, reason: str,
                               details: dict[str, Any]) -> bool:
        """Queue ``default_request`` as SYSTEM, as the gateway queues an operator's (row, audit, command in one
        transaction); False when that job id was queued before."""
        queued = await jobs.enqueue(ctx, job_id, self.settings.default_request, actor=jobs.SYSTEM, reason=reason)
        if queued is None:
            return False
        s = self.settings
        await record_audit(ctx, actor=jobs.SYSTEM, action="training", mode=s.trading_mode.value,
                           risk_profile=await active_profile(ctx.conn, s.risk_profile.value), status="REQUESTED",
                           details={"job_id": str(job_id), "trigger": trigger, "reason": reason, **details,
                                    "request": self.settings.default_request.model_dump(mode="json")},
                           key=job_id, chain_key=s.chain_key)
        log.info("queued %s retraining job %s", trigger, job_id)
        return True

    async def on_drift(self, ctx: Context) -> None:
        """Queue a retraining when inference reports drift (and it is configured), unless a job is queued or running
        already: it trains on the same data a second job would."""
        if not self.settings.retrain_on_drift:
            return
        drift: DriftDetected = ctx.message.payload
        c = training_jobs.c
        unfinished = (await ctx.conn.execute(select(func.count()).select_from(training_jobs).where(
            c.status.in_(("QUEUED", "RUNNING"))))).scalar_one()
        if unfinished:
            log.info("drift of %s:%s: a training job is queued or running already", drift.model_name,
                     drift.model_version)
            return
        await self.queue_system_job(
            ctx, stable_uuid("training-drift", ctx.message.event_id), "drift",
            f"drift of {drift.model_name}:{drift.model_version} ({', '.join(drift.reasons)})",
            {"drift_event_id": str(ctx.message.event_id), "model": f"{drift.model_name}:{drift.model_version}",
             "reasons": list(drift.reasons)})

    async def _retrain_on_schedule(self) -> None:
        """One job per period (numbered from the epoch): every trainer tries, the first one queues it."""
        period = self.settings.retrain_every_h * 3600
        while not self.stopping.is_set():
            slot = math.floor(self.clock.now().timestamp() / period)

            async def queue(ctx: Context, slot: int = slot) -> bool:
                return await self.queue_system_job(
                    ctx, stable_uuid("training-schedule", period, slot), "schedule",
                    f"scheduled retraining (every {self.settings.retrain_every_h:g} h)", {"slot": slot})

            try:
                await self.transact(queue)
            except Exception as exc:  # noqa: BLE001 - tried again at the next look
                log.warning("could not queue the scheduled retraining: %s", exc)
                wait = min(60.0, period)
            else:
                wait = (slot + 1) * period - self.clock.now().timestamp()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=max(wait, 1.0))
