"""Ed25519 signatures on models: the hub signs what it publishes, edges serve only what a trusted key signed.

A signature covers the skops bytes (their sha256, recomputed by the verifier) and the
envelope header fields that say who may run the model (version, role, targets, parent),
so a model signed for one camera or role cannot be replayed to another. What is signed
is `signed_payload`: a fixed prefix, the canonical JSON of those fields, and the digest.

A public key is one line, ``ed25519 <base64 of the 32 raw bytes> <key id>``; the key id is
the first 16 hex digits of the key's sha256 and names the key in signatures and logs. A
trusted-keys file holds one such line per key (``#`` comments allowed), so rotating a key
means trusting the old and the new one for a while. The private key file is PKCS#8 PEM,
written with mode 0600; it is never printed or logged.

>>> key = SigningKey.generate()
>>> trusted = TrustedKeys.parse(key.public_line())
>>> sig = key.sign_model(b"PK..", version="m-2", targets=("RotB",))
>>> trusted.check_model(b"PK..", sig, version="m-2", targets=("RotB",)) is None
True
>>> trusted.check_model(b"PK..", sig, version="m-2", targets=None).split(":")[0]  # replayed to all
'bad signature'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgemnist.errors import ConfigError

__all__ = [
    "default_key_dir",
    "default_signing_key",
    "ALGORITHM",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "ModelSignature",
    "SigningKey",
    "TrustedKeys",
    "init_keys",
    "key_id",
    "signed_payload",
]

ALGORITHM = "ed25519"
PRIVATE_KEY_FILE = "hub.key"
PUBLIC_KEY_FILE = "hub.pub"
_DOMAIN = b"edge-mnist model signature v1\n"


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """A signature as it travels in the envelope header and in a model file's card."""

    key: str  # key id of the signer
    sig: str  # base64 of the 64-byte Ed25519 signature
    alg: str = ALGORITHM

    def to_json(self) -> dict[str, str]:
        return {"alg": self.alg, "key": self.key, "sig": self.sig}

    @classmethod
    def from_json(cls, v: object) -> ModelSignature:
        """Parse the ``signature`` object; ValueError says what is wrong."""
        if not isinstance(v, dict) or set(v) != {"alg", "key", "sig"}:
            raise ValueError("signature must be an object with exactly alg, key and sig")
        if not all(isinstance(v[k], str) and 0 < len(v[k]) <= 200 for k in ("alg", "key", "sig")):
            raise ValueError("signature fields must be strings of 1 to 200 characters")
        return cls(key=v["key"], sig=v["sig"], alg=v["alg"])


