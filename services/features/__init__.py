"""Feature computation: closed candles in, indicator vectors out (no look-ahead)."""
