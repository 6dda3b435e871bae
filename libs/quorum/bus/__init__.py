"""NATS JetStream adapter: connection that never gives up, idempotent publishing, provisioning, consumers."""
