"""Prefect flows: orchestration only. Each flow calls tasks from ``tasks/`` in order and branches on gates."""
