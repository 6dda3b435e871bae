"""The common envelope and the payload base every event and command derives from.

An event names something that happened (past tense: ``CandleClosed``); a command asks the owning service to
do something (imperative: ``HaltTrading``). Both travel in the same ``Envelope``; the payload class decides
the subject (see ``quorum.subjects``) and the schema version.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from quorum.clock import Clock
from quorum.ids import stable_uuid
from quorum.types import Exchange, Symbol, Timeframe

_REGISTRY: dict[str, type[Payload]] = {}

EVERY_SERVICE = "*"
"""A producer entry meaning "every service" (what ``quorum.runtime`` emits on behalf of any of them)."""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Frozen(BaseModel):
    """Immutable, strict-shape model: unknown fields are an error, never silently dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Payload(Frozen):
    """Base of all event and command payloads.

    Subclasses set ``FAMILY`` (first subject token after ``quorum``) and ``ROUTING`` (payload fields that
    become subject tokens, in order). ``KIND`` separates facts from requests. ``PRODUCERS`` names the
    services that emit the type (or ``EVERY_SERVICE``), so the event catalogue in docs/architecture.md is
    generated from code (``python -m quorum.docs_gen``) and a test keeps it declared on every type.
    """

    FAMILY: ClassVar[str]
    ROUTING: ClassVar[tuple[str, ...]] = ()
    PRODUCERS: ClassVar[tuple[str, ...]] = ()
    SCHEMA_VERSION: ClassVar[int] = 1
    KIND: ClassVar[Literal["event", "command"]] = "event"

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Register concrete payload types (pydantic calls this once the fields are known)."""
        super().__pydantic_init_subclass__(**kwargs)
        if "FAMILY" not in cls.__dict__:
            return  # an intermediate base class
        name = cls.event_type()
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise TypeError(f"event type {name!r} registered twice")
        unknown = [k for k in cls.ROUTING if k not in cls.model_fields]
        if unknown:
            raise TypeError(f"{name}: routing keys {unknown} are not fields")
        _REGISTRY[name] = cls

    @classmethod
    def event_type(cls) -> str:
        return cls.__name__

    @classmethod
    def topic(cls) -> str:
        """The type's subject token: ``CandleClosed`` -> ``candle_closed``."""
        return _snake(cls.__name__)

    def routing_values(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in self.ROUTING}


class SeriesPoint(Payload):
    """Base for payloads about one point of a market series (a candle and what is derived from it)."""

    exchange: Exchange
    symbol: Symbol
    timeframe: Timeframe
    ts: AwareDatetime = Field(description="open time of the candle this is about")


P = TypeVar("P", bound=Payload)


class Envelope(Frozen, Generic[P]):
    """Metadata common to every message on the bus; ``payload`` carries the typed body."""

    event_id: UUID
    event_type: str
    schema_version: int
    event_time: AwareDatetime = Field(description="when it happened in the market/domain")
    ingest_time: AwareDatetime = Field(description="when Quorum created this message")
    correlation_id: UUID = Field(description="id of the first message of the causal chain")
    causation_id: UUID | None = Field(default=None, description="id of the message that caused this one")
    origin_time: AwareDatetime | None = Field(
        default=None, description="ingest time of the chain's first message: where end-to-end latency starts")
    source: str = Field(description="producing service")
    payload: P

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


_ENVELOPE_TYPES: dict[type[Payload], tuple[type[Envelope[Any]], str, int]] = {}
"""Per payload type: its ``Envelope[type]`` (pydantic's parametrization lookup took a sixth of an envelope's
cost), event type and schema version."""


def new_envelope(
    payload: P,
    *,
    clock: Clock,
    source: str,
    event_time: datetime | None = None,
    caused_by: Envelope[Any] | None = None,
    key: object = None,
) -> Envelope[P]:
    """Wrap a payload. The id is derived from the cause (or ``key``) so a re-run produces the same id.

    ``key`` must be given when there is no cause: it is what makes the message unique (for a replayed candle,
    its exchange/symbol/timeframe/open time).
    """
    if caused_by is None and key is None:
        raise ValueError("an envelope needs either a cause or a deterministic key")
    kind = type(payload)
    known = _ENVELOPE_TYPES.get(kind)
    if known is None:
        typed = Envelope[kind]  # type: ignore[valid-type]
        known = _ENVELOPE_TYPES[kind] = (typed, kind.event_type(), kind.SCHEMA_VERSION)
    envelope, etype, schema_version = known
    if caused_by is not None:
        event_id = stable_uuid(caused_by.event_id, etype, "" if key is None else key)
        correlation_id = caused_by.correlation_id
        causation_id = caused_by.event_id
        origin_time = caused_by.origin_time or caused_by.ingest_time
    else:
        event_id = stable_uuid(etype, key)
        correlation_id = event_id
        causation_id = None
        origin_time = None
    now = clock.now()
    return envelope(  # type: ignore[no-any-return]
        event_id=event_id,
        event_type=etype,
        schema_version=schema_version,
        event_time=event_time or now,
        ingest_time=now,
        correlation_id=correlation_id,
        causation_id=causation_id,
        origin_time=origin_time or now,
        source=source,
        payload=payload,
    )


class UndecodableMessage(ValueError):
    """Bytes on the bus that are not a valid Quorum message; the consumer dead-letters them."""


def payload_class(event_type: str) -> type[Payload]:
    try:
        return _REGISTRY[event_type]
    except KeyError:
        raise UndecodableMessage(f"unknown event type {event_type!r}") from None


def decode(data: bytes) -> Envelope[Any]:
    """Parse and validate a message; any defect raises ``UndecodableMessage`` with the reason."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UndecodableMessage(f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("event_type"), str):
        raise UndecodableMessage("missing event_type")
    cls = payload_class(raw["event_type"])
    if raw.get("schema_version") != cls.SCHEMA_VERSION:
        raise UndecodableMessage(
            f"{cls.event_type()} schema version {raw.get('schema_version')!r} unsupported "
            f"(this build reads {cls.SCHEMA_VERSION})"
        )
    try:
        return Envelope[cls].model_validate(raw)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise UndecodableMessage(f"invalid {cls.event_type()}: {exc}") from None


def registered_types() -> dict[str, type[Payload]]:
    return dict(_REGISTRY)


Money = Decimal
