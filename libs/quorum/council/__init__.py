"""The signal council: strategies vote on every closed candle; the engine turns votes into decisions."""
