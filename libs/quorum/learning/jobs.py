"""The ``training_jobs`` rows, written in one place for the gateway (queue, cancel) and the trainers (claim,
report, finish, take over): the row is the job's state, and every transition is one guarded UPDATE, so two
trainers (or a trainer and a cancel) racing for a row cannot both win.

A claim is a lease: the trainer running a job renews ``heartbeat_at``; a RUNNING row whose heartbeat is older
than the lease (its trainer died or hung) or null (its trainer stopped and let it go) may be claimed by any
trainer and run again. A trainer's reports and its finish apply only while the claim is still its own
(``claimed_by`` and RUNNING), so a trainer that lost its lease cannot overwrite the run of the one that took over.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from quorum.db.tables import training_jobs
from quorum.events.base import Envelope
from quorum.events.control import StartTraining
from quorum.learning.train import Progress, TrainingRequest
from quorum.runtime.handling import Context

SYSTEM = "SYSTEM:trainer"
"""Who scheduled and drift-triggered jobs are queued (and audited) as."""

FINISHED = ("DONE", "FAILED", "CANCELED")
_c = training_jobs.c


class NotCancelable(ValueError):
    """The job has finished already."""


async def enqueue(ctx: Context, job_id: uuid.UUID, request: TrainingRequest, *, actor: str,
                  reason: str = "") -> tuple[Any, Envelope[Any]] | None:
    """The QUEUED row and its ``StartTraining`` command, in the caller's transaction (the caller audits it).
    None when the job id exists already (a schedule slot or a drift event is enqueued once, by one trainer)."""
    body = request.model_dump(mode="json")
    row = (await ctx.conn.execute(insert(training_jobs).values(
        id=job_id, created_at=ctx.clock.now(), created_by=actor, request=body, status="QUEUED",
    ).on_conflict_do_nothing(index_elements=["id"]).returning(training_jobs))).first()
    if row is None:
        return None
    env = ctx.emit(StartTraining(actor=actor, reason=reason, job_id=job_id, request=body), key=str(job_id))
    return row, env


async def adopt(conn: AsyncConnection, job_id: uuid.UUID, request: dict[str, Any], *, actor: str,
                now: datetime) -> None:
    """A command whose sender wrote no row (another producer, or a row lost with its database): queue it now."""
    await conn.execute(insert(training_jobs).values(id=job_id, created_at=now, created_by=actor, request=request,
                                                    status="QUEUED").on_conflict_do_nothing(index_elements=["id"]))


async def job(conn: AsyncConnection, job_id: uuid.UUID) -> Any:
    return (await conn.execute(select(training_jobs).where(_c.id == job_id))).first()


def _stale(now: datetime, lease_s: float) -> Any:
    return and_(_c.status == "RUNNING", or_(_c.heartbeat_at.is_(None), _c.heartbeat_at < now - timedelta(
        seconds=lease_s)))


async def claim(conn: AsyncConnection, job_id: uuid.UUID, *, trainer: str, now: datetime,
                lease_s: float) -> Any:
    """Make the job RUNNING under ``trainer`` if it is QUEUED (or RUNNING with its lease run out): the row as
    claimed, or None (finished, canceled, or another trainer's live claim). Progress starts again."""
    return (await conn.execute(update(training_jobs).where(
        _c.id == job_id, or_(and_(_c.status == "QUEUED", _c.cancel_requested.is_(False)), _stale(now, lease_s))
    ).values(status="RUNNING", claimed_by=trainer, heartbeat_at=now, started_at=now, stage=None, progress=0.0,
             fold=None, folds=None, elapsed_s=0.0, error=None).returning(training_jobs))).first()


async def claimable(conn: AsyncConnection, *, now: datetime, lease_s: float) -> tuple[uuid.UUID, bool] | None:
    """The oldest job no live trainer runs: QUEUED (its command went to a busy trainer) or RUNNING with its lease
    run out (True: a takeover). Rows other trainers are claiming right now are skipped."""
    row = (await conn.execute(select(_c.id, _c.status).where(
        or_(and_(_c.status == "QUEUED", _c.cancel_requested.is_(False)), _stale(now, lease_s)))
        .order_by(_c.created_at, _c.id).limit(1).with_for_update(skip_locked=True))).first()
    return None if row is None else (row.id, row.status == "RUNNING")


async def report(conn: AsyncConnection, job_id: uuid.UUID, *, trainer: str, now: datetime,
                 progress: Progress | None = None) -> bool | None:
    """Renew the claim (with the latest progress, when given): whether a cancel was asked for, or None when the
    claim is no longer this trainer's."""
    values: dict[str, Any] = {"heartbeat_at": now}
    if progress is not None:
        values |= {"stage": progress.stage, "progress": progress.percent, "fold": progress.fold,
                   "folds": progress.folds, "elapsed_s": progress.elapsed_s}
    return (await conn.execute(update(training_jobs).where(
        _c.id == job_id, _c.claimed_by == trainer, _c.status == "RUNNING").values(**values)
        .returning(_c.cancel_requested))).scalar_one_or_none()


async def finish(conn: AsyncConnection, job_id: uuid.UUID, *, trainer: str, now: datetime, status: str,
                 **values: Any) -> bool:
    """End the run (DONE, FAILED or CANCELED) with its result or error; False when the claim was lost."""
    assert status in FINISHED, status
    found = (await conn.execute(update(training_jobs).where(
        _c.id == job_id, _c.claimed_by == trainer, _c.status == "RUNNING").values(
        status=status, finished_at=now, heartbeat_at=now, **values).returning(_c.id))).first()
    return found is not None


async def release(conn: AsyncConnection, job_id: uuid.UUID, *, trainer: str) -> None:
    """A stopping trainer lets its job go: any trainer may take it over at once (no lease to wait out)."""
    await conn.execute(update(training_jobs).where(
        _c.id == job_id, _c.claimed_by == trainer, _c.status == "RUNNING").values(heartbeat_at=None))


async def request_cancel(conn: AsyncConnection, job_id: uuid.UUID, *, now: datetime) -> tuple[Any, bool]:
    """Ask the job to stop: a QUEUED one is CANCELED at once (True: the caller reports it), a RUNNING one is
    flagged and its trainer stops it at its next progress report. Raises ``NotCancelable`` for a finished one,
    ``LookupError`` for an unknown id."""
    row = (await conn.execute(select(training_jobs).where(_c.id == job_id).with_for_update())).first()
    if row is None:
        raise LookupError(f"no training job {job_id}")
    if row.status in FINISHED:
        raise NotCancelable(f"training job {job_id} is {row.status} already")
    queued = row.status == "QUEUED"
    values: dict[str, Any] = {"cancel_requested": True}
    if queued:
        values |= {"status": "CANCELED", "finished_at": now}
    row = (await conn.execute(update(training_jobs).where(_c.id == job_id).values(**values)
                              .returning(training_jobs))).one()
    return row, queued
