"""Kafka connection settings from CLI flags, a credentials JSON file and env vars.

Precedence is CLI > credentials file > environment. Secrets never appear in
``repr``/``str``/:meth:`KafkaSettings.masked`, so a settings object can be logged.

>>> s = KafkaSettings.from_env({"EDGE_MNIST_BOOTSTRAP_SERVERS": "127.0.0.1:9092"})
>>> s.to_kafka_config()
{'bootstrap_servers': ['127.0.0.1:9092'], 'security_protocol': 'PLAINTEXT'}
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemnist.errors import ConfigError

__all__ = [
    "ENV_VARS",
    "state_dir",
    "SECURITY_PROTOCOLS",
    "SASL_MECHANISMS",
    "KAFKA_CLIENTS",
    "KafkaSettings",
    "resolve",
]

MASK = "****"
#: The clients a group consumer can run on: kafka-python (the default) or librdkafka via confluent-kafka.
KAFKA_CLIENTS = ("kafka-python", "confluent-kafka")

#: The core's ``EDGE_MNIST_*`` env vars (name -> help text): Kafka connection, local state, the
#: digit database and tests. Each app registers its own names in its settings module
#: (``edge_app.settings.EDGE_ENV_VARS``, ``metro_app.settings.HUB_ENV_VARS``).
ENV_VARS: dict[str, str] = {
    "EDGE_MNIST_BOOTSTRAP_SERVERS": (
        "Kafka bootstrap servers, comma separated host:port (plain KAFKA_BOOTSTRAP_SERVERS is "
        "accepted as a fallback); unset: the demo starts a local broker"
    ),
    "EDGE_MNIST_CREDENTIALS": (
        "Path of a Kafka credentials JSON file (IBM Event Streams service credentials as-is: "
        "kafka_brokers_sasl, user, api_key; optional sasl_mechanism, e.g. SCRAM-SHA-512, and ssl_cafile)"
    ),
    "EDGE_MNIST_SECURITY_PROTOCOL": "PLAINTEXT, SSL, SASL_SSL or SASL_PLAINTEXT (default: inferred)",
    "EDGE_MNIST_SASL_MECHANISM": "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default: PLAIN)",
    "EDGE_MNIST_SASL_USERNAME": "SASL user name (Event Streams: 'token')",
    "EDGE_MNIST_SASL_PASSWORD": "SASL password (Event Streams: the API key)",
    "EDGE_MNIST_SSL_CAFILE": "CA bundle (PEM) to verify the brokers; default: the system CAs",
    "EDGE_MNIST_SSL_CERTFILE": "Client certificate (PEM) for TLS client authentication",
    "EDGE_MNIST_SSL_KEYFILE": "Private key (PEM) of the client certificate",
    "EDGE_MNIST_SSL_PASSWORD": "Password of the client private key",
    "EDGE_MNIST_KAFKA_LIBS": (
        "Tests: directory of the Apache Kafka broker jars (default ~/.cache/edge-mnist/kafka-4.1.1/libs)"
    ),
    "EDGE_MNIST_REQUIRE_APACHE_KAFKA": "Tests: fail instead of falling back to Tansu when Apache Kafka cannot start",
}

FALLBACK_BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"


def state_dir() -> Path:
    """Local state (outboxes, the hub store, the job registry): $EDGE_MNIST_STATE_DIR or ~/.local/state/edge-mnist."""
    base = os.environ.get("EDGE_MNIST_STATE_DIR")
    return Path(base) if base else Path.home() / ".local" / "state" / "edge-mnist"


_FIELD_ENV_CREDENTIALS = "EDGE_MNIST_CREDENTIALS"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

# field name -> env var that sets it (used in error messages too)
_FIELD_ENV = {
    "bootstrap_servers": "EDGE_MNIST_BOOTSTRAP_SERVERS",
    "security_protocol": "EDGE_MNIST_SECURITY_PROTOCOL",
    "sasl_mechanism": "EDGE_MNIST_SASL_MECHANISM",
    "sasl_username": "EDGE_MNIST_SASL_USERNAME",
    "sasl_password": "EDGE_MNIST_SASL_PASSWORD",
    "ssl_cafile": "EDGE_MNIST_SSL_CAFILE",
    "ssl_certfile": "EDGE_MNIST_SSL_CERTFILE",
    "ssl_keyfile": "EDGE_MNIST_SSL_KEYFILE",
    "ssl_password": "EDGE_MNIST_SSL_PASSWORD",
}
_SECRETS = frozenset({"sasl_password", "ssl_password"})
_SSL_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def _name(field: str) -> str:
    return f"{_FIELD_ENV[field]} ({field})"


def _parse_servers(value: str | list[str] | tuple[str, ...] | None, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.replace(",", " ").split() if isinstance(value, str) else [str(v).strip() for v in value]
    for item in items:
        host, sep, port = item.rpartition(":")
        if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"{source}: {item!r} is not host:port")
    return tuple(items)


@dataclass(frozen=True, slots=True, repr=False)
class KafkaSettings:
    """How to reach Kafka. Empty ``bootstrap_servers`` means "not configured"."""

    bootstrap_servers: tuple[str, ...] = ()
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.bootstrap_servers, str | list):
            servers = _parse_servers(self.bootstrap_servers, _name("bootstrap_servers"))
            object.__setattr__(self, "bootstrap_servers", servers)
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"{_name('security_protocol')} = {self.security_protocol!r} is not one of "
                f"{', '.join(SECURITY_PROTOCOLS)}"
            )
        self._check_sasl()

    def _check_sasl(self) -> None:
        if not self.uses_sasl:
            if self.sasl_username or self.sasl_password:
                raise ConfigError(
                    f"{_name('sasl_username')} is set but {_name('security_protocol')} is "
                    f"{self.security_protocol}; use SASL_SSL or SASL_PLAINTEXT"
                )
            return
        if self.sasl_mechanism is None:
            object.__setattr__(self, "sasl_mechanism", "PLAIN")
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"{_name('sasl_mechanism')} = {self.sasl_mechanism!r} is not one of "
                f"{', '.join(SASL_MECHANISMS)}"
            )
        for field in ("sasl_username", "sasl_password"):
            if not getattr(self, field):
                raise ConfigError(f"{_name(field)} is required with {self.security_protocol}")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def configured(self) -> bool:
        """True when bootstrap servers are known (else the demo starts a local broker)."""
        return bool(self.bootstrap_servers)

    def with_bootstrap_servers(self, servers: str | tuple[str, ...] | list[str]) -> KafkaSettings:
        """A copy pointing at other servers, e.g. the local broker the demo started."""
        return dataclasses.replace(self, bootstrap_servers=_parse_servers(servers, "bootstrap servers"))

    # ----- construction -------------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSettings:
        """Settings from ``EDGE_MNIST_*`` env vars only (no credentials file, see :func:`resolve`)."""
        return cls(**_fields_from_env(os.environ if environ is None else environ))

    @classmethod
    def from_credentials_file(cls, path: str | os.PathLike[str]) -> KafkaSettings:
        """Settings from an IBM Event Streams credentials JSON, used as downloaded."""
        return cls(**_fields_from_credentials(Path(path)))

    # ----- output ----------------------------------------------------------------------------------

    def to_kafka_config(self) -> dict[str, Any]:
        """kafka-python keyword arguments; only the keys that apply to this protocol."""
        if not self.bootstrap_servers:
            raise ConfigError(
                f"no Kafka bootstrap servers configured: set {_FIELD_ENV['bootstrap_servers']}, "
                f"{FALLBACK_BOOTSTRAP_ENV}, --bootstrap-servers or a credentials file"
            )
        config: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
        }
        if self.uses_sasl:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password
        if self.uses_ssl:
            for field in (*_SSL_FILES, "ssl_password"):
                if getattr(self, field) is not None:
                    config[field] = getattr(self, field)
        return config

    def masked(self) -> dict[str, Any]:
        """The fields that are set, secrets replaced by ``****``; safe for logs."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                out[field.name] = MASK if (field.name in _SECRETS and value) else value
        return out

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.masked().items())
        return f"KafkaSettings({inner})"

    __str__ = __repr__


