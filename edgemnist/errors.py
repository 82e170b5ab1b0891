"""One error hierarchy for the whole project."""

from __future__ import annotations

__all__ = [
    "EdgeMnistError",
    "ConfigError",
    "SchemaError",
    "ModelError",
    "BrokerUnavailable",
    "DataError",
    "AccessDenied",
]


class EdgeMnistError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(EdgeMnistError):
    """A setting is unknown, missing or inconsistent; the message names it."""


class AccessDenied(ConfigError):
    """The broker's authorizer refused an operation; the message names the user, topic and permission."""


class SchemaError(EdgeMnistError):
    """A wire message does not match the schema; the message says where it came from."""


class ModelError(EdgeMnistError):
    """A model file is missing, tampered with, foreign or unusable."""


class DataError(EdgeMnistError):
    """A data set or image cannot be read."""


class BrokerUnavailable(EdgeMnistError):
    """Kafka cannot be reached right now; retriable."""
