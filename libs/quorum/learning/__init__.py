"""Learning: training datasets from candles, model families, and the model registry."""
