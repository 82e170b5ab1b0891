"""The hub API's access rules: who a request's bearer token names, and whether they may do it.

Three ways to run a hub:

- a tokens file (`--tokens`): each token names a person with a role; reads need a viewer
  token unless `public_reads`;
- the single shared token (`EDGE_MNIST_API_TOKEN`, no tokens file): whoever holds it is the
  operator ``default`` (unverified: labels keep the labeller their body names), reads are open;
- no token at all: reads are open and every write is refused.

>>> gate = AccessGate(token="s3cret")
>>> gate.decide("Bearer s3cret", "operator")
(Person(name='default', role='operator', verified=False), None)
>>> gate.decide(None, None), gate.decide("Bearer nope", "labeller")[1].status
((None, None), 401)
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from metro_app.access.roles import Person, Role
from metro_app.access.tokens import TokenFile

__all__ = ["AccessGate", "Refusal", "DEFAULT_PERSON"]

#: Who holds the single shared token.
DEFAULT_PERSON = Person("default", "operator", verified=False)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: 401 (no or unknown token) or 403 (role too small)."""

    status: int
    detail: str


@dataclass(frozen=True)
class AccessGate:
    """Identify the person behind an ``Authorization`` header and check their role."""

    token: str | None = field(default=None, repr=False)
    tokens: TokenFile | None = None
    public_reads: bool = False

    @property
    def mode(self) -> str:
        """``tokens``, ``token`` (the single shared one) or ``none``."""
        return "tokens" if self.tokens is not None else "token" if self.token else "none"

    @property
    def open_reads(self) -> bool:
        return self.tokens is None or self.public_reads

    def identify(self, authorization: str | None) -> Person | None:
        """The person whose bearer token the header carries; None when none or unknown."""
        scheme, _, given = (authorization or "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return None
        if self.tokens is not None:
            return self.tokens.book().person(given)
        if self.token and hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode()):
            return DEFAULT_PERSON
        return None

    def decide(self, authorization: str | None, role: Role | None) -> tuple[Person | None, Refusal | None]:
        """(the person, None) when allowed, else (the person or None, the refusal).

        `role` None is a read that needs no more than the hub's read rule: open, or a viewer token.
        """
        person = self.identify(authorization)
        if role is None:
            if self.open_reads or person is not None:
                return person, None
            role = "viewer"
        if person is None:
            return None, Refusal(401, self._why_401(authorization))
        if not person.may(role):
            return person, Refusal(403, f"{person.name} is a {person.role}; this needs the {role} role")
        return person, None

    def _why_401(self, authorization: str | None) -> str:
        if self.mode == "none":
            return (
                "no API token is configured on the hub (EDGE_MNIST_API_TOKEN or metro-app run --tokens FILE)"
            )
        return "bad or missing bearer token" if authorization else "this needs a bearer token"
