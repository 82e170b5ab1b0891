"""Running real services for tests and benchmarks: Apache Kafka (`brokers`) and PostgreSQL (`postgres`).

Importable (not under `tests/`) so that `bench/` uses the same fixtures without importing tests,
the way `bytewax.testing` ships its test sources.
"""
