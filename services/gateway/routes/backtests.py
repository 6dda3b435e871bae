"""Backtests and validation gates: queue a backtest (or a walk-forward with its gates) over a data file or the
stored candles with a named configuration, follow it, read its metrics; the latest gate report per asset."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse
from quorum.backtest.cli import InputError

from .. import queries
from ..backtests import UnknownConfiguration
from ..deps import ActiveConfig, Actor, Conn, Jobs, Limit, Offset, Reader, Settings
from ..http import Refused
from ..schemas import BacktestDetail, BacktestOut, BacktestRequest, ControlResult, GatesOut, Page

router = APIRouter(tags=["backtests"])
NOT_FOUND = {404: {"description": "no such backtest"}}
ACTIVE = "active"


@router.get("/backtests", response_model=Page[BacktestOut])
async def list_backtests(_: Reader, conn: Conn, limit: Limit = 100, offset: Offset = 0,
                         status_: Annotated[str | None, Query(alias="status", pattern="^(QUEUED|RUNNING|DONE|FAILED)$")]
                         = None) -> Page[BacktestOut]:
    """Newest first, without the configuration's settings (``GET /backtests/{id}`` has them)."""
    return await queries.backtests_page(conn, status_, limit, offset)


@router.get("/backtests/{backtest_id}", response_model=BacktestDetail, responses=NOT_FOUND)
async def get_backtest(_: Reader, conn: Conn, backtest_id: uuid.UUID) -> BacktestDetail:
    found = await queries.backtest(conn, backtest_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no backtest {backtest_id}")
    return found


REPORT_FILES = {".html": "text/html; charset=utf-8", ".csv": "text/csv; charset=utf-8", ".json": "application/json"}


@router.get("/backtests/{backtest_id}/report/{name:path}", response_class=FileResponse,
            responses={200: {"content": {"text/html": {}}}, **NOT_FOUND})
async def get_backtest_report(_: Reader, conn: Conn, settings: Settings, backtest_id: uuid.UUID,
                              name: str = "") -> FileResponse:
    """The finished backtest's report (``/report/``: its report.html, or a walk-forward's index.html) and the
    files beside it (each asset's report, equity.csv, trades.csv, metrics.json), only from its own folder."""
    found = await queries.backtest(conn, backtest_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no backtest {backtest_id}")
    if not found.report_path:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"backtest {backtest_id} has no report ({found.status})")
    entry = Path(found.report_path).resolve()
    folder = entry.parent
    wanted = (folder / name).resolve() if name else entry
    root = settings.backtest_report_dir.resolve()
    if not (wanted.is_relative_to(folder) and folder.is_relative_to(root)) or wanted.suffix not in REPORT_FILES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report file {name!r} for backtest {backtest_id}")
    if not wanted.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"report file {name or entry.name!r} is gone from disk")
    return FileResponse(wanted, media_type=REPORT_FILES[wanted.suffix])


@router.post("/backtests", response_model=BacktestOut, status_code=status.HTTP_202_ACCEPTED,
             responses={404: {"description": "no such configuration or data file"},
                        409: {"model": ControlResult, "description": "the named configuration does not validate "
                                                                    "under the services' settings"}})
async def start_backtest(actor: Actor, jobs: Jobs, conn: Conn, body: BacktestRequest) -> Any:
    """Queue a backtest: it runs in a worker process; poll ``GET /backtests/{id}`` for its progress and result.
    With ``walk_forward``, each asset gets a walk-forward and a gate report (``GET /gates``).

    ``configuration``: a named one, ``active`` (what the council decides with now: the ACTIVE optimizer
    configuration, or the services' settings when there is none) or an optimizer configuration's id (a PROPOSED
    one can be validated before it is approved)."""
    stored = await _stored_configuration(conn, body.configuration)
    if stored is not None:
        body = body.model_copy(update={"configuration": str(stored.id)})
    elif body.configuration == ACTIVE:
        body = body.model_copy(update={"configuration": "default"})
    try:
        config = jobs.configuration(body.configuration) if stored is None else jobs.stored_configuration(stored)
    except UnknownConfiguration:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no configuration {body.configuration!r}") from None
    except InputError as exc:
        raise Refused("backtest", str(exc)) from None
    path = None
    if body.data_file is not None:
        path = jobs.data_path(body.data_file)
        if path is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no data file {body.data_file} in the data folder's ohlcv/")
    row = await jobs.submit(actor, body, config, path)
    return BacktestOut.model_validate(row)


async def _stored_configuration(conn: Conn, name: str) -> Any:
    """The ``configurations`` row ``name`` refers to (``active``: the ACTIVE one), or None."""
    if name == ACTIVE:
        return await queries.active_configuration(conn)
    try:
        config_id = uuid.UUID(name)
    except ValueError:
        return None
    found = await queries.configuration(conn, config_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no configuration {name}")
    return found


@router.get("/gates", response_model=GatesOut)
async def get_gates(_: Reader, conn: Conn, active: ActiveConfig,
                    config_hash: Annotated[str | None, Query(pattern="^[0-9a-f]{16}$",
                                                             description="another configuration's (default: the "
                                                                         "active one)")] = None) -> GatesOut:
    """The latest validation gate report per asset: passed, and each criterion with its figure and threshold."""
    chosen = config_hash or active
    return GatesOut(config_hash=chosen, reports=await queries.latest_gates(conn, chosen))
