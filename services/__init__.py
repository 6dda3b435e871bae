"""Quorum services: each a thin adapter around libs/ with its own entry point and container.
Services never import each other."""
