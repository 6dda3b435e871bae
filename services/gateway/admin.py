"""Gateway routes for administration and the rest of the control plane: API tokens, the master PIN and
encrypted exchange keys, audit verification and export, panic, model selection, training, service shutdown,
and the paper/live switch (refused at runtime)."""

import csv
import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Query, status
from fastapi.responses import JSONResponse, StreamingResponse
from quorum import audit_chain, keyvault
from quorum.db.tables import api_tokens, audit_log, exchange_keys, master_pin
from quorum.events.control import (
    AuthorizeRouting,
    CloseAllPositions,
    HaltTrading,
    SelectModel,
    ShutdownService,
    StartTraining,
)
from quorum.runtime.handling import Context
from quorum.types import TradingMode
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from .auth import new_token, token_hash, token_id
from .http import CONTROL_RESPONSES, Refused, invalid
from .schemas import (
    AuditVerification,
    ControlResult,
    ExchangeKeyOut,
    ExchangeKeyRequest,
    LiveConfirmableRequest,
    MasterPinRequest,
    ModelRequest,
    PanicRequest,
    ServiceRequest,
    TokenCreated,
    TokenOut,
    TokenRequest,
    TradingModeRequest,
    TrainingRequest,
)

PANIC_PHRASE = "SELL EVERYTHING"
PIN_SCOPE = "master"


