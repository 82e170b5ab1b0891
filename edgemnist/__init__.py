"""edge-mnist shared core: wire messages, Kafka config, data sets, image preparation, models."""

__all__ = ["__version__"]

__version__ = "0.1.0"
