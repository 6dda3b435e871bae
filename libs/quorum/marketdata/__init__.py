"""Market-data helpers shared by the market-data service, backtests and replays."""
