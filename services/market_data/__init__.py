"""Market-data ingestion: file replay (this foundation); live ccxt feeds and backfill come later."""
