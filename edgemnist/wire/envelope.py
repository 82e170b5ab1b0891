"""The model envelope: one record on the models topic carries a skops model and its card.

The value is ``EMM1`` + a 4-byte big-endian header length + a JSON header
(version, sha256, parent, created, targets, size, and ``signature`` when the hub signed it) + the
skops bytes, so the
record is self-contained on any broker (no reliance on record headers). The
record key names the audience: ``*`` for every camera, otherwise the sorted
target names joined by commas, so a compacted topic keeps the newest model per
audience and a rollback to the same cameras replaces the canary.

The header's ``role`` says how the cameras run the model: ``serve`` (the
default, and what a header without the key means) or ``shadow``: score beside
the serving model and report, never decide. A shadow record's key is the
audience prefixed by ``shadow:``, so it never replaces a served model under
compaction and edges that know no roles ignore it (the key names no camera);
a tombstone under that key withdraws the shadow model.

Parsing checks the envelope's shape only; the model's sha256 and its types are
verified when it is loaded (`edgemnist.model.load_model_bytes`), which is where
a tampered or foreign model is refused. The signature (`edgemnist.signing`) is checked by the
edge against its trusted keys before the model is loaded.

>>> env = ModelEnvelope("m-1", "0" * 64, b"PK", targets=("RotB",))
>>> back = ModelEnvelope.from_record(*env.to_record())
>>> back.version, back.targets, back.data, back.key
('m-1', ('RotB',), b'PK', b'RotB')
>>> back.applies_to("RotB-host1"), back.applies_to("RotA-host1")
(True, False)
>>> shadow = ModelEnvelope("m-2", "0" * 64, b"PK", targets=("RotB",), role="shadow")
>>> ModelEnvelope.from_record(*shadow.to_record()).role, shadow.key
('shadow', b'shadow:RotB')
"""

from __future__ import annotations

import dataclasses
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from edgemnist.errors import SchemaError
from edgemnist.signing import ModelSignature, SigningKey, TrustedKeys

__all__ = ["MODEL_MAGIC", "MAX_MODEL_BYTES", "ALL_CAMERAS", "ROLES", "SHADOW_KEY_PREFIX", "ModelEnvelope"]

MODEL_MAGIC = b"EMM1"
MAX_MODEL_BYTES = 16 * 2**20  # the models topic is created with max.message.bytes just above this
MAX_HEADER_BYTES = 64 * 1024
ALL_CAMERAS = b"*"
ROLES = ("serve", "shadow")
SHADOW_KEY_PREFIX = b"shadow:"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def targets_match(camera: str, targets: Iterable[str]) -> bool:
    """Whether `camera` (``<camera>-<hostname>``) is one of `targets` (full names or camera parameters).

    >>> targets_match("Line3-host7", ["Line3"]), targets_match("Line30-host7", ["Line3"])
    (True, False)
    """
    return any(camera == t or camera.startswith(f"{t}-") for t in targets)


