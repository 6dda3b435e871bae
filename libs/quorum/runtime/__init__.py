"""Service runtime: settings, logging, lifecycle, consumers with inbox/outbox, health and metrics."""