def key_id(public: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the sha256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signed_payload(
    data: bytes,
    *,
    version: str,
    targets: Iterable[str] | None = None,
    parent: str | None = None,
    role: str | None = None,
) -> bytes:
    """The bytes a model signature covers: domain, canonical header fields, sha256 of the model."""
    head = {
        "version": version,
        "role": role,
        "targets": None if targets is None else sorted(targets),
        "parent": parent,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return _DOMAIN + orjson.dumps(head, option=orjson.OPT_SORT_KEYS)


class SigningKey:
    """The hub's private key; its repr never shows the key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path | str) -> SigningKey:
        """Read a PKCS#8 PEM Ed25519 key; ConfigError names the file (never its content)."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"signing key {path}: cannot read it ({exc.strerror})") from exc
        try:
            private = serialization.load_pem_private_key(raw, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"signing key {path}: not an unencrypted PEM private key") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigError(f"signing key {path}: not an Ed25519 key")
        return cls(private)

    def private_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_line(self) -> str:
        """The public key in ``hub.pub`` format (one line, no newline)."""
        return public_line(self.public)

    def sign_model(
        self,
        data: bytes,
        *,
        version: str,
        targets: Iterable[str] | None = None,
        parent: str | None = None,
        role: str | None = None,
    ) -> ModelSignature:
        payload = signed_payload(data, version=version, targets=targets, parent=parent, role=role)
        return ModelSignature(self.key_id, base64.b64encode(self._private.sign(payload)).decode())


def public_line(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{ALGORITHM} {base64.b64encode(raw).decode()} {key_id(public)}"


class TrustedKeys:
    """The public keys an edge trusts, by key id."""

    def __init__(self, keys: dict[str, Ed25519PublicKey], source: str = "trusted keys") -> None:
        self.keys = keys
        self.source = source

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def parse(cls, text: str, source: str = "trusted keys") -> TrustedKeys:
        """Parse ``hub.pub`` lines; ConfigError names the source and line."""
        keys: dict[str, Ed25519PublicKey] = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) not in (2, 3) or parts[0] != ALGORITHM:
                raise ConfigError(f"{source} line {n}: expected '{ALGORITHM} <base64 key> [key id]'")
            try:
                raw = base64.b64decode(parts[1], validate=True)
                public = Ed25519PublicKey.from_public_bytes(raw)
            except (binascii.Error, ValueError) as exc:
                raise ConfigError(f"{source} line {n}: not a 32-byte base64 Ed25519 public key") from exc
            kid = key_id(public)
            if len(parts) == 3 and parts[2] != kid:
                raise ConfigError(f"{source} line {n}: key id {parts[2]} does not match the key ({kid})")
            keys[kid] = public
        if not keys:
            raise ConfigError(f"{source}: no public key in it")
        return cls(keys, source)

    @classmethod
    def load(cls, path: Path | str) -> TrustedKeys:
        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"trusted keys {path}: cannot read it ({exc})") from exc
        return cls.parse(text, f"trusted keys {path}")

    def check_model(
        self,
        data: bytes,
        signature: ModelSignature | None,
        *,
        version: str,
        targets: Iterable[str] | None = None,
        parent: str | None = None,
        role: str | None = None,
    ) -> str | None:
        """None when a trusted key signed exactly this model and header, else the reason to refuse it."""
        if signature is None:
            return "unsigned: the model carries no signature"
        if signature.alg != ALGORITHM:
            return f"unsupported signature algorithm {signature.alg!r}"
        public = self.keys.get(signature.key)
        if public is None:
            return f"unknown key: signed by key {signature.key}, which is not in the {self.source}"
        payload = signed_payload(data, version=version, targets=targets, parent=parent, role=role)
        try:
            public.verify(base64.b64decode(signature.sig, validate=True), payload)
        except (InvalidSignature, binascii.Error, ValueError):
            return (
                f"bad signature: the signature by key {signature.key} does not match the model and its header"
            )
        return None


def default_key_dir() -> Path:
    """Where the hub keeps its key pair when no --signing-key is given: $EDGE_MNIST_STATE_DIR/keys.

    An edge given no --trusted-keys trusts the hub.pub found here, so a hub and edges on one
    machine (the demo, a laptop) sign and check without setup; elsewhere edges need the file.
    """
    from edgemnist.kafka.settings import state_dir

    return state_dir() / "keys"


def default_signing_key() -> tuple[SigningKey, Path, bool]:
    """(key, its file, made now) from `default_key_dir`, making the pair on first use.

    Two hubs starting at once make one pair: each writes a pair into a directory of its own
    and renames it into place; the loser of the rename loads the winner's pair.
    """
    directory = default_key_dir()
    private = directory / PRIVATE_KEY_FILE
    made = False
    if not private.exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".keys-", dir=directory.parent))
        init_keys(staging)
        try:
            if directory.exists() and not any(directory.iterdir()):
                directory.rmdir()
            os.rename(staging, directory)
            made = True
        except OSError:  # another process put its pair there first
            shutil.rmtree(staging, ignore_errors=True)
    return SigningKey.load(private), private, made


def init_keys(directory: Path | str) -> SigningKey:
    """Write a new ``hub.key`` (mode 0600) and ``hub.pub`` in `directory`; never overwrites a key."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    if private.exists():
        raise ConfigError(f"{private} already exists; not overwriting a signing key")
    key = SigningKey.generate()
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_pem())
    os.chmod(private, 0o600)
    public.write_text(key.public_line() + "\n")
    return key
