"""Which models an edge may serve: those signed by a key it trusts.

With ``--trusted-keys`` the edge refuses an unsigned model, one signed by a key it does
not trust and one whose signature does not match the model and its header. With
``--allow-unsigned-models`` as well, an unsigned model is served with a warning, but a
signed one must still verify. With no trusted keys the edge cannot check origin at all:
it serves models checked for integrity only (sha256, skops types), as before signing
existed, and says so loudly at start-up and at every model (see docs/security.md for why
this is the default).
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgemnist.signing import TrustedKeys
from edgemnist.wire.envelope import ModelEnvelope

__all__ = ["ModelTrust"]

log = logging.getLogger(__name__)


class ModelTrust:
    """The edge's signature policy; `check` returns the reason to refuse a model, or None."""

    def __init__(self, trusted: TrustedKeys | None = None, *, allow_unsigned: bool = False) -> None:
        self.trusted = trusted
        self.allow_unsigned = allow_unsigned or trusted is None

    @classmethod
    def from_file(cls, path: Path | None, *, allow_unsigned: bool = False) -> ModelTrust:
        """Load the trusted keys (ConfigError at start-up if the file is bad)."""
        return cls(None if path is None else TrustedKeys.load(path), allow_unsigned=allow_unsigned)

    def describe(self) -> None:
        """Say at start-up which models this edge will serve."""
        if self.trusted is None:
            log.warning(
                "no trusted keys (--trusted-keys / EDGE_MNIST_TRUSTED_KEYS): models from the models "
                "topic are checked for integrity only, NOT for origin; anyone who can write that topic "
                "can deploy to this camera. Give the hub's hub.pub to require signed models"
            )
        elif self.allow_unsigned:
            log.warning(
                "--allow-unsigned-models: unsigned models are served; signed ones must verify against "
                "the %d key(s) in %s",
                len(self.trusted),
                self.trusted.source,
            )
        else:
            log.info(
                "serving only models signed by one of %d key(s) in %s", len(self.trusted), self.trusted.source
            )

    def check(self, env: ModelEnvelope) -> str | None:
        if env.signature is None and self.allow_unsigned:
            log.warning("model %s is unsigned; serving it without checking who made it", env.version)
            return None
        if self.trusted is None:
            log.warning(
                "model %s is signed by key %s, but this edge trusts no key; serving it unchecked",
                env.version,
                env.signature.key if env.signature else "?",
            )
            return None
        return env.check_signature(self.trusted)
