"""The micro-edge application: source -> prepare -> score -> filter -> outbox -> Kafka."""

__all__: list[str] = []
