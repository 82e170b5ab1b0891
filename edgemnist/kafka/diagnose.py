"""Why a Kafka client could not bootstrap, when the reason is a setting that no retry will fix.

kafka-python retries a refused SASL login or a plaintext client on a TLS port as if the broker
were down, and reports only "Unable to bootstrap". The edge would then buffer forever and the
hub wait forever. These helpers watch kafka-python's connection log while a client bootstraps,
probe the port for TLS, and name the broker and the cause; they never see or print a secret.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Iterator

from edgemnist.errors import ConfigError
from edgemnist.kafka.settings import KafkaSettings

__all__ = ["watch_connections", "misconfiguration", "reachable"]

_AUTH_MARKERS = ("SaslAuthenticationFailed", "AuthenticationFailed", "invalid credentials")
_CERT_MARKERS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "SSLCertVerificationError")


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception), self._guard:
            self.lines.append(record.getMessage())


@contextlib.contextmanager
def watch_connections() -> Iterator[list[str]]:
    """Collect kafka-python's connection warnings and errors while the body runs."""
    logger = logging.getLogger("kafka")
    collector = _Collector()
    logger.addHandler(collector)
    try:
        yield collector.lines
    finally:
        logger.removeHandler(collector)


def _speaks_tls(server: str, timeout: float, cafile: str | None = None, verify: bool = False) -> bool:
    """True when `server` completes a TLS handshake (verified against `cafile` when `verify`)."""
    host, _, port = server.rpartition(":")
    context = ssl.create_default_context(cafile=cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                return True
    except (OSError, ValueError):
        return False


def reachable(settings: KafkaSettings, timeout: float = 3.0) -> bool:
    """True when some bootstrap server accepts a TCP connection (say nothing about Kafka yet)."""
    for server in settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        with contextlib.suppress(OSError, ValueError):
            socket.create_connection((host, int(port)), timeout=timeout).close()
            return True
    return False


def misconfiguration(settings: KafkaSettings, lines: list[str]) -> ConfigError | None:
    """A ConfigError naming the broker and the cause, if the failure is one no retry can fix."""
    servers = ",".join(settings.bootstrap_servers)
    text = "\n".join(lines)
    if settings.uses_sasl and any(marker in text for marker in _AUTH_MARKERS):
        return ConfigError(
            f"Kafka at {servers} refused the SASL login of user {settings.sasl_username!r} "
            f"({settings.sasl_mechanism} over {settings.security_protocol}): authentication failed; "
            "check EDGE_MNIST_SASL_USERNAME / EDGE_MNIST_SASL_PASSWORD or the credentials file"
        )
    if settings.uses_sasl and settings.uses_ssl and "SSLTransport" in text and "socket disconnected" in text:
        # kafka-python often loses the broker's "authentication failed" answer when the broker
        # closes the TLS connection right after it; a verified TLS handshake that is followed,
        # on every attempt, by the broker hanging up during SASL means the login was refused.
        trusted = [s for s in settings.bootstrap_servers if _speaks_tls(s, 3.0, settings.ssl_cafile, True)]
        if trusted:
            return ConfigError(
                f"Kafka at {','.join(trusted)} closed every connection during the SASL login of user "
                f"{settings.sasl_username!r} ({settings.sasl_mechanism} over {settings.security_protocol}): "
                "authentication failed (a wrong password, or a mechanism the broker does not enable); check "
                "EDGE_MNIST_SASL_USERNAME / EDGE_MNIST_SASL_PASSWORD / EDGE_MNIST_SASL_MECHANISM or the credentials file"
            )
    if settings.uses_ssl and any(marker in text for marker in _CERT_MARKERS):
        ca = settings.ssl_cafile or "the system CAs"
        return ConfigError(
            f"Kafka at {servers}: the broker's TLS certificate is not trusted by {ca} "
            "(certificate verify failed); set EDGE_MNIST_SSL_CAFILE to the CA that signed it"
        )
    if not settings.uses_ssl:
        tls = [s for s in settings.bootstrap_servers if _speaks_tls(s, 3.0)]
        if tls:
            return ConfigError(
                f"Kafka at {','.join(tls)} speaks TLS, but this client connects with security "
                f"protocol {settings.security_protocol} (plaintext): set EDGE_MNIST_SECURITY_PROTOCOL "
                "to SASL_SSL or SSL, and EDGE_MNIST_SSL_CAFILE to the broker's CA"
            )
    return None
