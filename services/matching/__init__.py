"""Paper venue: fills orders against replayed market data; its open orders survive restarts."""