def _fields_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    raw: dict[str, Any] = {field: environ.get(env) or None for field, env in _FIELD_ENV.items()}
    if raw["bootstrap_servers"] is None and environ.get(FALLBACK_BOOTSTRAP_ENV):
        servers = environ[FALLBACK_BOOTSTRAP_ENV]
        raw["bootstrap_servers"] = _parse_servers(servers, FALLBACK_BOOTSTRAP_ENV)
    else:
        raw["bootstrap_servers"] = _parse_servers(raw["bootstrap_servers"], _name("bootstrap_servers"))
    if raw["security_protocol"] is not None:
        raw["security_protocol"] = raw["security_protocol"].strip().upper()
    if raw["sasl_mechanism"] is not None:
        raw["sasl_mechanism"] = raw["sasl_mechanism"].strip().upper()
    for field in _SSL_FILES:
        if raw[field] is not None and not Path(raw[field]).is_file():
            raise ConfigError(f"{_name(field)}: file {raw[field]!r} does not exist")
    raw["security_protocol"] = raw["security_protocol"] or _infer_protocol(raw)
    return {k: v for k, v in raw.items() if v is not None}


def _infer_protocol(raw: Mapping[str, Any]) -> str:
    if raw.get("sasl_username") or raw.get("sasl_password"):
        return "SASL_SSL"
    if any(raw.get(field) for field in _SSL_FILES):
        return "SSL"
    return "PLAINTEXT"


