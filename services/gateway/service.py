"""The operator's only door. Reads come from the database; every control is a typed command published
through the outbox together with its audit row, and the gateway waits for the owning service's confirmation
(or reports a timeout). All routes except health and metrics need the bearer token.

This module is the process: its state (rate limiters, the health watcher, the command layer, the backtest
workers) and lifecycle.
The API is assembled in ``api``: route modules under ``routes/`` over the read models in ``queries`` and the
command layer in ``commands``, with every dependency provided by ``deps``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI
from quorum.bus import monitor as bus_monitor
from quorum.runtime.service import Service
from quorum.subjects import family_wildcard

from . import api
from .auth import RateLimiter
from .backtests import BacktestJobs
from .commands import Commands
from .health import HealthCache
from .settings import DEV_TOKEN, GatewaySettings

__all__ = ["DEV_TOKEN", "GatewayService", "GatewaySettings"]
log = logging.getLogger(__name__)


class GatewayService(Service):
    NAME = "gateway"
    settings: GatewaySettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        settings: Any = args[0] if args else kwargs["settings"]
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        self.auth_failures = RateLimiter(settings.auth_failures_per_s, settings.auth_failure_burst)
        self.health = HealthCache()
        self.commands = Commands(settings, self.transact)
        self.active_config_hash: str | None = None
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.jobs = BacktestJobs(settings, self.commands, self.clock)

    async def on_start(self) -> None:
        assert self.nc is not None
        await self.nc.subscribe(family_wildcard("control"), cb=self.commands.on_control_event)
        self._spawn(self.health.run(self.js, self.stopping))
        self._spawn(bus_monitor.run(self.js, self.stopping, self.settings.bus_metrics_s))
        self.active_config_hash = _active_config_hash()
        await self.jobs.recover()
        self._spawn(self.jobs.watch(self.stopping))
        with contextlib.suppress(TimeoutError):  # a first /status should already see every service
            await asyncio.wait_for(self.health.ready.wait(), timeout=5)

    async def on_stop(self) -> None:
        await self.jobs.close()

    def extend_app(self, app: FastAPI) -> None:
        app.state.gateway = self  # what ``deps`` hands the routes
        api.build(app, self.settings)


def _active_config_hash() -> str | None:
    """What the gate reports of the running configuration are filed under: the services' settings as this
    process's environment gives them (the runner reads the same variables)."""
    from quorum.backtest.config import RunnerConfig

    try:
        return RunnerConfig.from_env().config_hash
    except Exception:  # noqa: BLE001 - the gateway still serves; /status then shows no gate reports
        log.exception("could not build the active configuration: gate reports cannot be matched to it")
        return None
