"""Who may do what on the hub's API: three nested roles and the person a token names.

>>> Person("ana", "labeller").may("viewer"), Person("ana", "labeller").may("operator")
(True, False)
>>> role_of("admin")
Traceback (most recent call last):
...
edgemnist.errors.ConfigError: unknown role 'admin': one of viewer, labeller, operator
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from edgemnist.errors import ConfigError

__all__ = ["ROLES", "Role", "Person", "role_of"]

Role = Literal["viewer", "labeller", "operator"]

#: Each role may do what every role before it may: viewer (every GET) < labeller (+ labels)
#: < operator (+ retrain, rollout, label resolve, the audit trail).
ROLES: tuple[Role, ...] = ("viewer", "labeller", "operator")


def role_of(name: str) -> Role:
    """`name` as a `Role`; ConfigError naming it when it is none."""
    if name not in ROLES:
        raise ConfigError(f"unknown role {name!r}: one of {', '.join(ROLES)}")
    return cast(Role, name)


@dataclass(frozen=True, slots=True)
class Person:
    """Who a request's token names; `verified` is False for the single shared token's `default`."""

    name: str
    role: Role
    verified: bool = True

    def may(self, role: Role) -> bool:
        """Whether this person's role includes `role`."""
        return ROLES.index(self.role) >= ROLES.index(role)
