"""`metro-app run --tokens/--public-reads/--tls-cert/--tls-key`: flags, env, the gate they make, start-up warnings."""

import argparse
import logging

import pytest

from edgemnist.errors import ConfigError
from metro_app.access import add_person
from metro_app.service import access_gate, api_server
from metro_app.settings import HubSettings, add_hub_flags


def _settings(argv, environ=None):
    parser = argparse.ArgumentParser()
    add_hub_flags(parser, environ=environ or {})
    return HubSettings.from_args(parser.parse_args(argv), environ=environ or {})


def test_the_tokens_file_and_public_reads_come_from_flags_or_env(tmp_path):
    path = tmp_path / "tokens.json"
    add_person(path, "ana", "viewer")
    s = _settings(["--tokens", str(path), "--public-reads"])
    assert (s.tokens, s.public_reads) == (str(path), True)
    s = _settings([], {"EDGE_MNIST_API_TOKENS": str(path), "EDGE_MNIST_PUBLIC_READS": "true"})
    gate = access_gate(s)
    assert gate.mode == "tokens" and gate.open_reads
    assert "tokens=" in repr(s) and "s3cret" not in repr(_settings([], {"EDGE_MNIST_API_TOKEN": "s3cret"}))


def test_the_single_token_warns_how_to_move_to_a_tokens_file(caplog):
    with caplog.at_level(logging.WARNING, logger="metro_app"):
        gate = access_gate(HubSettings(api_token="shared"))
    assert gate.mode == "token" and "metro-app tokens add NAME --role" in caplog.text
    assert "shared" not in caplog.text.replace("one shared token", "")


def test_a_tokens_file_wins_over_the_single_token_and_says_so(tmp_path, caplog):
    path = tmp_path / "tokens.json"
    add_person(path, "ana", "operator")
    with caplog.at_level(logging.WARNING, logger="metro_app"):
        gate = access_gate(HubSettings(api_token="shared", tokens=str(path)))
    assert gate.mode == "tokens" and "EDGE_MNIST_API_TOKEN is ignored" in caplog.text
    assert gate.identify("Bearer shared") is None


def test_a_bad_tokens_file_stops_the_hub_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="tokens file .*none.json does not exist"):
        access_gate(HubSettings(tokens=str(tmp_path / "none.json")))


def test_tls_needs_both_files_and_names_the_one_it_cannot_read(tmp_path):
    with pytest.raises(ConfigError, match="--tls-cert"):
        HubSettings(tls_cert=str(tmp_path / "cert.pem"))
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match=r"--tls-key .*key.pem: cannot read it"):
        api_server(object(), HubSettings(tls_cert=str(cert), tls_key=str(tmp_path / "key.pem")))


def test_submit_forwards_the_tokens_file_public_reads_and_tls_paths(tmp_path):
    from metro_app.cli import build_parser
    from metro_app.deploy.commands import _run_args
    from metro_app.deploy.jobs import Job

    argv = [
        "submit",
        "--name",
        "hub",
        "--tokens",
        "t.json",
        "--public-reads",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
    ]
    args = build_parser().parse_args(argv)
    out = _run_args(args, HubSettings.from_args(args, environ={}))
    assert out[out.index("--tokens") + 1] == "t.json" and "--public-reads" in out
    assert out[out.index("--tls-cert") + 1] == "c.pem" and out[out.index("--tls-key") + 1] == "k.pem"
    job = Job(host="127.0.0.1", port=1, command=["metro-app", "run", *out])
    assert job.health(timeout=0.5) is None  # nothing listens: no answer, no error
