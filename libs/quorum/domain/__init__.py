"""Pure domain code: no I/O, no wall clock. The same code runs in services, backtests and replays."""
