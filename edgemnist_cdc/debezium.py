"""Debezium's PostgreSQL connector, configured for the digit tables and the hub's labels.

One connector per database (Debezium's PostgreSQL connector captures one database
through one replication slot); the slot and the publication are named after the
connector, the publication covers the named tables only (``filtered``), and the
password is a ``FileConfigProvider`` reference, never the value.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemnist.errors import ConfigError

__all__ = ["ConnectorSpec", "debezium_config", "password_of", "specs_for"]


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """One Debezium connector: a database and the tables to capture from it."""

    name: str
    url: str
    tables: tuple[str, ...]
    topic_prefix: str

    def qualified(self) -> tuple[str, ...]:
        return tuple(t if "." in t else f"public.{t}" for t in self.tables)

    def topics(self) -> dict[str, str]:
        """Table -> the topic Debezium writes its changes to (``<prefix>.<schema>.<table>``)."""
        return {t: f"{self.topic_prefix}.{q}" for t, q in zip(self.tables, self.qualified(), strict=True)}

    @property
    def slot(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.name.lower())[:60]


def debezium_config(spec: ConnectorSpec, password_file: Path) -> dict[str, str]:
    """The connector's config: pgoutput, a filtered publication and a slot named after the connector."""
    parts = urllib.parse.urlsplit(spec.url.replace("postgresql+psycopg://", "postgresql://", 1))
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise ConfigError(
            f"--url must be postgresql://USER[:PASSWORD]@HOST[:PORT]/DB, got scheme {parts.scheme!r}"
        )
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": parts.hostname,
        "database.port": str(parts.port or 5432),
        "database.user": urllib.parse.unquote(parts.username or "postgres"),
        "database.password": f"${{file:{password_file}:password}}",
        "database.dbname": urllib.parse.unquote(parts.path.lstrip("/") or "postgres"),
        "topic.prefix": spec.topic_prefix,
        "table.include.list": ",".join(spec.qualified()),
        "slot.name": spec.slot,
        "publication.name": f"{spec.slot}_pub",
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "initial",
        "topic.creation.default.replication.factor": "-1",
        "topic.creation.default.partitions": "1",
    }


def password_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    return urllib.parse.unquote(parts.password or "")


def specs_for(
    name: str, url: str, tables: Sequence[str], topic_prefix: str, store_url: str | None = None
) -> list[ConnectorSpec]:
    """The connectors for ``tables`` in ``url``, plus the hub store's ``labels`` when the store is PostgreSQL.

    The store's labels ride on the same connector when the store is the same database,
    else on a second connector ``<name>-store`` (topic prefix ``<prefix>-store``).
    """
    specs = [ConnectorSpec(name, url, tuple(tables), topic_prefix)]
    if store_url and store_url.split("://")[0].split("+")[0] in ("postgresql", "postgres"):
        if _same_database(url, store_url):
            if "labels" not in tables:
                specs[0] = ConnectorSpec(name, url, (*tables, "labels"), topic_prefix)
        else:
            specs.append(ConnectorSpec(f"{name}-store", store_url, ("labels",), f"{topic_prefix}-store"))
    return specs


def _same_database(a: str, b: str) -> bool:
    def where(u: str) -> tuple[Any, ...]:
        p = urllib.parse.urlsplit(u.replace("+psycopg", "", 1))
        return (p.hostname, p.port or 5432, p.path.lstrip("/") or "postgres")

    return where(a) == where(b)
