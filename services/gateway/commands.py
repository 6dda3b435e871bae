"""The gateway's write side: every control is a typed command published through the outbox together with its
audit row (one transaction), then the gateway waits for the owning service's confirmation (or reports a
timeout). Dangerous controls go through the two-step confirmation first; anything live also needs the typed
phrase and the master PIN."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from quorum import keyvault
from quorum.events.base import Envelope, Payload, UndecodableMessage, decode
from quorum.events.control import ControlRefused
from quorum.runtime.audit import record_audit
from quorum.runtime.handling import Context
from sqlalchemy.ext.asyncio import AsyncConnection

from . import confirm, queries
from .http import Refused, invalid
from .schemas import ConfirmableRequest, ConfirmationRequired, ControlResult
from .settings import GatewaySettings

Transact = Callable[[Callable[[Context], Awaitable[Any]]], Awaitable[Any]]


class Commands:
    """Publishes controls and audits them; ``transact`` is the service's (outbox and retries included)."""

    def __init__(self, settings: GatewaySettings, transact: Transact) -> None:
        self.settings = settings
        self.transact = transact
        self._waiters: dict[uuid.UUID, asyncio.Future[Any]] = {}

    async def on_control_event(self, msg: Any) -> None:
        """Confirmations travel on JetStream subjects; a plain subscription sees them as they are stored."""
        try:
            env = decode(msg.data)
        except UndecodableMessage:
            return
        fut = self._waiters.get(env.causation_id) if env.causation_id else None
        if fut is not None and not fut.done():
            fut.set_result(env)

    async def control(self, command_cls: type[Payload], action: str, actor: str, reason: str,
                      prepare: Callable[[Context], Awaitable[Envelope[Any]]] | None = None, **fields: Any) -> Any:
        """Publish the command with its audit row (one transaction), then wait for the confirmation. ``prepare``
        emits the command itself, with the gateway's own writes that must commit with it."""
        request_id = uuid.uuid4()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        async def send(ctx: Context) -> uuid.UUID:
            if prepare is None:
                command = command_cls(actor=actor, reason=reason, **fields)  # type: ignore[call-arg]
                env = ctx.emit(command, key=str(request_id))
            else:
                env = await prepare(ctx)
                command = env.payload
            self._waiters[env.event_id] = fut
            details = {"command_id": str(env.event_id), **command.model_dump(mode="json", exclude={"actor"})}
            await self.audit(ctx, actor, action, "REQUESTED", details, env.event_id)
            return env.event_id

        command_id = await self.transact(send)
        try:
            try:
                confirmation = await asyncio.wait_for(fut, timeout=self.settings.control_timeout_s)
            except TimeoutError:
                outcome, conf_type, detail = "TIMEOUT", None, "the owning service did not confirm in time"
            else:
                refused = isinstance(confirmation.payload, ControlRefused)
                outcome = "REFUSED" if refused else "CONFIRMED"
                conf_type = confirmation.event_type
                detail = confirmation.payload.detail if refused else ""
        finally:
            self._waiters.pop(command_id, None)

        async def record(ctx: Context) -> None:
            await self.audit(ctx, actor, action, outcome, {"command_id": str(command_id), "confirmation": conf_type},
                             command_id)

        await self.transact(record)
        result = ControlResult(action=action, status=outcome, command_id=str(command_id), confirmation=conf_type,
                               detail=detail)
        if outcome == "TIMEOUT":
            return JSONResponse(result.model_dump(), status_code=status.HTTP_504_GATEWAY_TIMEOUT)
        if outcome == "REFUSED":
            return JSONResponse(result.model_dump(), status_code=status.HTTP_409_CONFLICT)
        return result

    async def guarded(self, command_cls: type[Payload], action: str, actor: str, body: ConfirmableRequest,
                      warning: str | None, **fields: Any) -> Any:
        """Run a control; a dangerous one (``warning`` set) only on the second call with its token."""
        if warning is not None:
            params = {k: (v.value if hasattr(v, "value") else v) for k, v in fields.items()}
            first = await self.confirm_step(actor, action, body.confirmation_token, params, warning)
            if first is not None:
                return first
        return await self.control(command_cls, action, actor, body.reason, **fields)

    async def confirm_step(self, actor: str, action: str, token: str | None, params: dict[str, Any],
                           warning: str, *, phrase: str | None = None, pin_required: bool = False) -> Any:
        """First call (no token): a 202 with the warning and a single-use token. Second call: the token is
        spent (None returned: go ahead) or refused with 409."""
        ttl = self.settings.confirmation_ttl_s
        if token is None:
            async def mint(ctx: Context) -> tuple[str, datetime]:
                minted, expires = await confirm.issue(ctx.conn, actor=actor, action=action, params=params,
                                                      now=ctx.clock.now(), ttl_s=ttl)
                await self.audit(ctx, actor, action, "PENDING_CONFIRM", {"params": params, "warning": warning},
                                 uuid.uuid4())
                return minted, expires

            minted, expires = await self.transact(mint)
            return JSONResponse(ConfirmationRequired(action=action, warning=warning, confirmation_token=minted,
                                                     expires_at=expires, phrase=phrase, pin_required=pin_required)
                                .model_dump(mode="json"), status_code=202)

        async def spend(ctx: Context) -> bool:
            ok = await confirm.redeem(ctx.conn, token, actor=actor, action=action, params=params,
                                      now=ctx.clock.now())
            if not ok:
                await self.audit(ctx, actor, action, "REFUSED", {"params": params,
                                                                 "why": "invalid confirmation token"}, uuid.uuid4())
            return ok

        if not await self.transact(spend):
            raise Refused(action, "confirmation token invalid, expired, already used, or issued for another request "
                                  "or operator")
        return None

    async def live_confirm(self, actor: str, action: str, body: Any, params: dict[str, Any], phrase: str,
                           conn: AsyncConnection, warning: str) -> tuple[Any, keyvault.PinRecord | None]:
        """Anything live: two steps, the typed phrase and the master PIN. Returns (a response to send back, or
        None to go ahead; the PIN record). Phrase and PIN are checked before the token is spent."""
        record = await queries.pin_record(conn)
        if record is None:
            raise Refused(action, "set the master PIN first (POST /admin/master-pin)")
        if body.confirmation_token is not None:
            if body.confirmation_phrase != phrase:
                raise invalid("confirmation_phrase", f"type the confirmation phrase exactly: {phrase}")
            if body.pin is None or not record.check(body.pin):
                await self.record(actor, action, "REFUSED", {"why": "wrong master PIN"})
                raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong master PIN")
        first = await self.confirm_step(actor, action, body.confirmation_token, params,
                                        f"{warning} To confirm, send the token with confirmation_phrase = "
                                        f"\"{phrase}\" and the master PIN.", phrase=phrase, pin_required=True)
        return first, record

    async def record(self, actor: str, action: str, outcome: str, details: dict[str, Any]) -> None:
        """An audit row on its own (something refused or done without a command)."""
        async def write(ctx: Context) -> None:
            await self.audit(ctx, actor, action, outcome, details, uuid.uuid4())

        await self.transact(write)

    async def audit(self, ctx: Context, actor: str, action: str, outcome: str, details: dict[str, Any],
                    command_id: uuid.UUID) -> None:
        await record_audit(ctx, actor=actor, action=action, mode=self.settings.trading_mode.value,
                           risk_profile=await queries.risk_profile(ctx.conn, self.settings.risk_profile.value),
                           status=outcome, details=details, key=command_id, chain_key=self.settings.chain_key)
