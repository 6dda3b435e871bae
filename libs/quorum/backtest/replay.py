"""Deterministic replay and audit of a recorded session (``quorum replay``): the stored candles of a running
or finished system go through the runner again, and every decision, order, fill and ledger balance is compared
with what the services recorded. On a correct system there is no difference.

Each candle is decided with the configuration its recorded decision was made with (``decisions.configuration_id``:
an operator may have approved an optimizer configuration during the session): the runner switches the council's
settings where the recorded ones switched; and with the risk profile its decision saw (``decisions.risk_profile``):
an operator's change of profile is applied again, as a ``SetRiskProfile`` settled just before that candle."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from quorum.backtest.config import RunnerConfig
from quorum.backtest.data import stored_candles
from quorum.backtest.runner import Recorder, Runner
from quorum.council.engine import SymbolControl
from quorum.db.tables import configurations, decisions, fills, ledger_balances, orders, predictions
from quorum.domain.models import MODELS, Predictor
from quorum.events.control import SetCouncilMode, SetRiskProfile
from quorum.events.fills import OrderFilled
from quorum.events.market_data import CandleClosed
from quorum.events.orders import OrderUpdated, SubmitOrder
from quorum.events.signals import DecisionMade
from quorum.times import candle_close
from quorum.types import CouncilMode, RiskProfile

REPLAY = "SYSTEM:replay"

Row = dict[str, Any]
KEYS = {"decisions": ("exchange", "symbol", "timeframe", "ts"), "orders": ("client_order_id",),
        "fills": ("fill_id",), "balances": ("account",)}


@dataclass(frozen=True)
class Range:
    start: datetime | None = None
    end: datetime | None = None  # inclusive, candle open times
    symbols: tuple[str, ...] = ()
    timeframe: str | None = None


def _norm(value: Any) -> Any:
    """Compared as values: 1.50 and 1.5 are the same amount, a time is its ISO form."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral_value() else str(value.normalize())
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if hasattr(value, "value"):
        return value.value
    return value


def _rows(items: Iterable[Mapping[str, Any]]) -> list[Row]:
    return [{k: _norm(v) for k, v in item.items()} for item in items]


def from_run(recorder: Recorder, runner: Runner) -> dict[str, list[Row]]:
    """What the runner decided, ordered and filled, shaped like the services' tables."""
    decided = [{"exchange": d.payload.exchange, "symbol": d.payload.symbol, "timeframe": d.payload.timeframe,
                "ts": d.payload.ts, "decision_id": d.event_id, "action": d.payload.action, "intent": d.payload.intent,
                "fraction": d.payload.fraction, "regime": d.payload.regime} for d in recorder.of(DecisionMade)]
    final: dict[str, OrderUpdated] = {}
    for u in recorder.of(OrderUpdated):
        final[u.payload.client_order_id] = u.payload
    submitted = {s.payload.client_order_id: s.payload for s in recorder.of(SubmitOrder)}
    placed = [{"client_order_id": coid, "side": o.side, "quantity": o.quantity,
               "status": final[coid].status if coid in final else "SUBMITTED",
               "filled_quantity": final[coid].filled_quantity if coid in final else Decimal(0)}
              for coid, o in submitted.items()]
    for coid, u in final.items():  # orders the OMS refused before they reached the venue
        if coid not in submitted:
            placed.append({"client_order_id": coid, "side": u.side, "quantity": u.quantity, "status": u.status,
                           "filled_quantity": u.filled_quantity})
    filled = [{"fill_id": f.payload.fill_id, "client_order_id": f.payload.client_order_id, "side": f.payload.side,
               "price": f.payload.price, "quantity": f.payload.quantity, "ts": f.payload.ts, "fee": f.payload.fee,
               "fee_currency": f.payload.fee_currency} for f in recorder.of(OrderFilled)]
    balances = [{"account": a, "amount": v} for a, v in runner.ledger_book.balances.items()]
    return {"decisions": _rows(decided), "orders": _rows(placed), "fills": _rows(filled), "balances": _rows(balances)}


@dataclass(frozen=True)
class Control:
    """A symbol's council mode as its recorded decision shows it: the Solo strategy (Solo mode), the threshold
    (Council mode)."""

    mode: CouncilMode
    solo_strategy: str | None = None
    threshold: float | None = None

    @classmethod
    def of(cls, mode: str, threshold: float, reason_codes: Iterable[str]) -> Control:
        m = CouncilMode(mode)
        solo = next((c.removeprefix("SOLO:") for c in reason_codes if c.startswith("SOLO:")), None)
        return cls(m, solo if m is CouncilMode.SOLO else None, threshold if m is CouncilMode.COUNCIL else None)

    def differs(self, current: SymbolControl) -> bool:
        return (self.mode is not current.mode or (self.solo_strategy is not None
                                                  and self.solo_strategy != current.solo_strategy)
                or (self.threshold is not None and self.threshold != current.threshold))


