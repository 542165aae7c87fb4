"""Helpers for tests and benchmarks that use the ``noop`` provider (no real infrastructure)."""
