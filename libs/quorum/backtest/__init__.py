"""The in-process runner: the services' pure decisions wired together without the infrastructure, for
backtests, replays of recorded sessions and tests."""
