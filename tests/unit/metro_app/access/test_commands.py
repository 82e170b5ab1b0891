"""`metro-app tokens add` prints the token once, last; the file keeps its hash only, mode 0600; the add is audited."""

import json
import os

from metro_app.access import TokenBook, token_hash
from metro_app.cli import main
from metro_app.store import Store


def test_tokens_add_prints_the_token_last_and_stores_only_its_hash(tmp_path, capsys):
    path, url = tmp_path / "tokens.json", f"sqlite:///{tmp_path}/hub.db"
    assert main(["tokens", "add", "ana", "--role", "labeller", "--file", str(path), "--store", url]) == 0
    out = capsys.readouterr().out.splitlines()
    token = out[-1]
    assert token.startswith("emt_") and len(token) > 40 and "ana (labeller)" in out[0]
    assert token not in path.read_text() and token_hash(token) in path.read_text()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert TokenBook.load(path).person(token).name == "ana"
    store = Store(url)
    try:
        [row] = store.audit()
    finally:
        store.close()
    assert (row["route"], row["path"], row["outcome"]) == ("metro-app tokens add", str(path), "done")
    assert row["detail"] == {"name": "ana", "role": "labeller"} and row["person"].endswith("@cli")
    assert token not in json.dumps(row)


def test_tokens_add_refuses_a_known_name_and_list_shows_names_and_roles(tmp_path, capsys, monkeypatch):
    path = tmp_path / "tokens.json"
    monkeypatch.setenv("EDGE_MNIST_API_TOKENS", str(path))
    monkeypatch.setenv("EDGE_MNIST_STORE", f"sqlite:///{tmp_path}/hub.db")
    assert main(["tokens", "add", "olu", "--role", "operator"]) == 0
    capsys.readouterr()
    assert main(["tokens", "add", "olu", "--role", "viewer"]) == 2
    assert "already has a person named 'olu'" in capsys.readouterr().err
    assert main(["tokens", "list"]) == 0
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == [
        {"name": "olu", "role": "operator"}
    ]


def test_tokens_add_without_a_file_says_which_setting_is_missing(capsys, monkeypatch):
    monkeypatch.delenv("EDGE_MNIST_API_TOKENS", raising=False)
    assert main(["tokens", "add", "ana", "--role", "viewer"]) == 2
    assert "--file FILE (or env EDGE_MNIST_API_TOKENS)" in capsys.readouterr().err
