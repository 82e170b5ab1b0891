"""What each principal may do on a cluster with an authorizer: the edge's and the hub's ACLs.

Part of `edgemnist.kafka` (import from there). One table, `needs`, says what each role must
be allowed, so the ACLs an operator creates (`kafka_acls_commands`, or `create_acls` with an
admin's settings) and the integration test that proves them are the same list:

- an edge writes the events topic (and the results topic, if it has one) and reads the models
  topic from offset 0 without a consumer group; nothing else;
- a hub reads the events, control and prediction-request topics in its consumer groups, and
  writes (and creates) the models, dead-letter, alerts and prediction-response topics.

>>> print(kafka_acls_commands(needs("edge", "User:edge", {"events": "edge-mnist.events",
...                                                        "models": "edge-mnist.models"})))
kafka-acls.sh --bootstrap-server BROKER --command-config admin.properties --add --allow-principal User:edge --operation Write --operation Describe --topic edge-mnist.events
kafka-acls.sh --bootstrap-server BROKER --command-config admin.properties --add --allow-principal User:edge --operation Read --operation Describe --topic edge-mnist.models
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from edgemnist.errors import ConfigError

__all__ = ["Grant", "needs", "kafka_acls_commands", "create_acls", "ROLES"]

ROLES = ("edge", "hub")
Resource = Literal["topic", "group"]

# role -> (resource kind, the key naming it in `names`, operations); a missing key is skipped
_NEEDS: dict[str, tuple[tuple[Resource, str, tuple[str, ...]], ...]] = {
    "edge": (
        ("topic", "events", ("Write", "Describe")),
        ("topic", "results", ("Write", "Describe")),
        ("topic", "models", ("Read", "Describe")),
    ),
    "hub": (
        ("topic", "events", ("Read", "Describe")),
        ("group", "events_group", ("Read",)),
        ("topic", "control", ("Read", "Describe")),
        ("group", "control_group", ("Read",)),
        ("topic", "predict_requests", ("Read", "Describe")),
        ("group", "predict_group", ("Read",)),
        ("topic", "models", ("Write", "Describe", "Create")),
        ("topic", "dlq", ("Write", "Describe", "Create")),
        ("topic", "alerts", ("Write", "Describe", "Create")),
        ("topic", "predict_responses", ("Write", "Describe", "Create")),
    ),
}


@dataclass(frozen=True, slots=True)
class Grant:
    """Allow `principal` the `operations` on one topic or consumer group (a literal name)."""

    principal: str
    resource: Resource
    name: str
    operations: tuple[str, ...]


def needs(role: str, principal: str, names: Mapping[str, str]) -> list[Grant]:
    """The grants `role` needs, for the topic and group `names` it is configured with.

    `names` maps "events", "models", "control", "dlq", "alerts", "results", "predict_requests",
    "predict_responses" and the groups "events_group", "control_group", "predict_group" to
    names; a role's entry whose name is missing or empty is left out.
    """
    if role not in _NEEDS:
        raise ConfigError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if not principal.startswith("User:"):
        raise ConfigError(f"principal {principal!r} must look like User:<name>")
    return [Grant(principal, kind, names[key], ops) for kind, key, ops in _NEEDS[role] if names.get(key)]


def kafka_acls_commands(grants: Iterable[Grant], bootstrap: str = "BROKER") -> str:
    """The `kafka-acls.sh` lines that create `grants` on a real cluster, one per resource."""
    lines = []
    for g in grants:
        ops = " ".join(f"--operation {op}" for op in g.operations)
        lines.append(
            f"kafka-acls.sh --bootstrap-server {bootstrap} --command-config admin.properties --add "
            f"--allow-principal {g.principal} {ops} --{g.resource} {g.name}"
        )
    return "\n".join(lines)


def create_acls(admin_settings: object, grants: Iterable[Grant], timeout: float = 30.0) -> int:
    """Create `grants` with an admin's settings (a KafkaSettings); how many ACLs were created."""
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern
    from kafka.admin import ResourceType as KafkaResource

    from edgemnist.kafka.admin import _admin

    kinds = {"topic": KafkaResource.TOPIC, "group": KafkaResource.GROUP}
    acls = [
        ACL(
            principal=g.principal,
            host="*",
            operation=ACLOperation[op.upper()],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(kinds[g.resource], g.name, ACLResourcePatternType.LITERAL),
        )
        for g in grants
        for op in g.operations
    ]
    admin = _admin(admin_settings, timeout)  # type: ignore[arg-type]
    try:
        result = admin.create_acls(acls)
    finally:
        admin.close()
    if result["failed"]:
        acl, error = result["failed"][0]
        raise ConfigError(f"creating ACL {acl}: {error}")
    return len(result["succeeded"])
