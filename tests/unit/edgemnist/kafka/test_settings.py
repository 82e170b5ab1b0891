"""Kafka settings: env, Event Streams credentials JSON, TLS/SASL configs, masking, errors."""

from __future__ import annotations

import json

import pytest

from edgemnist.errors import ConfigError
from edgemnist.kafka.settings import ENV_VARS, KafkaSettings, resolve

SECRET = "s3cr3t-api-key-XYZ"

EVENT_STREAMS = {
    "api_key": SECRET,
    "apikey": SECRET,
    "iam_apikey_description": "Auto-generated for key ...",
    "iam_role_crn": "crn:v1:bluemix:public:iam::::serviceRole:Writer",
    "instance_id": "0c8b0b5c-0000-4000-8000-000000000000",
    "kafka_admin_url": "https://abc.svc01.us-south.eventstreams.cloud.ibm.com",
    "kafka_brokers_sasl": [
        "broker-0-abc.kafka.svc01.us-south.eventstreams.cloud.ibm.com:9093",
        "broker-1-abc.kafka.svc01.us-south.eventstreams.cloud.ibm.com:9093",
    ],
    "kafka_http_url": "https://abc.svc01.us-south.eventstreams.cloud.ibm.com",
    "password": SECRET,
    "user": "token",
}


@pytest.fixture
def creds(tmp_path):
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(EVENT_STREAMS))
    return path


def test_every_kafka_env_var_is_registered():
    for name in [
        "EDGE_MNIST_BOOTSTRAP_SERVERS",
        "EDGE_MNIST_CREDENTIALS",
        "EDGE_MNIST_SECURITY_PROTOCOL",
        "EDGE_MNIST_SASL_USERNAME",
        "EDGE_MNIST_SASL_PASSWORD",
        "EDGE_MNIST_SSL_CAFILE",
        "EDGE_MNIST_SSL_CERTFILE",
        "EDGE_MNIST_SSL_KEYFILE",
    ]:
        assert ENV_VARS[name]
    assert all(name.startswith("EDGE_MNIST_") for name in ENV_VARS)


def test_plaintext_from_env():
    s = KafkaSettings.from_env({"EDGE_MNIST_BOOTSTRAP_SERVERS": "a:9092, b:9093"})
    assert s.bootstrap_servers == ("a:9092", "b:9093")
    assert s.to_kafka_config() == {
        "bootstrap_servers": ["a:9092", "b:9093"],
        "security_protocol": "PLAINTEXT",
    }


def test_plain_kafka_bootstrap_servers_is_a_fallback():
    assert KafkaSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k:1"}).bootstrap_servers == ("k:1",)
    both = {"KAFKA_BOOTSTRAP_SERVERS": "k:1", "EDGE_MNIST_BOOTSTRAP_SERVERS": "e:2"}
    assert KafkaSettings.from_env(both).bootstrap_servers == ("e:2",)


def test_nothing_configured_is_allowed_until_a_config_is_needed():
    s = KafkaSettings.from_env({})
    assert not s.configured
    with pytest.raises(ConfigError, match="EDGE_MNIST_BOOTSTRAP_SERVERS"):
        s.to_kafka_config()
    with pytest.raises(ConfigError, match="EDGE_MNIST_BOOTSTRAP_SERVERS"):
        resolve(environ={})
    assert not resolve(environ={}, required=False).configured


def test_event_streams_credentials_as_is(creds):
    s = KafkaSettings.from_credentials_file(creds)
    assert s.bootstrap_servers == tuple(EVENT_STREAMS["kafka_brokers_sasl"])
    assert s.to_kafka_config() == {
        "bootstrap_servers": EVENT_STREAMS["kafka_brokers_sasl"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "token",
        "sasl_plain_password": SECRET,
    }


def test_sasl_from_env_infers_sasl_ssl():
    env = {
        "EDGE_MNIST_BOOTSTRAP_SERVERS": "b:9093",
        "EDGE_MNIST_SASL_USERNAME": "alice",
        "EDGE_MNIST_SASL_PASSWORD": SECRET,
    }
    config = KafkaSettings.from_env(env).to_kafka_config()
    assert config["security_protocol"] == "SASL_SSL"
    assert (config["sasl_mechanism"], config["sasl_plain_username"], config["sasl_plain_password"]) == (
        "PLAIN",
        "alice",
        SECRET,
    )


def test_tls_with_client_certificate(tmp_path):
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "EDGE_MNIST_BOOTSTRAP_SERVERS": "b:9093",
        "EDGE_MNIST_SSL_CAFILE": str(files["ca"]),
        "EDGE_MNIST_SSL_CERTFILE": str(files["cert"]),
        "EDGE_MNIST_SSL_KEYFILE": str(files["key"]),
        "EDGE_MNIST_SSL_PASSWORD": SECRET,
    }
    config = KafkaSettings.from_env(env).to_kafka_config()
    assert config == {
        "bootstrap_servers": ["b:9093"],
        "security_protocol": "SSL",
        "ssl_cafile": str(files["ca"]),
        "ssl_certfile": str(files["cert"]),
        "ssl_keyfile": str(files["key"]),
        "ssl_password": SECRET,
    }
    assert not any(key.startswith("sasl") for key in config)


def test_precedence_cli_over_credentials_over_env(creds):
    env = {"EDGE_MNIST_BOOTSTRAP_SERVERS": "env:1", "EDGE_MNIST_CREDENTIALS": str(creds)}
    assert resolve(environ=env).bootstrap_servers == tuple(EVENT_STREAMS["kafka_brokers_sasl"])
    s = resolve(bootstrap_servers="cli:2", environ=env)
    assert s.bootstrap_servers == ("cli:2",)
    assert s.sasl_username == "token"  # the rest still comes from the credentials file
    assert resolve(environ={"EDGE_MNIST_BOOTSTRAP_SERVERS": "env:1"}).bootstrap_servers == ("env:1",)


