"""Embedded infrastructure for the native (no Docker) mode and the test fixtures."""
