"""Service health for ``/status``, kept by ONE long-lived watcher on the ``service_health`` KV bucket.

A KV ``keys()`` starts a JetStream consumer, so reading the bucket per request made one consumer per ``/status``
call and, under load, hit the server's consumer limit. The watcher lives as long as the gateway; requests read
the cache it keeps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import nats.errors
from nats.js.kv import KeyValue

from .schemas import ServiceHealth

log = logging.getLogger("quorum.gateway.health")
BUCKET = "service_health"
DELETES = {"DEL", "PURGE"}


class HealthCache:
    def __init__(self, retry_s: float = 1.0) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.ready = asyncio.Event()  # the bucket's current content has been read once
        self._retry_s = retry_s

    def apply(self, key: str, value: bytes | None, operation: str | None) -> None:
        if operation in DELETES:
            self.docs.pop(key, None)
            return
        try:
            doc = json.loads(value or b"{}")
        except ValueError:
            log.warning("unreadable heartbeat for %s ignored", key)
            return
        if isinstance(doc, dict):
            self.docs[key] = doc

    def snapshot(self, now: datetime, stale_s: float) -> dict[str, ServiceHealth]:
        """Every service's last heartbeat as ``/status`` shows it; stale when older than ``stale_s``."""
        out: dict[str, ServiceHealth] = {}
        for key, doc in sorted(self.docs.items()):
            try:
                seen = datetime.fromisoformat(doc["ts"]) if "ts" in doc else None
            except (TypeError, ValueError):
                seen = None
            stale = seen is None or now - seen > timedelta(seconds=stale_s)
            out[key] = ServiceHealth(state=doc.get("state", "UNKNOWN"), last_seen=seen, stale=stale,
                                     details=doc.get("details") or {})
        return out

    async def run(self, js: Any, stopping: asyncio.Event) -> None:
        """Follow the bucket until ``stopping``; a lost bucket or connection is retried, never fatal."""
        while not stopping.is_set():
            watcher = None
            try:
                kv = await js.key_value(BUCKET)
                watcher = await kv.watchall()
                while not stopping.is_set():
                    try:
                        entry = await watcher.updates(timeout=1.0)
                    except nats.errors.TimeoutError:
                        continue
                    if entry is None:  # the initial content is all delivered
                        self.ready.set()
                    elif isinstance(entry, KeyValue.Entry):
                        self.apply(entry.key, entry.value, entry.operation)
                    else:  # the watcher was stopped under us
                        break
            except Exception as exc:  # noqa: BLE001 - bucket not provisioned yet, NATS away: retry
                log.warning("health watcher restarting: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=self._retry_s)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()