def test_secrets_never_printed(creds, tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("x")
    s = KafkaSettings.from_credentials_file(creds)
    tls = KafkaSettings(
        bootstrap_servers=("b:1",), security_protocol="SSL", ssl_keyfile=str(key), ssl_password=SECRET
    )
    for settings in (s, tls):
        for text in (repr(settings), str(settings), str(settings.masked()), f"{settings}"):
            assert SECRET not in text
            assert "****" in text
    assert s.masked()["sasl_username"] == "token"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EDGE_MNIST_SECURITY_PROTOCOL": "TLS"}, "EDGE_MNIST_SECURITY_PROTOCOL"),
        ({"EDGE_MNIST_SECURITY_PROTOCOL": "SASL_SSL"}, "EDGE_MNIST_SASL_USERNAME"),
        (
            {"EDGE_MNIST_SECURITY_PROTOCOL": "PLAINTEXT", "EDGE_MNIST_SASL_USERNAME": "u"},
            "EDGE_MNIST_SASL_USERNAME",
        ),
        ({"EDGE_MNIST_SASL_USERNAME": "u"}, "EDGE_MNIST_SASL_PASSWORD"),
        (
            {
                "EDGE_MNIST_SASL_USERNAME": "u",
                "EDGE_MNIST_SASL_PASSWORD": "p",
                "EDGE_MNIST_SASL_MECHANISM": "GSSAPI",
            },
            "EDGE_MNIST_SASL_MECHANISM",
        ),
        ({"EDGE_MNIST_SSL_CAFILE": "/nonexistent/ca.pem"}, "EDGE_MNIST_SSL_CAFILE"),
        ({"EDGE_MNIST_BOOTSTRAP_SERVERS": "no-port"}, "EDGE_MNIST_BOOTSTRAP_SERVERS"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "h:notaport"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ],
)
def test_config_error_names_the_setting(env, named):
    if not any("BOOTSTRAP" in name for name in env):
        env = {"EDGE_MNIST_BOOTSTRAP_SERVERS": "b:9092", **env}
    with pytest.raises(ConfigError, match=named):
        resolve(environ=env)


def test_credentials_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match="nope.json"):
        KafkaSettings.from_credentials_file(missing)
    with pytest.raises(ConfigError, match="nope.json"):
        resolve(environ={"EDGE_MNIST_CREDENTIALS": str(missing)})
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ConfigError, match="garbage.json.*not JSON"):
        KafkaSettings.from_credentials_file(garbage)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"user": "token"}))
    with pytest.raises(ConfigError, match="partial.json.*kafka_brokers_sasl.*api_key"):
        KafkaSettings.from_credentials_file(partial)


def test_settings_are_frozen():
    s = KafkaSettings(bootstrap_servers=("b:1",))
    with pytest.raises(AttributeError):
        s.security_protocol = "SSL"  # type: ignore[misc]
    assert s.with_bootstrap_servers("c:2").bootstrap_servers == ("c:2",)


def test_every_flag_env_var_is_registered():
    from edge_app.settings import EDGE_ENV, EDGE_ENV_VARS
    from metro_app.settings import HUB_ENV, HUB_ENV_VARS

    for table, names in ((EDGE_ENV, EDGE_ENV_VARS), (HUB_ENV, HUB_ENV_VARS)):
        for row in table:
            assert row[1] in names and names[row[1]], row
    apps = {**EDGE_ENV_VARS, **HUB_ENV_VARS}
    assert all(name.startswith("EDGE_MNIST_") for name in apps)
    assert not {"EDGE_MNIST_CAMERA", "EDGE_MNIST_STORE", "EDGE_MNIST_API_TOKEN"} & set(
        ENV_VARS
    )  # apps own theirs


def test_credentials_file_may_name_a_scram_mechanism_and_a_ca_next_to_it(tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"kafka_brokers_sasl": ["b1:9093"], "user": "edge", "api_key": "s3cret",
                                "sasl_mechanism": "scram-sha-512", "ssl_cafile": "ca.pem"}))  # fmt: skip
    s = resolve(credentials=path, environ={})
    assert (s.security_protocol, s.sasl_mechanism, s.ssl_cafile) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        str(tmp_path / "ca.pem"),
    )
    path.write_text(
        json.dumps({"kafka_brokers_sasl": ["b1:9093"], "user": "u", "api_key": "k", "ssl_cafile": "no.pem"})
    )
    with pytest.raises(ConfigError, match="ssl_cafile .*no.pem.* does not exist"):
        resolve(credentials=path, environ={})


def test_a_refused_login_seen_in_the_client_log_is_a_config_error_without_the_secret():
    from edgemnist.kafka.diagnose import misconfiguration

    s = KafkaSettings(bootstrap_servers=("127.0.0.1:1",), security_protocol="SASL_SSL",
                      sasl_mechanism="SCRAM-SHA-512", sasl_username="edge", sasl_password="s3cret")  # fmt: skip
    log = [
        "Abort ([Error 58] SaslAuthenticationFailedError: Authentication failed due to invalid credentials)"
    ]
    err = misconfiguration(s, log)
    assert err is not None and "Kafka at 127.0.0.1:1 refused the SASL login of user 'edge'" in str(err)
    assert "s3cret" not in str(err)
    assert misconfiguration(s, ["Connect attempt returned error 111"]) is None