def _fields_from_credentials(path: Path) -> dict[str, Any]:
    where = f"credentials file {str(path)!r}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{where} does not exist ({_FIELD_ENV_CREDENTIALS})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a JSON object")
    password = data.get("api_key") or data.get("password")
    missing = [k for k in ("kafka_brokers_sasl", "user") if not data.get(k)]
    missing += [] if password else ["api_key"]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)}")
    brokers = data["kafka_brokers_sasl"]
    if not isinstance(brokers, list | str):
        raise ConfigError(f"{where}: kafka_brokers_sasl must be a list of host:port")
    fields = {
        "bootstrap_servers": _parse_servers(brokers, f"{where}: kafka_brokers_sasl"),
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": str(data.get("sasl_mechanism") or "PLAIN").strip().upper(),
        "sasl_username": str(data["user"]),
        "sasl_password": str(password),
    }
    # Beyond the Event Streams format, for self-run clusters: a SCRAM mechanism and a private CA
    # (a relative path is relative to the credentials file).
    if data.get("ssl_cafile"):
        ca = path.parent / str(data["ssl_cafile"])
        if not ca.is_file():
            raise ConfigError(f"{where}: ssl_cafile {str(ca)!r} does not exist")
        fields["ssl_cafile"] = str(ca)
    return fields


def resolve(
    *,
    bootstrap_servers: str | list[str] | tuple[str, ...] | None = None,
    credentials: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    required: bool = True,
) -> KafkaSettings:
    """Merge CLI flags > credentials file > env into one settings object.

    Args:
        bootstrap_servers: ``--bootstrap-servers`` from the CLI, if given.
        credentials: ``--credentials`` path; else ``EDGE_MNIST_CREDENTIALS``.
        environ: env mapping (default ``os.environ``).
        required: raise ``ConfigError`` when no bootstrap servers are found; the demo
            passes False and starts a local broker instead.
    """
    env = os.environ if environ is None else environ
    fields = _fields_from_env(env)
    cred_path = credentials if credentials is not None else env.get(_FIELD_ENV_CREDENTIALS) or None
    if cred_path is not None:
        fields.update(_fields_from_credentials(Path(cred_path)))
    if bootstrap_servers:
        fields["bootstrap_servers"] = _parse_servers(bootstrap_servers, "--bootstrap-servers")
    settings = KafkaSettings(**fields)
    if required and not settings.configured:
        settings.to_kafka_config()  # raises the ConfigError that says what to set
    return settings


# shared by every tool of the project
ENV_VARS.update(
    {
        "EDGE_MNIST_STATE_DIR": "Local state: outboxes, the hub store, the job registry (default ~/.local/state/edge-mnist)",
    }
)

# Digits in PostgreSQL and the Debezium change streams (edgemnist_cdc.digitdb, edgemnist_cdc.connect)
ENV_VARS.update(
    {
        "EDGE_MNIST_DB_URL": "PostgreSQL URL of the digit tables for `edge-mnist db` / `cdc start` (postgresql://...)",
        "EDGE_MNIST_CONNECT_URL": "REST URL of a Kafka Connect worker you run; unset: `cdc start` runs its own",
        "EDGE_MNIST_CONNECT_HOME": (
            "Folder with the Connect worker's libs/ and plugins/ (default "
            "~/.cache/edge-mnist/connect-4.1.1-debezium-3.6.1, filled by `make connect-jars`)"
        ),
    }
)