@dataclass(frozen=True)
class Configurations:
    """Which optimizer configuration each recorded decision was made with (by candle key; absent or None: the
    services' settings) and those configurations' council overrides; which model predicted each candle
    (``models``: the predictions' ``name@version``) and those models (``predictors``; a built-in one needs none)."""

    by_candle: dict[tuple[Any, ...], UUID | None] = field(default_factory=dict)
    overrides: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    models: dict[tuple[Any, ...], str] = field(default_factory=dict)
    predictors: dict[str, Predictor] = field(default_factory=dict)
    profiles: dict[tuple[Any, ...], str] = field(default_factory=dict)  # the risk profile each decision saw
    controls: dict[tuple[Any, ...], Control] = field(default_factory=dict)  # the council mode each decision saw

    def trained_models(self) -> set[str]:
        """The recorded ``name@version`` tags that are not built-in models (they come from the registry)."""
        return {m for m in self.models.values() if _builtin(m) is None}

    def predictor_for(self, tag: str) -> Predictor:
        found = _builtin(tag) or self.predictors.get(tag)
        if found is None:
            raise LookupError(f"the recorded model {tag} is not in the registry the replay reads")
        return found

    def config_for(self, base: RunnerConfig, config_id: UUID | None) -> RunnerConfig:
        """``base`` deciding as the council did with ``config_id``: its settings plus that row's overrides."""
        if config_id is None:
            return base
        council = RunnerConfig.from_env(council=self.overrides[config_id]).council
        return replace(base, council=council)


def _builtin(tag: str) -> Predictor | None:
    name, _, version = tag.partition("@")
    return MODELS.get(name, {}).get(version)


def _decided(stream: list[CandleClosed], found: list[Row]) -> list[CandleClosed]:
    """The candles up to each series' last recorded decision: on a running stack the newest candles may still be
    on their way through the services (stored, not decided yet); they are not compared."""
    newest: dict[tuple[str, str, str], datetime] = {}
    for r in found:
        key = (r["exchange"], r["symbol"], r["timeframe"])
        newest[key] = max(r["ts"], newest.get(key, r["ts"]))
    return [c for c in stream if (at := newest.get((c.exchange, c.symbol, c.timeframe))) is not None and c.ts <= at]


async def recorded(conn: AsyncConnection, rng: Range) -> tuple[list[CandleClosed], dict[str, list[Row]],
                                                               Configurations]:
    """The stored candles of ``rng``, what the services recorded for them and the configurations they decided
    with."""
    stream = await stored_candles(conn, start=rng.start, end=rng.end, symbols=rng.symbols, timeframe=rng.timeframe)
    series = {(c.exchange, c.symbol, c.timeframe) for c in stream}
    first, last = (stream[0].ts, stream[-1].ts) if stream else (None, None)
    dq = select(decisions.c.exchange, decisions.c.symbol, decisions.c.timeframe, decisions.c.ts,
                decisions.c.decision_id, decisions.c.action, decisions.c.intent, decisions.c.fraction,
                decisions.c.regime, decisions.c.risk_profile, decisions.c.mode, decisions.c.threshold,
                decisions.c.reason_codes, decisions.c.configuration_id)
    found = [dict(r._mapping) for r in (await conn.execute(dq)).all()
             if (r.exchange, r.symbol, r.timeframe) in series and first is not None and first <= r.ts <= last]
    stream = _decided(stream, found)
    profiles = {(r["exchange"], r["symbol"], r["timeframe"], r["ts"]): r.pop("risk_profile") for r in found}
    controls = {(r["exchange"], r["symbol"], r["timeframe"], r["ts"]):
                Control.of(r.pop("mode"), r.pop("threshold"), r.pop("reason_codes")) for r in found}
    used = {(r["exchange"], r["symbol"], r["timeframe"], r["ts"]): r.pop("configuration_id") for r in found}
    wanted = {v for v in used.values() if v is not None}
    rows = (await conn.execute(select(configurations.c.id, configurations.c.overrides)
                               .where(configurations.c.id.in_(wanted)))).all() if wanted else []
    pq = select(predictions.c.exchange, predictions.c.symbol, predictions.c.timeframe, predictions.c.ts,
                predictions.c.model_version)
    predicted = {(r.exchange, r.symbol, r.timeframe, r.ts): r.model_version for r in (await conn.execute(pq)).all()
                 if (r.exchange, r.symbol, r.timeframe) in series and first is not None and first <= r.ts <= last}
    configs = Configurations({k: v for k, v in used.items() if v is not None}, {r.id: r.overrides for r in rows},
                             predicted, profiles=profiles, controls=controls)
    ids = {r["decision_id"] for r in found}
    oq = select(orders.c.client_order_id, orders.c.decision_id, orders.c.side, orders.c.quantity, orders.c.status,
                orders.c.filled_quantity, orders.c.symbol, orders.c.reference_ts)
    placed = [r for r in (await conn.execute(oq)).all() if r.decision_id in ids or (
        r.decision_id is None and any(r.symbol == s[1] for s in series) and first is not None
        and r.reference_ts is not None and first <= r.reference_ts)]
    coids = {r.client_order_id for r in placed}
    fq = select(fills.c.fill_id, fills.c.client_order_id, fills.c.side, fills.c.price, fills.c.quantity, fills.c.ts,
                fills.c.fee, fills.c.fee_currency)
    cutoff = max((candle_close(c.ts, c.timeframe) for c in stream), default=None)  # fills of undecided candles: out
    filled = [r._mapping for r in (await conn.execute(fq)).all()
              if r.client_order_id in coids and cutoff is not None and r.ts <= cutoff]
    balances = [r._mapping for r in (await conn.execute(select(ledger_balances.c.account, ledger_balances.c.amount)))]
    order_rows = [{k: v for k, v in r._mapping.items() if k not in ("decision_id", "symbol", "reference_ts")}
                  for r in placed]
    return stream, {"decisions": _rows(found), "orders": _rows(order_rows), "fills": _rows(filled),
                    "balances": _rows(balances)}, configs


