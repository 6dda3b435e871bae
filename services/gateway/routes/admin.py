"""Administration: API tokens, the master PIN, and encrypted exchange keys (checked with the exchange, never
returned)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, status
from quorum import keyvault
from quorum.db.tables import api_tokens, exchange_keys, master_pin
from quorum.runtime.handling import Context
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from .. import queries
from ..auth import new_token, token_hash, token_id
from ..deps import Admin, Cmd, Conn, Settings
from ..http import Refused, invalid
from ..schemas import (
    ControlResult,
    ExchangeKeyOut,
    ExchangeKeyRequest,
    MasterPinRequest,
    TokenCreated,
    TokenOut,
    TokenRequest,
)
from ..settings import GatewaySettings

router = APIRouter(tags=["admin"])


# --- tokens -----------------------------------------------------------------------------------------------
@router.post("/admin/tokens", response_model=TokenCreated, status_code=201)
async def create_token(who: Admin, commands: Cmd, body: TokenRequest) -> TokenCreated:
    """Mint a bearer token with a role. The token is shown once; only its SHA-256 is stored."""
    token = new_token()

    async def store(ctx: Context) -> Any:
        row = (await ctx.conn.execute(insert(api_tokens).values(
            token_id=token_id(token), token_hash=token_hash(token), name=body.name, role=body.role,
            created_by=who.actor).returning(api_tokens))).one()
        await commands.audit(ctx, who.actor, "token_create", "CONFIRMED",
                             {"token_id": row.token_id, "name": body.name, "role": body.role}, uuid.uuid4())
        return row

    row = await commands.transact(store)
    return TokenCreated(**TokenOut.model_validate(row).model_dump(), token=token)


@router.get("/admin/tokens", response_model=list[TokenOut])
async def list_tokens(_: Admin, conn: Conn) -> list[TokenOut]:
    return await queries.token_list(conn)


@router.post("/admin/tokens/{token_id_}/revoke", response_model=TokenOut,
             responses={404: {"description": "no such token"}})
async def revoke_token(who: Admin, commands: Cmd, token_id_: str) -> TokenOut:
    async def revoke(ctx: Context) -> Any:
        row = (await ctx.conn.execute(update(api_tokens).where(api_tokens.c.token_id == token_id_).values(
            revoked_at=ctx.clock.now()).returning(api_tokens))).first()
        if row is not None:
            await commands.audit(ctx, who.actor, "token_revoke", "CONFIRMED", {"token_id": token_id_}, uuid.uuid4())
        return row

    row = await commands.transact(revoke)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no token {token_id_}")
    return TokenOut.model_validate(row)


# --- master PIN and exchange keys ---------------------------------------------------------------------------
@router.post("/admin/master-pin", status_code=204,
             responses={403: {"description": "wrong current PIN"}, 422: {"description": "weak PIN"}})
async def set_master_pin(who: Admin, commands: Cmd, settings: Settings, body: MasterPinRequest) -> None:
    """Set the master PIN (its scrypt verifier is stored, never the PIN). Changing it needs the current PIN
    and re-encrypts every stored key under the new one."""
    try:
        new = keyvault.new_pin_record(body.pin, n=settings.pin_scrypt_n)
    except keyvault.PinRefused as exc:
        raise invalid("pin", str(exc)) from None

    async def store(ctx: Context) -> bool:
        old = await queries.pin_record(ctx.conn)
        if old is not None:
            if body.current_pin is None or not old.check(body.current_pin):
                await commands.audit(ctx, who.actor, "master_pin_change", "REFUSED", {"why": "wrong current PIN"},
                                     uuid.uuid4())
                return False
            old_key, new_key = old.key(body.current_pin), new.key(body.pin)
            for k in (await ctx.conn.execute(select(exchange_keys))).all():
                creds = keyvault.unseal(old_key, str(k.key_id), k.nonce, k.ciphertext)
                nonce, ct = keyvault.seal(new_key, str(k.key_id), creds)
                await ctx.conn.execute(update(exchange_keys).where(exchange_keys.c.key_id == k.key_id)
                                       .values(nonce=nonce, ciphertext=ct))
        values = {"salt": new.salt, "verifier": new.verifier, "n": new.n, "r": new.r, "p": new.p}
        await ctx.conn.execute(insert(master_pin).values(scope=queries.PIN_SCOPE, **values).on_conflict_do_update(
            index_elements=["scope"], set_=values))
        await commands.audit(ctx, who.actor, "master_pin_set" if old is None else "master_pin_change", "CONFIRMED",
                             {}, uuid.uuid4())
        return True

    if not await commands.transact(store):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the current PIN is wrong")


@router.post("/admin/exchange-keys", response_model=ExchangeKeyOut, status_code=201,
             responses={202: {"description": "confirm with the token"}, 403: {"description": "wrong PIN"},
                        409: {"model": ControlResult, "description": "the key may withdraw, or no master PIN"},
                        502: {"description": "exchange unreachable"}})
async def register_key(who: Admin, commands: Cmd, settings: Settings, conn: Conn, body: ExchangeKeyRequest) -> Any:
    """Register a live exchange key (two-step; needs the master PIN). The key is checked with the exchange:
    one that may withdraw is refused; where the exchange does not say, the key is stored with a warning.
    Stored AES-256-GCM encrypted; never returned, never logged."""
    fingerprint = hashlib.sha256(f"{body.api_key}\x1f{body.secret}".encode()).hexdigest()
    params = {"exchange": body.exchange, "label": body.label, "key": fingerprint}
    phrase = f"REGISTER {body.exchange.upper()} KEY"
    first, record = await commands.live_confirm(who.actor, "exchange_key_register", body, params, phrase, conn,
                                                f"Registering a live {body.exchange} key lets Quorum trade real "
                                                "money once live trading is enabled.")
    if first is not None:
        return first
    assert record is not None and body.pin is not None
    can_withdraw = await key_can_withdraw(settings, body.exchange, body.api_key, body.secret)
    if can_withdraw:
        raise Refused("exchange_key_register", "this key has withdrawal permission: create a trade-only key (no "
                                               "withdrawals) and register that one")
    key_id = uuid.uuid4()
    nonce, ct = keyvault.seal(record.key(body.pin), str(key_id), keyvault.Credentials(body.api_key, body.secret))
    warning = None if can_withdraw is False else (
        f"{body.exchange} does not say whether this key may withdraw: make sure it cannot")

    async def store(ctx: Context) -> Any:
        row = (await ctx.conn.execute(insert(exchange_keys).values(
            key_id=key_id, exchange=body.exchange, label=body.label, api_key_hint=body.api_key[-4:],
            ciphertext=ct, nonce=nonce, can_withdraw=can_withdraw, created_by=who.actor,
        ).returning(exchange_keys))).one()
        await commands.audit(ctx, who.actor, "exchange_key_register", "CONFIRMED",
                             {"key_id": str(key_id), "exchange": body.exchange, "label": body.label,
                              "can_withdraw": can_withdraw}, uuid.uuid4())
        return row

    row = await commands.transact(store)
    return ExchangeKeyOut(**ExchangeKeyOut.model_validate(row).model_dump(exclude={"warning"}), warning=warning)


@router.get("/admin/exchange-keys", response_model=list[ExchangeKeyOut])
async def list_keys(_: Admin, conn: Conn) -> list[ExchangeKeyOut]:
    """What is registered: exchange, label, the key's last 4 characters, permissions. Never key material."""
    return await queries.key_list(conn)


async def key_can_withdraw(settings: GatewaySettings, exchange: str, api_key: str, secret: str) -> bool | None:
    """Ask the exchange what the key may do (None: it does not say)."""
    from quorum.venues.ccxt_venue import CcxtVenue, live_exchange

    ex = live_exchange(exchange, api_key=api_key, secret=secret, base_url=settings.exchange_base_urls.get(exchange))
    try:
        return await CcxtVenue(ex, enabled=True).can_withdraw()
    except Exception as exc:  # noqa: BLE001 - any exchange failure is a 502 with its class, never the key
        raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                            f"could not check the key with {exchange}: {type(exc).__name__}") from None
    finally:
        await ex.close()
