"""For tests and benchmarks: real services (`brokers`: Apache Kafka, `postgres`: PostgreSQL) and
stand-ins for kafka-python's clients and a clock (`fakes`).

Importable (not under `tests/`) so that `bench/` uses the same fixtures without importing tests,
the way `bytewax.testing` ships its test sources.
"""