def register(app: FastAPI, gw: Any) -> None:  # noqa: C901 - one place lists the admin surface
    r = gw.roles
    Reader, Admin, Actor, Conn = r["reader"], r["admin"], r["actor"], r["conn"]
    refused = CONTROL_RESPONSES

    # --- tokens -----------------------------------------------------------------------------------------------
    @app.post("/admin/tokens", response_model=TokenCreated, status_code=201, tags=["admin"])
    async def create_token(who: Admin, body: TokenRequest) -> TokenCreated:
        """Mint a bearer token with a role. The token is shown once; only its SHA-256 is stored."""
        token = new_token()

        async def store(ctx: Context) -> Any:
            row = (await ctx.conn.execute(insert(api_tokens).values(
                token_id=token_id(token), token_hash=token_hash(token), name=body.name, role=body.role,
                created_by=who.actor).returning(api_tokens))).one()
            await gw._audit(ctx, who.actor, "token_create", "CONFIRMED",
                            {"token_id": row.token_id, "name": body.name, "role": body.role}, uuid.uuid4())
            return row

        row = await gw.transact(store)
        return TokenCreated(**TokenOut.model_validate(row).model_dump(), token=token)

    @app.get("/admin/tokens", response_model=list[TokenOut], tags=["admin"])
    async def list_tokens(_: Admin, conn: Conn) -> list[TokenOut]:
        rows = (await conn.execute(select(api_tokens).order_by(api_tokens.c.created_at))).all()
        return [TokenOut.model_validate(x) for x in rows]

    @app.post("/admin/tokens/{token_id_}/revoke", response_model=TokenOut, tags=["admin"],
              responses={404: {"description": "no such token"}})
    async def revoke_token(who: Admin, token_id_: str) -> TokenOut:
        async def revoke(ctx: Context) -> Any:
            row = (await ctx.conn.execute(update(api_tokens).where(api_tokens.c.token_id == token_id_).values(
                revoked_at=ctx.clock.now()).returning(api_tokens))).first()
            if row is not None:
                await gw._audit(ctx, who.actor, "token_revoke", "CONFIRMED", {"token_id": token_id_}, uuid.uuid4())
            return row

        row = await gw.transact(revoke)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no token {token_id_}")
        return TokenOut.model_validate(row)

    # --- master PIN and exchange keys ---------------------------------------------------------------------------
    async def pin_record(conn: Any) -> keyvault.PinRecord | None:
        row = (await conn.execute(select(master_pin).where(master_pin.c.scope == PIN_SCOPE))).first()
        return None if row is None else keyvault.PinRecord(row.salt, row.verifier, row.n, row.r, row.p)

    @app.post("/admin/master-pin", status_code=204, tags=["admin"],
              responses={403: {"description": "wrong current PIN"}, 422: {"description": "weak PIN"}})
    async def set_master_pin(who: Admin, body: MasterPinRequest) -> None:
        """Set the master PIN (its scrypt verifier is stored, never the PIN). Changing it needs the current PIN
        and re-encrypts every stored key under the new one."""
        try:
            new = keyvault.new_pin_record(body.pin, n=gw.settings.pin_scrypt_n)
        except keyvault.PinRefused as exc:
            raise invalid("pin", str(exc)) from None

        async def store(ctx: Context) -> bool:
            old = await pin_record(ctx.conn)
            if old is not None:
                if body.current_pin is None or not old.check(body.current_pin):
                    await gw._audit(ctx, who.actor, "master_pin_change", "REFUSED", {"why": "wrong current PIN"},
                                    uuid.uuid4())
                    return False
                old_key, new_key = old.key(body.current_pin), new.key(body.pin)
                for k in (await ctx.conn.execute(select(exchange_keys))).all():
                    creds = keyvault.unseal(old_key, str(k.key_id), k.nonce, k.ciphertext)
                    nonce, ct = keyvault.seal(new_key, str(k.key_id), creds)
                    await ctx.conn.execute(update(exchange_keys).where(exchange_keys.c.key_id == k.key_id)
                                           .values(nonce=nonce, ciphertext=ct))
            values = {"salt": new.salt, "verifier": new.verifier, "n": new.n, "r": new.r, "p": new.p}
            await ctx.conn.execute(insert(master_pin).values(scope=PIN_SCOPE, **values).on_conflict_do_update(
                index_elements=["scope"], set_=values))
            await gw._audit(ctx, who.actor, "master_pin_set" if old is None else "master_pin_change", "CONFIRMED",
                            {}, uuid.uuid4())
            return True

        if not await gw.transact(store):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "the current PIN is wrong")

    @app.post("/admin/exchange-keys", response_model=ExchangeKeyOut, status_code=201, tags=["admin"],
              responses={202: {"description": "confirm with the token"}, 403: {"description": "wrong PIN"},
                         409: {"model": ControlResult, "description": "the key may withdraw, or no master PIN"},
                         502: {"description": "exchange unreachable"}})
    async def register_key(who: Admin, conn: Conn, body: ExchangeKeyRequest) -> Any:
        """Register a live exchange key (two-step; needs the master PIN). The key is checked with the exchange:
        one that may withdraw is refused; where the exchange does not say, the key is stored with a warning.
        Stored AES-256-GCM encrypted; never returned, never logged."""
        fingerprint = hashlib.sha256(f"{body.api_key}\x1f{body.secret}".encode()).hexdigest()
        params = {"exchange": body.exchange, "label": body.label, "key": fingerprint}
        phrase = f"REGISTER {body.exchange.upper()} KEY"
        first, record = await live_confirm(who.actor, "exchange_key_register", body, params, phrase, conn,
                                           f"Registering a live {body.exchange} key lets Quorum trade real money "
                                           "once live trading is enabled.")
        if first is not None:
            return first
        assert record is not None and body.pin is not None
        can_withdraw = await gw.key_can_withdraw(body.exchange, body.api_key, body.secret)
        if can_withdraw:
            raise Refused("exchange_key_register", "this key has withdrawal permission: create a trade-only key (no "
                                                   "withdrawals) and register that one")
        key_id = uuid.uuid4()
        nonce, ct = keyvault.seal(record.key(body.pin), str(key_id),
                                  keyvault.Credentials(body.api_key, body.secret))
        warning = None if can_withdraw is False else (
            f"{body.exchange} does not say whether this key may withdraw: make sure it cannot")

        async def store(ctx: Context) -> Any:
            row = (await ctx.conn.execute(insert(exchange_keys).values(
                key_id=key_id, exchange=body.exchange, label=body.label, api_key_hint=body.api_key[-4:],
                ciphertext=ct, nonce=nonce, can_withdraw=can_withdraw, created_by=who.actor,
            ).returning(exchange_keys))).one()
            await gw._audit(ctx, who.actor, "exchange_key_register", "CONFIRMED",
                            {"key_id": str(key_id), "exchange": body.exchange, "label": body.label,
                             "can_withdraw": can_withdraw}, uuid.uuid4())
            return row

        row = await gw.transact(store)
        return ExchangeKeyOut(**ExchangeKeyOut.model_validate(row).model_dump(exclude={"warning"}), warning=warning)

    @app.get("/admin/exchange-keys", response_model=list[ExchangeKeyOut], tags=["admin"])
    async def list_keys(_: Admin, conn: Conn) -> list[ExchangeKeyOut]:
        """What is registered: exchange, label, the key's last 4 characters, permissions. Never key material."""
        rows = (await conn.execute(select(exchange_keys).order_by(exchange_keys.c.created_at))).all()
        return [ExchangeKeyOut.model_validate(x) for x in rows]

    async def live_confirm(actor: str, action: str, body: Any, params: dict[str, Any], phrase: str, conn: Any,
                           warning: str) -> tuple[Any, keyvault.PinRecord | None]:
        """Anything live: two steps, the typed phrase and the master PIN. Returns (a response to send back, or
        None to go ahead; the PIN record). Phrase and PIN are checked before the token is spent."""
        record = await pin_record(conn)
        if record is None:
            raise Refused(action, "set the master PIN first (POST /admin/master-pin)")
        if body.confirmation_token is not None:
            if body.confirmation_phrase != phrase:
                raise invalid("confirmation_phrase", f"type the confirmation phrase exactly: {phrase}")
            if body.pin is None or not record.check(body.pin):
                async def refuse(ctx: Context) -> None:
                    await gw._audit(ctx, actor, action, "REFUSED", {"why": "wrong master PIN"}, uuid.uuid4())

                await gw.transact(refuse)
                raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong master PIN")
        first = await gw.confirm_step(actor, action, body.confirmation_token, params,
                                      f"{warning} To confirm, send the token with confirmation_phrase = "
                                      f"\"{phrase}\" and the master PIN.")
        return first, record

    @app.post("/controls/routing/authorize", response_model=ControlResult, tags=["controls"],
              responses={202: {"description": "live: confirm with the token, the phrase and the PIN"}, **refused})
    async def authorize_routing(actor: Actor, conn: Conn, body: LiveConfirmableRequest | None = None) -> Any:
        """Connect order routing (the master toggle). In live mode: two steps, the typed phrase and the PIN."""
        body = body or LiveConfirmableRequest()
        if gw.settings.trading_mode is TradingMode.LIVE:
            first, _ = await live_confirm(actor, "routing_authorize", body, {"mode": "LIVE"}, "ENABLE LIVE TRADING",
                                          conn, "Routing orders in LIVE mode trades real money.")
            if first is not None:
                return first
        return await gw.control(AuthorizeRouting, "routing_authorize", actor, body.reason)

    # --- audit ---------------------------------------------------------------------------------------------------
    async def audit_rows(conn: Any) -> AsyncIterator[dict[str, Any]]:
        result = await conn.stream(select(audit_log).order_by(audit_log.c.id))
        async for row in result:
            yield {**row._mapping, "event_id": str(row.event_id)}

    @app.get("/audit/verify", response_model=AuditVerification, tags=["read"])
    async def verify_audit(_: Reader, conn: Conn) -> AuditVerification:
        """Re-walk the audit trail's hash chain: any edited, removed or reordered row is reported."""
        rows = [x async for x in audit_rows(conn)]
        problems = audit_chain.verify(rows, key=gw.settings.chain_key.get_secret_value().encode())
        return AuditVerification(ok=not problems, rows=len(rows), problems=problems)

    @app.get("/audit/export", tags=["read"], response_class=StreamingResponse,
             responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
    async def export_audit(_: Reader, fmt: str = Query("jsonl", alias="format", pattern="^(csv|jsonl)$")) -> Any:
        """The whole audit trail, oldest first, as CSV or JSON lines (hashes included, for offline checks)."""
        fields = ["id", *audit_chain.FIELDS, "prev_hash", "hash"]

        async def lines() -> AsyncIterator[str]:
            async with gw.engine.connect() as conn:
                if fmt == "csv":
                    yield ",".join(fields) + "\r\n"
                async for row in audit_rows(conn):
                    out = {k: (row[k].isoformat() if k == "ts" else row[k]) for k in fields}
                    if fmt == "jsonl":
                        yield json.dumps(out, sort_keys=True, default=str) + "\n"
                    else:
                        buf = io.StringIO()
                        csv.writer(buf).writerow([json.dumps(out[k], sort_keys=True) if k == "details" else out[k]
                                                  for k in fields])
                        yield buf.getvalue()

        media = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return StreamingResponse(lines(), media_type=media,
                                 headers={"Content-Disposition": f"attachment; filename=audit.{fmt}"})

    # --- the rest of the control plane --------------------------------------------------------------------------
    @app.post("/controls/panic", response_model=ControlResult, tags=["controls"],
              responses={202: {"description": "confirm with the token and the phrase"}, **refused})
    async def panic(actor: Actor, body: PanicRequest | None = None) -> Any:
        """Emergency liquidation: halt, cancel every order and market-sell every position. Two steps; the second
        must also type the confirmation phrase."""
        body = body or PanicRequest()
        if body.confirmation_token is not None and body.confirmation_phrase != PANIC_PHRASE:
            raise invalid("confirmation_phrase",  # checked first: a typo does not burn the token
                          f"type the confirmation phrase exactly: {PANIC_PHRASE}")
        first = await gw.confirm_step(actor, "panic", body.confirmation_token, {},
                                      f"PANIC sells every position at market and halts trading. To confirm, send "
                                      f"the token with confirmation_phrase = \"{PANIC_PHRASE}\".")
        if first is not None:
            return first
        halted = await gw.control(HaltTrading, "panic_halt", actor, body.reason or "panic")
        if isinstance(halted, JSONResponse):
            return halted
        return await gw.control(CloseAllPositions, "panic_close_all", actor, body.reason or "panic")

    @app.post("/controls/trading-mode", response_model=ControlResult, tags=["controls"], responses=refused)
    async def switch_trading_mode(actor: Actor, body: TradingModeRequest) -> Any:
        """Paper <-> live is never switched at runtime: restart with the live configuration and an unlocked key."""
        async def record(ctx: Context) -> None:
            await gw._audit(ctx, actor, "trading_mode_switch", "REFUSED", {"requested": body.mode}, uuid.uuid4())

        await gw.transact(record)
        result = ControlResult(action="trading_mode_switch", status="REFUSED", command_id="",
                               detail="switching paper/live needs a restart with the live configuration and an "
                                      "unlocked exchange key; it is refused at runtime")
        return JSONResponse(result.model_dump(), status_code=status.HTTP_409_CONFLICT)

    @app.post("/controls/model/select", response_model=ControlResult, tags=["controls"], responses=refused)
    async def select_model(actor: Actor, body: ModelRequest) -> Any:
        """Select (promote) the model version inference serves; refused for an unregistered one."""
        return await gw.control(SelectModel, "model_select", actor, body.reason, model_name=body.model_name,
                                version=body.version)

    @app.post("/controls/model/train", response_model=ControlResult, tags=["controls"], responses=refused)
    async def train_model(actor: Actor, body: TrainingRequest) -> Any:
        """Ask for a training run (inference answers; this build refuses with TRAINING_UNAVAILABLE)."""
        return await gw.control(StartTraining, "model_train", actor, body.reason, model_name=body.model_name)

    @app.post("/controls/shutdown", response_model=ControlResult, tags=["controls"], responses=refused)
    async def shutdown(actor: Actor, body: ServiceRequest) -> Any:
        """Stop one service gracefully (it confirms, drains and exits; its supervisor may restart it)."""
        return await gw.control(ShutdownService, "service_shutdown", actor, body.reason, service=body.service)
