"""The source selector: when a symbol's feed leaves its primary source, when it returns, and that it never flaps
faster than the probe interval. Pure state machine, driven with explicit clock times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from quorum.events.market_data import DataSourceSwitched
from quorum.marketdata.failover import PRIMARY_FAILED, PRIMARY_RECOVERED, PRIMARY_STALE, SourceSelector

T0 = datetime(2024, 8, 8, tzinfo=UTC)
PROBE = timedelta(seconds=30)
STALE = timedelta(minutes=2)
FAILURES, HEALTHY = 3, 2


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make() -> SourceSelector:
    return SourceSelector("BTC/USDT", "binance", "kraken", max_failures=FAILURES, stale_after=STALE,
                          probe_interval=PROBE, healthy_probes_needed=HEALTHY)


def fail_over(sel: SourceSelector, at: float = 0) -> DataSourceSwitched:
    for i in range(FAILURES):
        switch = sel.record_failure(s(at + i))
    assert switch is not None
    return switch


def test_switches_to_the_secondary_after_exactly_n_consecutive_failures() -> None:
    sel = make()
    assert [sel.record_failure(s(i)) for i in range(FAILURES - 1)] == [None] * (FAILURES - 1)
    assert sel.active == "binance"
    switch = sel.record_failure(s(FAILURES))
    assert switch == DataSourceSwitched(symbol="BTC/USDT", from_source="binance", to_source="kraken",
                                        reason=PRIMARY_FAILED)
    assert sel.active == "kraken" and not sel.on_primary


def test_data_between_failures_resets_the_count() -> None:
    sel = make()
    for i in range(FAILURES - 1):
        assert sel.record_failure(s(i)) is None
    sel.record_data(s(5))
    for i in range(FAILURES - 1):
        assert sel.record_failure(s(6 + i)) is None
    assert sel.on_primary


def test_a_silent_primary_is_left_once_stale_after_has_passed() -> None:
    sel = make()
    sel.record_data(s(0))
    assert sel.check(s(STALE.total_seconds() - 1)) is None
    switch = sel.check(s(STALE.total_seconds()))
    assert switch is not None and switch.reason == PRIMARY_STALE
    assert (switch.from_source, switch.to_source) == ("binance", "kraken")


def test_staleness_counts_from_the_first_check_when_no_data_ever_came() -> None:
    sel = make()
    assert sel.check(s(100)) is None
    assert sel.check(s(100 + STALE.total_seconds() - 1)) is None
    assert sel.check(s(100 + STALE.total_seconds())) is not None


def test_probes_are_due_every_probe_interval_and_early_results_are_ignored() -> None:
    sel = make()
    assert not sel.probe_due(s(1000)), "nothing to probe while on the primary"
    fail_over(sel, at=0)
    switched_at = FAILURES - 1
    assert not sel.probe_due(s(switched_at + 29))
    assert sel.record_probe(True, s(switched_at + 29)) is None and sel.healthy_probes == 0, "early: ignored"
    assert sel.probe_due(s(switched_at + 30))
    assert sel.record_probe(True, s(switched_at + 30)) is None
    assert not sel.probe_due(s(switched_at + 59))
    assert sel.record_probe(True, s(switched_at + 59)) is None and sel.healthy_probes == 1


def test_switches_back_after_m_consecutive_healthy_probes_and_a_failed_probe_restarts_the_count() -> None:
    sel = make()
    fail_over(sel, at=0)
    t = FAILURES - 1
    assert sel.record_probe(True, s(t := t + 30)) is None
    assert sel.record_probe(False, s(t := t + 30)) is None
    assert sel.record_probe(True, s(t := t + 30)) is None
    switch = sel.record_probe(True, s(t := t + 30))
    assert switch == DataSourceSwitched(symbol="BTC/USDT", from_source="kraken", to_source="binance",
                                        reason=PRIMARY_RECOVERED)
    assert sel.on_primary and sel.failures == 0


def test_a_primary_failing_right_after_recovery_waits_out_one_probe_interval() -> None:
    sel = make()
    fail_over(sel, at=0)
    t = FAILURES - 1
    for _ in range(HEALTHY):
        switch = sel.record_probe(True, s(t := t + 30))
    assert switch is not None and sel.on_primary
    back_at = t
    for i in range(1, 10):
        assert sel.record_failure(s(back_at + i)) is None, "no switch within the probe interval"
    assert sel.check(s(back_at + 29)) is None
    switch = sel.check(s(back_at + 30))
    assert switch is not None and switch.reason == PRIMARY_FAILED, "switches once the hold-down is over"


def test_failures_of_the_secondary_switch_nothing() -> None:
    sel = make()
    fail_over(sel)
    for i in range(20):
        assert sel.record_failure(s(100 + i)) is None
        assert sel.check(s(100 + i + 1000)) is None
    assert sel.active == "kraken"


@pytest.mark.parametrize("kwargs", [{"secondary": "binance"}, {"max_failures": 0}, {"probe_interval": timedelta(0)}])
def test_nonsensical_configurations_are_refused(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"symbol": "BTC/USDT", "primary": "binance", "secondary": "kraken", **kwargs}
    with pytest.raises(ValueError):
        SourceSelector(**args)  # type: ignore[arg-type]


# --- properties over arbitrary histories ----------------------------------------------------------------------

ACTIONS = ("failure", "data", "check", "probe_healthy", "probe_unhealthy")


@dataclass
class Expected:
    """What the specification allows, tracked alongside the selector."""

    on_primary: bool = True
    failures: int = 0
    quiet_since: datetime | None = None
    last_switch: datetime | None = None
    last_probe: datetime | None = None
    healthy: int = 0


@seed(20240808)
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(min_value=0, max_value=90)), max_size=80))
def test_any_history_switches_only_as_specified_and_never_faster_than_the_probe_interval(
    history: list[tuple[str, int]],
) -> None:
    sel, exp = make(), Expected()
    now = T0
    switch_times: list[datetime] = []
    for action, seconds in history:
        now += timedelta(seconds=seconds)
        probe_was_due = sel.probe_due(now)
        held = exp.last_switch is not None and now - exp.last_switch < PROBE
        assert probe_was_due == (not exp.on_primary and now - (exp.last_probe or exp.last_switch or now) >= PROBE)

        if action == "failure":
            switch = sel.record_failure(now)
            exp.failures += 1
            exp.quiet_since = exp.quiet_since or now
        elif action == "data":
            sel.record_data(now)
            switch, exp.failures, exp.quiet_since = None, 0, now
        elif action == "check":
            switch = sel.check(now)
            exp.quiet_since = exp.quiet_since or now
        else:
            switch = sel.record_probe(action == "probe_healthy", now)
            if probe_was_due:
                exp.last_probe = now
                exp.healthy = exp.healthy + 1 if action == "probe_healthy" else 0

        should_leave = exp.on_primary and action in ("failure", "check") and not held and (
            exp.failures >= FAILURES or (exp.quiet_since is not None and now - exp.quiet_since >= STALE)
        )
        should_return = not exp.on_primary and probe_was_due and exp.healthy >= HEALTHY
        assert (switch is not None) == (should_leave or should_return), (action, now - T0)
        if switch is None:
            continue

        assert switch.from_source == ("binance" if exp.on_primary else "kraken")
        assert switch.to_source == ("kraken" if exp.on_primary else "binance")
        if exp.on_primary:
            assert switch.reason == (PRIMARY_FAILED if exp.failures >= FAILURES else PRIMARY_STALE)
        else:
            assert switch.reason == PRIMARY_RECOVERED
        assert not switch_times or now - switch_times[-1] >= PROBE, "flapped faster than the probe interval"
        switch_times.append(now)
        exp = Expected(on_primary=not exp.on_primary, quiet_since=now, last_switch=now)
        assert sel.active == ("binance" if exp.on_primary else "kraken")
