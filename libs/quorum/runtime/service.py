"""Service base: explicit lifecycle, bus and database wiring, health, metrics and graceful shutdown.

A concrete service declares ``handlers()`` (durable consumer name -> handler) and may override the
``on_start`` / ``on_stop`` hooks or add background ``tasks()``. Everything else is here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from enum import StrEnum
from typing import Any, ClassVar

import uvicorn
from fastapi import FastAPI, Response
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from quorum.bus.connection import connect, jetstream
from quorum.bus.publisher import Publisher
from quorum.clock import Clock, LiveClock
from quorum.db.engine import create_engine
from quorum.db.outbox import OutboxRelay, Queued, enqueue
from quorum.metrics import SERVICE_STATE
from quorum.runtime.handling import ConsumerLoop, Context, Handler, retry_conflicts, run_after_commit
from quorum.runtime.logs import setup_logging
from quorum.runtime.settings import ServiceSettings
from quorum.telemetry import observe_committed, preset
from quorum.topology import TOPOLOGY

log = logging.getLogger("quorum.service")


class LifecycleState(StrEnum):
    INITIALIZED = "INITIALIZED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


class _QuietServer(uvicorn.Server):
    """uvicorn that leaves signal handling to the service (which drains before exiting)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Service:
    NAME: ClassVar[str]

    def __init__(self, settings: ServiceSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or LiveClock()
        self.state = LifecycleState.INITIALIZED
        self.failed = False
        self.stopping = asyncio.Event()
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.engine: AsyncEngine | None = None
        self.publisher: Publisher | None = None
        self.relay: OutboxRelay | None = None
        self._loops: list[ConsumerLoop] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._http: _QuietServer | None = None
        self.app = self.build_app()
        self._set_state(LifecycleState.INITIALIZED)
        preset(self.NAME)

    # ----- hooks for subclasses ---------------------------------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        return {}

    def tasks(self) -> list[Callable[[], Awaitable[None]]]:
        """Extra long-running coroutines (e.g. the replay); they should return when ``stopping`` is set."""
        return []

    async def on_start(self) -> None:
        """Runs after bus and database are up, before consuming starts."""

    async def on_stop(self) -> None:
        """Runs after consuming stopped, before connections close."""

    def extend_app(self, app: FastAPI) -> None:
        """Add routes (the gateway adds its whole API here)."""

    def health_details(self) -> dict[str, Any]:
        """What operators should see in the status next to this service's state (e.g. its data source)."""
        return {}

    async def on_batch_lost(self) -> None:
        """A batch transaction was lost as a whole (the database went away, the commit failed) after some of its
        messages' ``after_commit`` callbacks had run (the next message of the batch had to see them): memory is
        ahead of the database, and the batch is about to be applied again. Reload or drop the in-memory state
        here. The default does nothing: right for state that re-validates against the database, as the features'
        per-series fold does (it is rebuilt when a candle does not follow it)."""

    async def transact(self, work: Callable[[Context], Awaitable[Any]]) -> Any:
        """Run ``work`` in one transaction outside any consumer (start-up, HTTP requests, periodic tasks);
        emitted events go through the outbox and are published right after the commit. A transaction that loses a
        deadlock or serialization race is run again at once (``work`` must be safe to re-run: it is, as long
        as it only acts through ``ctx``)."""
        assert self.engine is not None and self.relay is not None
        engine = self.engine

        async def attempt() -> tuple[Context, list[Queued], Any]:
            async with engine.begin() as conn:
                ctx = Context(conn=conn, clock=self.clock, service=self.NAME)
                result = await work(ctx)
                queued = await enqueue(conn, self.NAME, ctx.emitted)
            return ctx, queued, result

        ctx, queued, result = await retry_conflicts(attempt)
        run_after_commit(ctx)
        observe_committed(self.NAME, ctx.emitted)
        if queued:
            await self.relay.publish_now(queued)
        return result

    # ----- lifecycle --------------------------------------------------------------------------------------
    def _set_state(self, state: LifecycleState) -> None:
        self.state = state
        for s in LifecycleState:
            SERVICE_STATE.labels(self.NAME, s.value).set(1 if s is state else 0)
        log.info("%s is %s", self.NAME, state.value)

    async def start(self) -> None:
        self._set_state(LifecycleState.STARTING)
        await self._start_http()
        self.engine = create_engine(self.settings.database_url.get_secret_value())
        await self._wait_for_database()
        self.nc = await connect(self.settings.nats_url, name=self.NAME)
        self.js = jetstream(self.nc)
        self.publisher = Publisher(self.js, self.NAME)
        self.relay = OutboxRelay(self.engine, self.publisher, self.NAME)
        await self.on_start()
        await self._listen_for_shutdown()
        await self._bind_consumers()
        self._spawn(self.relay.run(self.stopping))
        self._spawn(self._heartbeat())
        for loop in self._loops:
            self._spawn(loop.run(self.stopping))
        for task in self.tasks():
            self._spawn(task())
        self._set_state(LifecycleState.RUNNING)

    async def stop(self) -> None:
        if self.state in (LifecycleState.STOPPING, LifecycleState.STOPPED):
            return
        self._set_state(LifecycleState.STOPPING)
        self.stopping.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=15)
            for t in pending:
                t.cancel()
        for loop in self._loops:
            await loop.close()
        with contextlib.suppress(Exception):
            await self.on_stop()
        if self.relay is not None:
            with contextlib.suppress(Exception):
                await self.relay.drain()  # publish whatever committed before we go
        if self.nc is not None and self.nc.is_connected:
            with contextlib.suppress(Exception):
                await self._put_health("STOPPED")
                await self.nc.drain()
        if self.engine is not None:
            await self.engine.dispose()
        if self._http is not None:
            self._http.should_exit = True
        self._set_state(LifecycleState.STOPPED)

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        try:
            await self.start()
        except Exception:
            self.failed = True
            self._set_state(LifecycleState.FAILED)
            log.exception("start failed")
            await self.stop()
            raise
        await self.stopping.wait()
        await self.stop()
        if self._http_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http_task, timeout=5)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None and not self.stopping.is_set():
            log.error("background task crashed: %r", task.exception(), exc_info=task.exception())
            self.failed = True
            self._set_state(LifecycleState.FAILED)
            self.stopping.set()  # fail loudly: the supervisor (compose / quorum dev) restarts the process

    async def _listen_for_shutdown(self) -> None:
        """An operator's ``ShutdownService`` for this service: confirm, then stop as on SIGTERM. A plain (not
        durable) subscription, so a restarted service never replays an old shutdown."""
        from quorum.events.base import UndecodableMessage, decode
        from quorum.events.control import ShutdownAcknowledged, ShutdownService
        from quorum.subjects import subject

        async def on_message(msg: Any) -> None:
            try:
                env = decode(msg.data)
            except UndecodableMessage:
                return
            cmd = env.payload
            if not isinstance(cmd, ShutdownService) or cmd.service != self.NAME or self.stopping.is_set():
                return

            async def confirm(ctx: Context) -> None:
                ctx.envelope = env
                ctx.emit(ShutdownAcknowledged(actor=cmd.actor, reason=cmd.reason, service=self.NAME))

            await self.transact(confirm)
            if self.relay is not None:
                await self.relay.drain()  # the confirmation leaves before the service does
            self.stopping.set()

        assert self.nc is not None
        await self.nc.subscribe(subject(ShutdownService, service=self.NAME), cb=on_message)

    async def _wait_for_database(self) -> None:
        assert self.engine is not None
        delay = 0.5
        while True:
            try:
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1 FROM inbox LIMIT 1"))
                return
            except Exception as exc:  # noqa: BLE001 - not up / not migrated yet
                log.warning("database not ready (%s); retrying in %.1fs", str(exc).splitlines()[0], delay)
                if self.stopping.is_set():
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def _bind_consumers(self) -> None:
        assert self.js and self.engine and self.publisher and self.relay
        handlers = self.handlers()
        declared = {c.durable for c in TOPOLOGY.consumers_of(self.NAME)}
        if set(handlers) != declared:
            raise RuntimeError(f"{self.NAME}: handlers {sorted(handlers)} != topology {sorted(declared)}")
        for durable, handler in handlers.items():
            loop = ConsumerLoop(
                TOPOLOGY.consumer(durable), handler, js=self.js, engine=self.engine, publisher=self.publisher,
                clock=self.clock, service=self.NAME, batch=self.settings.consume_batch,
                batch_transactions=self.settings.batch_transactions, on_lost=self.on_batch_lost,
            )
            delay = 0.5
            while True:
                try:
                    await loop.bind()
                    break
                except Exception as exc:  # noqa: BLE001 - topology not provisioned yet
                    log.warning("consumer %s not provisioned (%s); run `quorum provision`", durable, exc)
                    if self.stopping.is_set():
                        raise
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10)
            self._loops.append(loop)

    async def _put_health(self, state: str) -> None:
        assert self.js is not None
        kv = await self.js.key_value("service_health")
        doc = {"service": self.NAME, "state": state, "ts": self.clock.now().isoformat(),
               "http_port": self.settings.http_port, "details": self.health_details()}
        await kv.put(self.NAME, json.dumps(doc).encode())

    async def _heartbeat(self) -> None:
        while not self.stopping.is_set():
            try:
                await self._put_health(self.state.value)
            except Exception as exc:  # noqa: BLE001 - health is best-effort; never takes the service down
                log.debug("heartbeat failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.settings.heartbeat_s)

    # ----- HTTP: health, readiness, metrics ------------------------------------------------------------
    _http_task: asyncio.Task[Any] | None = None

    def build_app(self) -> FastAPI:
        app = FastAPI(title=f"quorum {self.NAME}", docs_url=None, redoc_url=None)

        @app.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            return {"service": self.NAME, "state": self.state.value}

        @app.get("/readyz", include_in_schema=False)
        async def readyz(response: Response) -> dict[str, Any]:
            ready = self.state is LifecycleState.RUNNING and self.nc is not None and self.nc.is_connected
            response.status_code = 200 if ready else 503
            return {"service": self.NAME, "ready": ready, "state": self.state.value}

        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

        self.extend_app(app)
        return app

    async def _start_http(self) -> None:
        config = uvicorn.Config(
            self.app, host=self.settings.http_host, port=self.settings.http_port, log_config=None,
            lifespan="off", access_log=False,
        )
        self._http = _QuietServer(config)
        self._http_task = asyncio.ensure_future(self._http.serve())
        for _ in range(100):
            if self._http.started or self._http_task.done():
                break
            await asyncio.sleep(0.05)
        if self._http_task.done():
            raise RuntimeError(f"HTTP server failed to start on {self.settings.http_host}:{self.settings.http_port}")


def main_for(service_cls: type[Service], settings_cls: type[ServiceSettings]) -> Callable[[], None]:
    """Build a console-script entry point: load settings (fail fast), log as JSON, run until signalled."""

    def main() -> None:
        try:
            settings = settings_cls()
        except ValueError as exc:  # pydantic's ValidationError included: say what is wrong, exit non-zero
            raise SystemExit(f"{service_cls.NAME}: invalid configuration:\n{exc}") from None
        setup_logging(service_cls.NAME, settings.log_level)
        service = service_cls(settings)
        asyncio.run(service.run_forever())
        if service.failed:
            raise SystemExit(1)  # a supervisor (compose, quorum dev) restarts it

    return main
