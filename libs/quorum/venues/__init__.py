"""Venue adapters: how the OMS learns what a venue has (paper: the matching engine; live: ccxt)."""
