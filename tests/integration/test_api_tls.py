"""HTTPS on the hub API (issue 21.5): `metro-app run --tls-cert/--tls-key` through the hub's own uvicorn server,
checked by the client against a CA this test makes (loopback 127.0.0.1 in the certificate's SAN)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from metro_app.access import AccessGate, TokenFile, add_person
from metro_app.api.app import create_app
from metro_app.client import ApiError, ViewClient
from metro_app.samples import make_image
from metro_app.service import api_server
from metro_app.settings import HubSettings
from metro_app.store import Store
from metro_app.testing import free_port, wait_until


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer, *, ca: bool
) -> x509.Certificate:  # noqa: ANN001
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return b.sign(signer, hashes.SHA256())


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(CA cert, server cert, server key) in PEM: a test CA that signs a cert for 127.0.0.1."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-mnist test CA")])
    ca = _cert("edge-mnist test CA", ca_key, ca_name, ca_key, ca=True)
    server = _cert("127.0.0.1", key, ca_name, ca_key, ca=False)
    paths = folder / "ca.pem", folder / "hub.pem", folder / "hub.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    paths[2].chmod(0o600)
    return paths


@pytest.fixture
def https_hub(tmp_path):
    """The hub's API server over HTTPS with a tokens file; yields (base URL, CA file, operator token)."""
    ca, cert, key = make_certificates(tmp_path)
    tokens = tmp_path / "tokens.json"
    token = add_person(tokens, "olu", "operator")
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    store.write_batch([], [make_image("CamA", 0)])
    port = free_port()
    settings = HubSettings(
        host="127.0.0.1", port=port, tls_cert=str(cert), tls_key=str(key), tokens=str(tokens)
    )
    server = api_server(create_app(store, gate=AccessGate(tokens=TokenFile(tokens))), settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the HTTPS API server to start", every=0.05)
    yield f"https://127.0.0.1:{port}", ca, token
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


def test_the_hub_serves_https_that_the_client_verifies_with_the_ca_file(https_hub):
    base, ca, token = https_hub
    client = ViewClient(base, token=token, ca_file=str(ca), timeout=10)
    assert client.health()["status"] == "ok"
    assert client.whoami()["person"] == {"name": "olu", "role": "operator", "verified": True}
    stored = client.add_label("CamA/r1/i0", "3")
    assert stored["labeller"] == "olu" and stored["verified"] is True
    assert [r["route"] for r in client.audit()] == ["POST /labels"]


def test_the_ca_file_comes_from_the_env_and_without_it_the_certificate_is_refused(https_hub, monkeypatch):
    base, ca, token = https_hub
    monkeypatch.delenv("EDGE_MNIST_API_CA_FILE", raising=False)
    with pytest.raises(ApiError, match="CERTIFICATE_VERIFY_FAILED"):
        ViewClient(base, token=token, timeout=10).health()
    monkeypatch.setenv("EDGE_MNIST_API_CA_FILE", str(ca))
    assert ViewClient(base, token=token, timeout=10).cameras() == []
    with pytest.raises(ApiError, match="CA file .*nope.pem"):
        ViewClient(base, ca_file=str(ca.with_name("nope.pem")))


def test_plain_http_on_the_https_port_gets_no_answer(https_hub):
    base, _, _ = https_hub
    with pytest.raises(OSError):
        urllib.request.urlopen(base.replace("https:", "http:") + "/health", timeout=5).read()
