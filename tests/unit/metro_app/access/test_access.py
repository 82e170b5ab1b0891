"""The tokens file and the access gate: hashes only, mode 0600, clear errors, roles nest, reload on change."""

import json
import os

import pytest

from edgemnist.errors import ConfigError
from metro_app.access import AccessGate, Person, TokenBook, TokenFile, add_person, token_hash


def test_the_file_keeps_only_hashes_with_mode_0600(tmp_path):
    path = tmp_path / "sub" / "tokens.json"
    t1 = add_person(path, "ana", "labeller")
    t2 = add_person(path, "olu", "operator")
    text = path.read_text()
    assert t1 not in text and t2 not in text and token_hash(t1) in text
    assert os.stat(path).st_mode & 0o777 == 0o600
    book = TokenBook.load(path)
    assert book.person(t1) == Person("ana", "labeller") and book.person(t2).role == "operator"
    assert book.person("emt_guess") is None and book.person("") is None


def test_a_second_person_of_the_same_name_or_an_unknown_role_is_refused(tmp_path):
    path = tmp_path / "tokens.json"
    add_person(path, "ana", "viewer")
    with pytest.raises(ConfigError, match="already has a person named 'ana'"):
        add_person(path, "ana", "operator")
    with pytest.raises(ConfigError, match="unknown role 'admin'"):
        add_person(path, "bo", "admin")
    with pytest.raises(ConfigError, match="name 'a b'"):
        add_person(path, "a b", "viewer")


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ("not json", "not readable JSON"),
        ('{"people": {}}', 'expected {"people": [...]}'),
        ('{"people": [{"name": "ana", "role": "viewer"}]}', "entry 1: expected exactly the keys"),
        (
            '{"people": [{"name": "ana", "role": "boss", "sha256": "' + "a" * 64 + '"}]}',
            "entry 1 (ana): unknown role",
        ),
        ('{"people": [{"name": "ana", "role": "viewer", "sha256": "xyz"}]}', "entry 1 (ana): sha256 must be"),
    ],
)
def test_a_bad_tokens_file_is_refused_naming_the_file_and_entry(tmp_path, doc, says):
    path = tmp_path / "tokens.json"
    path.write_text(doc)
    with pytest.raises(ConfigError, match="tokens file") as exc:
        TokenBook.load(path)
    assert says in str(exc.value) and str(path) in str(exc.value)


def test_a_missing_tokens_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="metro-app tokens add"):
        TokenBook.load(tmp_path / "none.json")


def test_the_token_file_reloads_when_it_changes_and_keeps_the_last_good_book(tmp_path):
    path = tmp_path / "tokens.json"
    first = add_person(path, "ana", "viewer")
    tokens = TokenFile(path)
    second = add_person(path, "bo", "labeller")
    assert tokens.book().person(second) == Person("bo", "labeller")
    path.write_text("broken")
    assert tokens.book().person(first) == Person("ana", "viewer")


def test_roles_nest_and_the_gate_answers_401_and_403(tmp_path):
    path = tmp_path / "tokens.json"
    tok = {role: add_person(path, f"p-{role}", role) for role in ("viewer", "labeller", "operator")}
    gate = AccessGate(tokens=TokenFile(path))
    assert gate.mode == "tokens" and not gate.open_reads
    assert gate.decide(None, None)[1].status == 401  # reads need a viewer token
    assert gate.decide(f"Bearer {tok['viewer']}", None) == (Person("p-viewer", "viewer"), None)
    person, refusal = gate.decide(f"Bearer {tok['labeller']}", "operator")
    assert person.name == "p-labeller" and refusal.status == 403 and "operator role" in refusal.detail
    assert gate.decide(f"Bearer {tok['operator']}", "labeller")[1] is None
    assert gate.decide("Basic x", "viewer")[1].status == 401
    public = AccessGate(tokens=TokenFile(path), public_reads=True)
    assert public.decide(None, None) == (None, None) and public.decide(None, "viewer")[1].status == 401


def test_without_any_token_every_write_is_refused_and_says_how_to_configure_one():
    gate = AccessGate()
    assert gate.mode == "none" and gate.decide(None, None) == (None, None)
    person, refusal = gate.decide("Bearer anything", "labeller")
    assert person is None and refusal.status == 401 and "--tokens" in refusal.detail


def test_the_tokens_file_is_json_with_name_role_and_sha256(tmp_path):
    path = tmp_path / "tokens.json"
    token = add_person(path, "ana", "operator", token="emt_given")
    assert token == "emt_given"
    assert json.loads(path.read_text()) == {
        "people": [{"name": "ana", "role": "operator", "sha256": token_hash("emt_given")}]
    }
