"""Ledger: append-only double-entry journal, positions and equity projections."""