@dataclass(frozen=True, slots=True, eq=False)
class ModelEnvelope:
    """A model on the wire: skops bytes plus the card fields an edge needs to verify and pick it."""

    version: str
    sha256: str
    data: bytes
    parent: str | None = None
    created: str | None = None
    targets: tuple[str, ...] | None = None  # None = every camera
    role: str = "serve"  # or "shadow": scores beside the serving model, never decides
    signature: ModelSignature | None = None
    seq: int | None = None  # the hub's publication number: grows with every record it publishes

    @property
    def key(self) -> bytes:
        """Kafka record key: the audience (and role), so compaction keeps the newest model per audience."""
        audience = ALL_CAMERAS if self.targets is None else ",".join(sorted(self.targets)).encode()
        return SHADOW_KEY_PREFIX + audience if self.role == "shadow" else audience

    def applies_to(self, camera: str) -> bool:
        """Whether `camera` (``<camera>-<hostname>``) should run this model.

        A target matches the full camera name or its camera parameter (the part before ``-<hostname>``).
        """
        return self.targets is None or targets_match(camera, self.targets)

    def header(self) -> dict[str, Any]:
        head: dict[str, Any] = {
            "version": self.version,
            "sha256": self.sha256,
            "parent": self.parent,
            "created": self.created,
            "targets": None if self.targets is None else list(self.targets),
            "size": len(self.data),
        }
        if self.role != "serve":  # a serving record reads exactly as before roles existed
            head["role"] = self.role
        if self.seq is not None:
            head["seq"] = self.seq
        if self.signature is not None:
            head["signature"] = self.signature.to_json()
        return head

    def signed(self, key: SigningKey) -> ModelEnvelope:
        """This envelope with `key`'s signature over the model bytes and its header (audience, role, seq)."""
        sig = key.sign_model(
            self.data,
            version=self.version,
            targets=self.targets,
            parent=self.parent,
            role=self._signed_role,
            seq=self.seq,
        )
        return dataclasses.replace(self, signature=sig)

    def check_signature(self, trusted: TrustedKeys) -> str | None:
        """None when a key in `trusted` signed this model for this audience and role, else why not."""
        return trusted.check_model(
            self.data,
            self.signature,
            version=self.version,
            targets=self.targets,
            parent=self.parent,
            role=self._signed_role,
            seq=self.seq,
        )

    @property
    def _signed_role(self) -> str | None:
        """The role as signed: null for serve (as signatures made before roles existed), else its name."""
        return None if self.role == "serve" else self.role

    def to_record(self) -> tuple[bytes, bytes]:
        """(key, value) for the models topic."""
        head = orjson.dumps(self.header())
        return self.key, MODEL_MAGIC + struct.pack(">I", len(head)) + head + self.data

    @classmethod
    def from_record(
        cls, key: bytes | None, value: bytes | None, where: str = "model record"
    ) -> ModelEnvelope:
        """Parse one record; SchemaError names `where` and what is wrong."""
        if value is None:
            raise SchemaError(f"{where}: empty value (tombstone)")
        if len(value) < 8 or value[:4] != MODEL_MAGIC:
            raise SchemaError(f"{where}: not a model envelope (no {MODEL_MAGIC!r} magic)")
        (n,) = struct.unpack(">I", value[4:8])
        if n > MAX_HEADER_BYTES or 8 + n > len(value):
            raise SchemaError(f"{where}: header length {n} does not fit the {len(value)}-byte record")
        try:
            head = orjson.loads(value[8 : 8 + n])
        except orjson.JSONDecodeError as exc:
            raise SchemaError(f"{where}: header is not JSON ({exc})") from exc
        if not isinstance(head, dict):
            raise SchemaError(f"{where}: header must be a JSON object")
        data = value[8 + n :]
        return cls(
            version=_text(head, "version", where),
            sha256=_sha256(head, where),
            data=_sized(data, head.get("size"), where),
            parent=_text(head, "parent", where, optional=True),
            created=_text(head, "created", where, optional=True),
            targets=_targets(head.get("targets"), where),
            role=_role(head.get("role"), where),
            signature=_signature(head.get("signature"), where),
            seq=_seq(head.get("seq"), where),
        )


def _role(v: Any, where: str) -> str:
    if v is None:
        return "serve"
    if v not in ROLES:
        raise SchemaError(f"{where}: header key 'role' must be one of {', '.join(ROLES)}, got {v!r:.40}")
    return str(v)


def _text(head: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    v = head.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, str) or not 1 <= len(v) <= 300 or "\x00" in v:
        raise SchemaError(f"{where}: header key {key!r} must be a string of 1 to 300 characters")
    return v


def _sha256(head: dict[str, Any], where: str) -> str:
    v = head.get("sha256")
    if not isinstance(v, str) or not _SHA256.fullmatch(v):
        raise SchemaError(f"{where}: header key 'sha256' must be 64 lowercase hex digits")
    return v


def _sized(data: bytes, size: Any, where: str) -> bytes:
    if isinstance(size, bool) or not isinstance(size, int) or size != len(data):
        raise SchemaError(f"{where}: header says {size!r} model bytes, the record holds {len(data)}")
    if size > MAX_MODEL_BYTES:
        raise SchemaError(f"{where}: model of {size} bytes is larger than {MAX_MODEL_BYTES}")
    return data


def _seq(v: Any, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 2**53 - 1:
        raise SchemaError(f"{where}: header key 'seq' must be null or an integer 0 to 2^53-1, got {v!r}")
    return v


def _targets(v: Any, where: str) -> tuple[str, ...] | None:
    if v is None:
        return None
    if (
        not isinstance(v, list)
        or not v
        or len(v) > 1000
        or not all(isinstance(t, str) and 1 <= len(t) <= 300 and "," not in t for t in v)
    ):
        raise SchemaError(f"{where}: header key 'targets' must be null or a non-empty list of camera names")
    return tuple(v)


def _signature(v: Any, where: str) -> ModelSignature | None:
    if v is None:
        return None
    try:
        return ModelSignature.from_json(v)
    except ValueError as exc:
        raise SchemaError(f"{where}: header key 'signature': {exc}") from exc
