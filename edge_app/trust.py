"""Which models an edge may serve: those signed by a key it trusts.

The edge trusts the keys in ``--trusted-keys`` (one ``hub.pub`` line each; two during a key
change) or, without that flag, the hub's ``hub.pub`` in ``$EDGE_MNIST_STATE_DIR/keys`` when a
hub on this machine made one (`edgemnist.signing.default_key_dir`). It refuses an unsigned
model, one signed by a key it does not trust, and one whose signature does not match the model
and its header. An edge that trusts no key refuses every model and says so at start-up.
``--allow-unsigned-models`` serves unsigned models (and, with no trusted key, signed ones
unchecked) with a warning at every model; a signed model must still verify when keys are known.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgemnist.errors import ConfigError
from edgemnist.signing import PUBLIC_KEY_FILE, TrustedKeys, default_key_dir
from edgemnist.wire.envelope import ModelEnvelope

__all__ = ["ModelTrust"]

log = logging.getLogger(__name__)


class ModelTrust:
    """The edge's signature policy; `check` returns the reason to refuse a model, or None.

    Args:
        trusted: the keys given with --trusted-keys, or None.
        allow_unsigned: --allow-unsigned-models.
        default_keys: the hub.pub to trust when `trusted` is None, read when a model arrives
            (a hub on this machine may make it after the edge started).
    """

    def __init__(
        self,
        trusted: TrustedKeys | None = None,
        *,
        allow_unsigned: bool = False,
        default_keys: Path | None = None,
    ) -> None:
        self.trusted = trusted
        self.allow_unsigned = allow_unsigned
        self.default_keys = default_keys
        self._loaded: tuple[float, TrustedKeys] | None = None

    @classmethod
    def from_file(cls, path: Path | None, *, allow_unsigned: bool = False) -> ModelTrust:
        """The keys in `path` (ConfigError at start-up if the file is bad), else the hub's on this machine."""
        if path is not None:
            return cls(TrustedKeys.load(path), allow_unsigned=allow_unsigned)
        return cls(None, allow_unsigned=allow_unsigned, default_keys=default_key_dir() / PUBLIC_KEY_FILE)

    def keys(self) -> TrustedKeys | None:
        """The keys trusted now: --trusted-keys, else the default hub.pub if it exists (reloaded when it changes)."""
        if self.trusted is not None or self.default_keys is None:
            return self.trusted
        try:
            mtime = self.default_keys.stat().st_mtime
        except OSError:
            return None
        if self._loaded is None or self._loaded[0] != mtime:
            self._loaded = (mtime, TrustedKeys.load(self.default_keys))
            log.info(
                "trusting the %d key(s) in %s (no --trusted-keys)", len(self._loaded[1]), self.default_keys
            )
        return self._loaded[1]

    def describe(self) -> None:
        """Say at start-up which models this edge will serve."""
        try:
            trusted = self.keys()
        except ConfigError as exc:
            trusted = None
            log.error("%s", exc)
        if trusted is None and self.allow_unsigned:
            log.warning(
                "--allow-unsigned-models and no trusted keys: models from the models topic are checked "
                "for integrity only, NOT for origin; anyone who can write that topic can deploy to this camera"
            )
        elif trusted is None:
            log.warning(
                "no trusted keys: every model published on the models topic will be REFUSED. Give the "
                "hub's hub.pub with --trusted-keys FILE (EDGE_MNIST_TRUSTED_KEYS)%s, or --allow-unsigned-models",
                f" or let a hub on this machine make {self.default_keys}" if self.default_keys else "",
            )
        else:
            log.info(
                "serving only models signed by one of %d key(s) in %s%s",
                len(trusted),
                trusted.source,
                "; unsigned models too (--allow-unsigned-models)" if self.allow_unsigned else "",
            )

    def check(self, env: ModelEnvelope) -> str | None:
        try:
            trusted = self.keys()
        except ConfigError as exc:
            return f"cannot read the trusted keys: {exc}"
        if self.allow_unsigned and (env.signature is None or trusted is None):
            log.warning("model %s served without checking who made it (--allow-unsigned-models)", env.version)
            return None
        if trusted is None:
            return (
                "this edge trusts no key: give it the hub's hub.pub with --trusted-keys FILE, "
                "or --allow-unsigned-models"
            )
        return env.check_signature(trusted)
