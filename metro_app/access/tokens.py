"""The tokens file: per person a name, a role and the sha256 of their token (never the token).

A token is 32 random bytes (`secrets.token_urlsafe`), so a plain sha256 of it cannot be
reversed or guessed; a slow password hash (argon2) would only make every request slower,
since a bearer token names no person and the hub would have to try each stored hash.

The file is JSON, written whole (`edgemnist.files.write_atomic`) with mode 0600::

    {"people": [{"name": "ana", "role": "labeller", "sha256": "..."}]}

>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "tokens.json"
>>> token = add_person(path, "ana", "labeller")
>>> book = TokenBook.load(path)
>>> book.person(token)
Person(name='ana', role='labeller', verified=True)
>>> book.person("not-a-token") is None, token in path.read_text(), oct(path.stat().st_mode & 0o777)
(True, False, '0o600')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgemnist.errors import ConfigError
from edgemnist.files import write_atomic
from metro_app.access.roles import Person, role_of

__all__ = ["TokenBook", "TokenFile", "add_person", "token_hash", "new_token"]

log = logging.getLogger("metro_app")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


def token_hash(token: str) -> str:
    """The hex sha256 the tokens file keeps of `token`."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe, with a prefix that secret scanners can match."""
    return "emt_" + secrets.token_urlsafe(32)


class TokenBook:
    """The people of one tokens file, looked up by the hash of the token a request carries."""

    def __init__(self, people: Mapping[str, Person]) -> None:
        self._by_hash = dict(people)

    def __len__(self) -> int:
        return len(self._by_hash)

    def person(self, token: str) -> Person | None:
        """The person whose token this is; None for an unknown token."""
        return self._by_hash.get(token_hash(token)) if token else None

    def people(self) -> list[Person]:
        """Everyone in the book, by name."""
        return sorted(self._by_hash.values(), key=lambda p: p.name)

    @classmethod
    def load(cls, path: Path) -> TokenBook:
        """Read `path`; ConfigError naming the file and the entry that is wrong."""
        return cls(_by_hash(path, _entries(path)))


def _entries(path: Path) -> list[Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"tokens file {path} does not exist (make it: metro-app tokens add)") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"tokens file {path} is not readable JSON: {exc}") from exc
    people = doc.get("people") if isinstance(doc, dict) else None
    if not isinstance(people, list):
        raise ConfigError(f'tokens file {path}: expected {{"people": [...]}}')
    return people


def _by_hash(path: Path, entries: list[Any]) -> dict[str, Person]:
    out: dict[str, Person] = {}
    names: set[str] = set()
    for i, e in enumerate(entries):
        where = f"tokens file {path}, entry {i + 1}"
        if not isinstance(e, dict) or set(e) != {"name", "role", "sha256"}:
            raise ConfigError(f"{where}: expected exactly the keys name, role, sha256")
        name, digest = str(e["name"]), str(e["sha256"])
        if not _NAME.match(name) or name in names:
            raise ConfigError(f"{where}: name {name!r} is not a valid, unique name")
        if not _HEX.match(digest) or digest in out:
            raise ConfigError(f"{where} ({name}): sha256 must be 64 lowercase hex digits, unique")
        try:
            role = role_of(str(e["role"]))
        except ConfigError as exc:
            raise ConfigError(f"{where} ({name}): {exc}") from exc
        names.add(name)
        out[digest] = Person(name, role)
    return out


def add_person(path: Path, name: str, role: str, token: str | None = None) -> str:
    """Add `name` with `role` to the tokens file (made if missing, mode 0600); returns the token.

    `token` is for callers that already hold one (the demo); by default a new one is made.
    A name already in the file is refused: give each person, or each station, its own.
    """
    entries = _entries(path) if path.exists() else []
    book = _by_hash(path, entries)
    checked = role_of(role)
    if not _NAME.match(name):
        raise ConfigError(f"name {name!r}: letters, digits and . _ @ - only, at most 100 characters")
    if name in {p.name for p in book.values()}:
        raise ConfigError(f"tokens file {path} already has a person named {name!r}")
    token = token or new_token()
    if token_hash(token) in book:
        raise ConfigError(f"tokens file {path}: that token is already someone else's")
    entries.append({"name": name, "role": checked, "sha256": token_hash(token)})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps({"people": entries}, indent=1) + "\n").encode(), mode=0o600)
    return token


class TokenFile:
    """A `TokenBook` that reloads its file when it changes, so `tokens add` needs no hub restart.

    A file that turns bad keeps the last good book and is logged once per change.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()
        self._book = TokenBook.load(path)
        if self._stamp is not None and self._stamp[2] & 0o077:
            log.warning("tokens file %s is readable by others (mode %o): chmod 600 it", path, self._stamp[2])

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_mode & 0o777

    def book(self) -> TokenBook:
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            try:
                self._book = TokenBook.load(self.path)
                log.info("tokens file %s reloaded: %d people", self.path, len(self._book))
            except ConfigError as exc:
                log.error("%s; keeping the %d people read before", exc, len(self._book))
        return self._book
