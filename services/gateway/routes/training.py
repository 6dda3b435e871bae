"""Training jobs: queue one (its row, its audit row and the trainers' ``StartTraining`` commit in one transaction;
the answer is the QUEUED row at once, a trainer picks it up), follow it, cancel it."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from quorum.db.tables import training_jobs
from quorum.events.control import TrainingCanceled
from quorum.learning import jobs
from quorum.runtime.handling import Context
from sqlalchemy import select

from .. import queries
from ..deps import Actor, Cmd, Conn, Limit, Offset, Reader
from ..http import CONTROL_RESPONSES, Refused
from ..schemas import ControlRequest, Page
from ..training_schemas import TrainingJobOut, TrainingJobRequest

router = APIRouter(tags=["training"])
NOT_FOUND = {404: {"description": "no such training job"}}
QUEUE, CANCEL = "training", "training_cancel"


@router.post("/controls/training", response_model=TrainingJobOut, status_code=status.HTTP_202_ACCEPTED)
async def start_training(actor: Actor, commands: Cmd, http: Request, body: TrainingJobRequest) -> Any:
    """Queue a training job: the data (symbols, timeframe, range), the model family and its parameters, the folds.
    A trainer runs it (one job at a time each); follow it with ``GET /training/jobs/{id}``. When it is done, the
    model is registered as the ``challenger`` with its promotion verdict in ``result``."""
    body = strictly(await http.body())
    request = body.training_request()
    job_id = uuid.uuid4()

    async def queue(ctx: Context) -> Any:
        queued = await jobs.enqueue(ctx, job_id, request, actor=actor, reason=body.reason)
        assert queued is not None  # a fresh id
        row, env = queued
        await commands.audit(ctx, actor, QUEUE, "REQUESTED", {"job_id": str(job_id), "command_id": str(env.event_id),
                                                              "reason": body.reason,
                                                              "request": request.model_dump(mode="json")}, job_id)
        return row

    return TrainingJobOut.model_validate(await commands.transact(queue))


def strictly(raw: bytes) -> TrainingJobRequest:
    """The body read again without type coercion: ``0`` is not ``false`` and ``"5"`` is not ``5`` anywhere in the
    request (the request models are shared with the trainer and ``quorum train``, so they stay lenient)."""
    try:
        return TrainingJobRequest.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
                                     ) from None


@router.get("/training/jobs", response_model=Page[TrainingJobOut])
async def list_training_jobs(_: Reader, conn: Conn, limit: Limit = 100, offset: Offset = 0,
                             status_: Annotated[str | None, Query(
                                 alias="status", pattern="^(QUEUED|RUNNING|DONE|FAILED|CANCELED)$")] = None,
                             ) -> Page[TrainingJobOut]:
    """Newest first."""
    c = training_jobs.c
    q = select(training_jobs).order_by(c.created_at.desc(), c.id)
    if status_:
        q = q.where(c.status == status_)
    page: Page[TrainingJobOut] = await queries._page(conn, q, TrainingJobOut, limit, offset)
    return page


@router.get("/training/jobs/{job_id}", response_model=TrainingJobOut, responses=NOT_FOUND)
async def get_training_job(_: Reader, conn: Conn, job_id: uuid.UUID) -> TrainingJobOut:
    found = await jobs.job(conn, job_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no training job {job_id}")
    return TrainingJobOut.model_validate(found)


@router.post("/training/jobs/{job_id}/cancel", response_model=TrainingJobOut, status_code=status.HTTP_202_ACCEPTED,
             responses={**NOT_FOUND, 409: CONTROL_RESPONSES[409]})
async def cancel_training_job(actor: Actor, commands: Cmd, job_id: uuid.UUID,
                              body: ControlRequest | None = None) -> Any:
    """Stop a job: a queued one is CANCELED at once; a running one stops at its trainer's next progress report
    (``cancel_requested`` until then). A finished one is refused."""
    reason = body.reason if body else ""

    async def cancel(ctx: Context) -> Any:
        try:
            row, at_once = await jobs.request_cancel(ctx.conn, job_id, now=ctx.clock.now())
        except LookupError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        except jobs.NotCancelable as exc:
            raise Refused(CANCEL, str(exc)) from None
        if at_once:
            ctx.emit(TrainingCanceled(job_id=job_id, detail="canceled before it ran"), key=f"cancel:{job_id}")
        await commands.audit(ctx, actor, CANCEL, "CONFIRMED" if at_once else "REQUESTED",
                             {"job_id": str(job_id), "reason": reason, "was": "QUEUED" if at_once else "RUNNING"},
                             uuid.uuid4())
        return row

    return TrainingJobOut.model_validate(await commands.transact(cancel))
