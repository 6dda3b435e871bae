"""Trainer: runs training jobs from a JetStream work queue, one at a time per process, and reports them."""
