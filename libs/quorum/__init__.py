"""Quorum shared libraries: pure domain code plus the thin infrastructure every service uses."""
