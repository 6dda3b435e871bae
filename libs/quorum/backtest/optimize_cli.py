"""``quorum optimize``: an Optuna study over the council's settings for one risk profile, scored out of sample
(walk-forward) beside the active configuration on the same candles; prints every trial and the best.

Candles come from files (``--data``, repeatable) or the ``candles`` table, as for ``quorum backtest``. The study
lives in Optuna's RDB storage on the project's database (``--database-url``, else DATABASE_URL or the running
native stack's; schema ``optuna``), so workers on several machines can share it: run each with the same
``--study`` and its own ``--seed``. The best allowed candidate is written to ``configurations``: PROPOSED for an
operator to approve through the gateway (``POST /configurations/{id}/approve``), or, with ``--no-approval``,
ACTIVE at once (audited as SYSTEM) if it scores above the active one. ``--dry-run``: an in-memory study, nothing
read from or written to a database (no live score).

The other settings are ``QUORUM_OPTIMIZER_*`` (live weight, minimum live campaigns, walk-forward windows, ...).

  quorum optimize --data ../shared/data/ohlcv/binance_BTCUSDT_1h.csv --trials 50 --profile LOW
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, TextIO

from quorum.backtest.cli import InputError, add_market_options, load_candles
from quorum.clock import LiveClock


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("optimize", help="search the council's settings for a risk profile (Optuna, out of "
                                               "sample) and propose the best", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_market_options(p, database_help="the project's database: the study's storage, the live score, the "
                                        "configurations row, and the candles without --data (default: DATABASE_URL "
                                        "or the running native stack's)")
    p.add_argument("--trials", type=int, default=None, help="trials to run (QUORUM_OPTIMIZER_TRIALS)")
    p.add_argument("--profile", default=None, choices=["LOW", "MEDIUM", "HIGH"],
                   help="the target risk profile (QUORUM_OPTIMIZER_PROFILE)")
    p.add_argument("--seed", type=int, default=None, help="the sampler's seed (QUORUM_OPTIMIZER_SEED)")
    p.add_argument("--study", default=None, help="the study's name: join it if it exists (default: a new one)")
    p.add_argument("--train-bars", type=int, default=None, help="walk-forward training window, bars")
    p.add_argument("--test-bars", type=int, default=None, help="walk-forward test window, bars")
    p.add_argument("--no-approval", action="store_true",
                   help="make the best candidate ACTIVE at once (audited as SYSTEM) instead of PROPOSED")
    p.add_argument("--dry-run", action="store_true", help="no database: an in-memory study, nothing recorded")
    p.set_defaults(func=cmd_optimize)
    return p


def cmd_optimize(args: argparse.Namespace) -> int:
    try:
        return run(args, sys.stdout, sys.stderr)
    except InputError as exc:
        print(f"quorum optimize: {exc}", file=sys.stderr)
        return 2


def settings_of(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from quorum.backtest.optimize import OptimizerSettings
    from quorum.runtime.settings import explain

    given = {"trials": args.trials, "profile": args.profile, "seed": args.seed, "train_bars": args.train_bars,
             "test_bars": args.test_bars}
    if args.no_approval:
        given["require_approval"] = False
    try:
        return OptimizerSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise InputError(" ".join(explain(OptimizerSettings, exc).split())) from None


def database_url(args: argparse.Namespace) -> str:
    from quorum.runtime.settings import DEV_DATABASE_URL

    return str(args.database_url or os.environ.get("DATABASE_URL", DEV_DATABASE_URL))


def _line(o: Any) -> str:
    e = o.evaluation
    if not e:
        return f"trial {o.number:>4}  {o.state}"
    live = "-" if e.get("live_score") is None else f"{e['live_score']:.3f}"
    head = (f"trial {o.number:>4}  {o.state:<8}  score {e['score']:8.3f}  (backtest {e['backtest_score']:.3f}, "
            f"live {live} x {e['live_weight']:.2f})  drawdown {e['max_drawdown']:.2%} / {e['drawdown_limit']:.2%}  "
            f"fills {e['oos'].get('fills', 0)}")
    return head + (f"  REJECTED: {o.rejected}" if o.rejected else "")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import time

    import optuna

    from quorum.backtest.data import DataError, timeframe_of
    from quorum.backtest.optimize import LiveData, Problem, open_study, params_of, plan_folds, run_study
    from quorum.council.settings import CouncilConfig

    settings = settings_of(args)
    url = None if args.dry_run else database_url(args)
    source = argparse.Namespace(**{**vars(args), "database_url": None if args.data else url})
    loaded, where = load_candles(source)
    try:
        timeframe_of(loaded.candles)
        plan = plan_folds(loaded.candles, settings)
    except (DataError, ValueError) as exc:
        raise InputError(str(exc)) from None
    active_row, live = (None, LiveData()) if url is None else asyncio.run(_read(url))
    active_overrides = dict(active_row.overrides) if active_row is not None else {}
    try:
        base = CouncilConfig(**active_overrides)
    except ValueError as exc:
        raise InputError(f"the ACTIVE configuration does not build under these settings: {exc}") from None
    problem = Problem(loaded.candles, plan, settings, live)
    name = args.study or f"{settings.profile.value.lower()}-{LiveClock().now():%Y%m%dT%H%M%S}"
    print(f"optimize {name}: profile {settings.profile}, {len(loaded.candles):,} candles of {', '.join(where)}, "
          f"{len(plan)} folds ({settings.train_bars} train / {settings.test_bars} test bars), seed {settings.seed}",
          file=out)
    active = problem.evaluate(active_overrides)
    label = f"ACTIVE {active_row.id}" if active_row is not None else "the services' settings"
    print(f"active ({label}): score {active.final_score:.3f}, drawdown {active.max_drawdown:.2%}", file=out)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = open_study(name, settings, None if url is None else settings.storage_url or url)
    except Exception as exc:  # noqa: BLE001 - the storage's many errors: say which, in one line
        raise InputError(f"cannot open the study's storage: {type(exc).__name__}: "
                         + " ".join(str(exc).split())[:300]) from None
    started = time.perf_counter()
    result = run_study(study, problem, base, trials=settings.trials, on_trial=lambda o: print(_line(o), file=out))
    pruned = sum(t.state == "PRUNED" for t in result.trials)
    print(f"{len(result.trials)} trials in {time.perf_counter() - started:.1f}s ({result.per_minute:.1f} trials/min), "
          f"{pruned} rejected by the drawdown limit", file=out)
    best = result.best
    if best is None:
        print("no candidate within the profile's drawdown limit: nothing recorded", file=out)
        return 1
    print(f"best: trial {best.number}, score {best.score:.3f} against the active one's {active.final_score:.3f}",
          file=out)
    for key, value in sorted(best.params.items()):
        print(f"  {key} = {value:.4g}" if isinstance(value, float) else f"  {key} = {value}", file=out)
    if url is None:
        return 0
    metrics = {**best.evaluation, "trial": best.number, "study_trials": len(study.trials),
               "data": {"source": list(where), "candles": len(loaded.candles), "folds": len(plan),
                        "start": loaded.candles[0].ts.isoformat(), "end": loaded.candles[-1].ts.isoformat()}}
    active_metrics = {**active.as_dict(), "params": params_of(base, best.params)}
    row, activated = asyncio.run(_record(url, settings, best, metrics, active_metrics,
                                         None if active_row is None else active_row.id, name,
                                         better=best.score is not None and best.score > active.final_score))
    what = "ACTIVE (audited as SYSTEM)" if activated else "PROPOSED"
    print(f"configuration {row.id} ({row.config_hash}): {what}", file=out)
    if not settings.require_approval and not activated:
        print("not activated: it does not score above the active configuration; left PROPOSED for an operator",
              file=out)
    return 0


async def _read(url: str) -> tuple[Any, Any]:
    from quorum.backtest import optimize_store as store
    from quorum.db.engine import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await store.active(conn), await store.live_data(conn, LiveClock().now())
    except Exception as exc:  # noqa: BLE001 - the database's many errors: say which, in one line
        raise InputError(f"cannot read the database: {type(exc).__name__}: " + " ".join(str(exc).split())[:300]
                         ) from None
    finally:
        await engine.dispose()


async def _record(url: str, settings: Any, best: Any, metrics: dict[str, Any], active_metrics: dict[str, Any],
                  active_id: Any, study: str, *, better: bool) -> tuple[Any, bool]:
    """The PROPOSED row, its audit, and without approval (if it scores better) its activation, in one
    transaction; the events go into the gateway's outbox, which the gateway's relay publishes."""
    from quorum.backtest import optimize_store as store
    from quorum.clock import LiveClock
    from quorum.council.settings import CouncilConfig
    from quorum.db.engine import create_engine
    from quorum.db.outbox import enqueue
    from quorum.runtime.audit import active_profile, record_audit
    from quorum.runtime.handling import Context

    service = CouncilConfig()  # the shared settings: trading mode, profile, chain key
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            ctx = Context(conn=conn, clock=LiveClock(), service="gateway")
            profile = await active_profile(conn, service.risk_profile.value)

            async def audit(action: str, status: str, details: dict[str, Any], key: Any) -> None:
                await record_audit(ctx, actor=store.SYSTEM, action=action, mode=service.trading_mode.value,
                                   risk_profile=profile, status=status, details=details, key=key,
                                   chain_key=service.chain_key)

            row = await store.record_candidate(
                conn, config_hash=best.evaluation["config_hash"], overrides=best.overrides, params=best.params,
                profile=settings.profile.value, metrics=metrics, active_metrics=active_metrics, active_id=active_id,
                study=study, actor=store.SYSTEM, now=ctx.clock.now())
            details = {"configuration_id": str(row.id), "config_hash": row.config_hash, "study": study,
                       "score": best.score, "active_score": active_metrics["score"]}
            await audit("configuration_propose", "PROPOSED", details, row.id)
            activated = not settings.require_approval and better
            if activated:
                row, _ = await store.activate(ctx, row.id, actor=store.SYSTEM,
                                              reason="the optimizer's best; approval not required")
                await audit("configuration_activate", "CONFIRMED", details, row.id)
            await enqueue(conn, "gateway", ctx.emitted)
        return row, activated
    finally:
        await engine.dispose()