def differences(recorded_rows: dict[str, list[Row]], replayed: dict[str, list[Row]]) -> list[dict[str, Any]]:
    """Every row that is missing on one side or differs, by its natural key."""
    out: list[dict[str, Any]] = []
    for kind, key in KEYS.items():
        mine = {tuple(str(r[k]) for k in key): r for r in recorded_rows.get(kind, [])}
        theirs = {tuple(str(r[k]) for k in key): r for r in replayed.get(kind, [])}
        for k in sorted(set(mine) | set(theirs)):
            a, b = mine.get(k), theirs.get(k)
            if a != b:
                fields = sorted(f for f in set(a or {}) | set(b or {}) if (a or {}).get(f) != (b or {}).get(f))
                out.append({"kind": kind, "key": list(k), "fields": fields, "recorded": a, "replayed": b})
    return out


def as_recorded(runner: Runner, stream: Iterable[CandleClosed], configs: Configurations) -> Iterator[CandleClosed]:
    """``stream`` for ``runner.run``, switching the runner to the configuration recorded for each candle's decision
    before the candle is fed."""
    base, current, model = runner.config, None, None
    for candle in stream:
        key = (candle.exchange, candle.symbol, candle.timeframe, candle.ts)
        profile = configs.profiles.get(key)
        if profile is not None and profile != (runner.council_book.profile or runner.config.council.default_profile):
            # the operator changed the risk profile before this candle was decided: change it here too
            runner.command(SetRiskProfile(actor=REPLAY, reason="as recorded", profile=RiskProfile(profile)),
                           candle_close(candle.ts, candle.timeframe), ("replay-profile", *key, profile))
        wanted = configs.by_candle.get(key)
        if wanted != current:
            runner.config, current = configs.config_for(base, wanted), wanted
        control = configs.controls.get(key)
        now = runner.council_book.control(candle.exchange, candle.symbol, runner.config.council.default_control)
        if control is not None and control.differs(now):
            # the operator set this symbol's council mode before this candle was decided: set it here too
            runner.command(SetCouncilMode(actor=REPLAY, reason="as recorded", exchange=candle.exchange,
                                          symbol=candle.symbol, mode=control.mode, threshold=control.threshold,
                                          solo_strategy=control.solo_strategy),
                           candle_close(candle.ts, candle.timeframe), ("replay-mode", *key))
        tag = configs.models.get(key)
        if tag is not None and tag != model:
            runner.predictor, model = configs.predictor_for(tag), tag
        yield candle


def _unrecorded_regimes(recorded_rows: dict[str, list[Row]], replayed: dict[str, list[Row]]) -> dict[str, list[Row]]:
    """Decisions stored before the council recorded regimes (migration 0015) have none: the replay's regime is
    not compared for them, so an older session still replays with no difference."""
    key = KEYS["decisions"]
    unrecorded = {tuple(str(r[k]) for k in key) for r in recorded_rows.get("decisions", []) if r.get("regime") is None}
    if not unrecorded:
        return replayed
    return {**replayed, "decisions": [{**r, "regime": None} if tuple(str(r[k]) for k in key) in unrecorded else r
                                      for r in replayed.get("decisions", [])]}


def replay(stream: list[CandleClosed], recorded_rows: dict[str, list[Row]], config: RunnerConfig,
           say: Callable[[str], None] = print, configs: Configurations | None = None) -> int:
    """Run, compare, print each difference as a JSON line and end with the summary line; returns N."""
    runner = Runner(config)
    replayed = from_run(runner.run(as_recorded(runner, stream, configs or Configurations())), runner)
    found = differences(recorded_rows, _unrecorded_regimes(recorded_rows, replayed))
    for d in found:
        say(json.dumps(d, default=str, sort_keys=True))
    compared = {"candles": len(stream), **{k: len(v) for k, v in recorded_rows.items()}}
    say(json.dumps({"compared": compared, "differences": len(found)}, sort_keys=True))
    return len(found)
