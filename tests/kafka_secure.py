"""Apache Kafka with a SASL_SSL listener, for the tests that prove the apps work with real security.

A throwaway CA and a broker certificate for 127.0.0.1 are made per fixture (``cryptography``);
the broker serves SASL_SSL only (SCRAM-SHA-512 users written at format time with
``kafka-storage format --add-scram``), between brokers too; the KRaft controller listener stays
plaintext on loopback. Clients get the CA file, a user name and a password.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgemnist.kafka.settings import KafkaSettings
from edgemnist.testing.brokers import KAFKA_VERSION, ApacheKafka

__all__ = ["Tls", "make_tls", "SecureKafka", "MECHANISM"]

MECHANISM = "SCRAM-SHA-512"
_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required"


@dataclass(frozen=True)
class Tls:
    """PEM files: the CA clients trust, and the broker's key + certificate chain (one file)."""

    ca_file: Path
    broker_pem: Path


def make_tls(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Tls:
    """A CA valid for a day and a broker certificate it signed for `hosts` (IP or DNS names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-mnist test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    broker_pem = directory / "broker.pem"
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    broker_pem.write_bytes(key_pem + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    broker_pem.chmod(0o600)
    return Tls(ca_file, broker_pem)


class SecureKafka(ApacheKafka):
    """One Apache Kafka node whose only client listener is SASL_SSL with SCRAM-SHA-512 users."""

    kind = f"Apache Kafka {KAFKA_VERSION}, SASL_SSL with {MECHANISM}"

    def __init__(
        self, users: Mapping[str, str], *, super_users: tuple[str, ...] | None = None, **kwargs: object
    ) -> None:
        """`super_users` turns on the standard KRaft authorizer: only they (and the broker) may do
        anything an ACL does not allow; None (default) runs without an authorizer."""
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.users = dict(users)
        self.super_users = super_users
        self._broker_password = secrets.token_urlsafe(18)
        self.tls = make_tls(self.workdir / "tls")

    def settings(self, user: str | None = None, password: str | None = None) -> KafkaSettings:
        """Client settings for `user` (default: the first user), as the apps build them from env."""
        user = user or next(iter(self.users))
        return KafkaSettings(
            bootstrap_servers=(self.bootstrap_servers,),
            security_protocol="SASL_SSL",
            sasl_mechanism=MECHANISM,
            sasl_username=user,
            sasl_password=self.users[user] if password is None else password,
            ssl_cafile=str(self.tls.ca_file),
        )

    def _props(self) -> dict[str, str]:
        props = super()._props()
        listener = f"SASL_SSL://127.0.0.1:{self.port}"
        props.update({
            "listeners": f"{listener},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": listener,
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config":
                f'{_JAAS} username="broker" password="{self._broker_password}";',
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.tls.broker_pem),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.tls.ca_file),
            "ssl.client.auth": "none",
        })  # fmt: skip
        if self.super_users is not None:
            # the controller listener is PLAINTEXT on loopback: its principal is ANONYMOUS
            supers = ["broker", "ANONYMOUS", *self.super_users]
            props.update({
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users": ";".join(f"User:{u}" for u in supers),
                "allow.everyone.if.no.acl.found": "false",
            })  # fmt: skip
        return props

    def _format_args(self) -> list[str]:
        users = {"broker": self._broker_password, **self.users}
        scram = [
            arg
            for name, pw in users.items()
            for arg in ("--add-scram", f"{MECHANISM}=[name={name},password={pw}]")
        ]
        return [*super()._format_args(), *scram]
