"""Idempotent publishing: the envelope's event id is the ``Nats-Msg-Id``, so the server drops repeats."""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext

from quorum.events.base import Envelope
from quorum.metrics import EVENTS_OUT
from quorum.subjects import subject_of

MSG_ID = "Nats-Msg-Id"


class Publisher:
    def __init__(self, js: JetStreamContext, service: str) -> None:
        self._js = js
        self._service = service

    async def publish(self, envelope: Envelope[Any]) -> bool:
        """Publish; returns False when the server already had this event id (counts as success)."""
        return await self.publish_raw(subject_of(envelope), envelope.to_bytes(), envelope)

    async def publish_raw(
        self,
        subject: str,
        data: bytes,
        envelope: Envelope[Any] | None = None,
        *,
        msg_id: str | None = None,
        event_type: str = "raw",
        headers: dict[str, str] | None = None,
    ) -> bool:
        ident = msg_id or (str(envelope.event_id) if envelope else None)
        all_headers = dict(headers or {})
        if ident:
            all_headers[MSG_ID] = ident
        ack = await self._js.publish(subject, data, headers=all_headers or None)
        EVENTS_OUT.labels(self._service, envelope.event_type if envelope else event_type).inc()
        return not ack.duplicate
