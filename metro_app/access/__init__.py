"""People, roles and tokens on the hub's API (`gate`), the tokens file (`tokens`), the roles (`roles`)."""

from metro_app.access.gate import DEFAULT_PERSON, AccessGate, Refusal
from metro_app.access.roles import ROLES, Person, Role, role_of
from metro_app.access.tokens import TokenBook, TokenFile, add_person, new_token, token_hash

__all__ = [
    "DEFAULT_PERSON",
    "ROLES",
    "AccessGate",
    "Person",
    "Refusal",
    "Role",
    "TokenBook",
    "TokenFile",
    "add_person",
    "new_token",
    "role_of",
    "token_hash",
]
