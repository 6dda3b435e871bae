"""Pre-trade risk, pure: no I/O and no clock, so services, backtests and replays share one set of rules.

* ``profiles``: per-profile limits (``ProfileLimits``, ``DEFAULT_PROFILES``) and ``RiskConfig``.
* ``sizing``: ``assess(intent, portfolio, profile, rules, config) -> RiskVerdict``, stop-distance sizing under caps.
* ``drawdown``: peak-to-current drawdown tracking that latches until cleared by hand, and the halt plan.
* ``killswitch``: close-only scopes (global or per symbol), engaged by hand or after a losing streak.
"""
