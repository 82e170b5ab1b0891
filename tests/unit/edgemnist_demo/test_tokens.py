"""The demo's hub runs with a tokens file whose operator holds the dashboards' token (issue 21)."""

import os

from edgemnist_demo.run import _demo_tokens
from metro_app.access import TokenBook


def test_the_demo_makes_its_tokens_file_once_and_adds_a_changed_token(tmp_path):
    path = _demo_tokens(tmp_path, "demo-token")
    assert os.stat(path).st_mode & 0o777 == 0o600 and "demo-token" not in path.read_text()
    assert TokenBook.load(path).person("demo-token").name == "demo"
    assert _demo_tokens(tmp_path, "demo-token") == path and len(TokenBook.load(path)) == 1
    _demo_tokens(tmp_path, "another")
    book = TokenBook.load(path)
    assert book.person("another").name == "demo-2" and book.person("another").role == "operator"
