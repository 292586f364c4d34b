"""Prefect tasks and the plain functions inside them (callable and testable without a Prefect server)."""
