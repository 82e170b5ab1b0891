"""The edge's HTTP server on a loopback port: authentication before the body, named sources only, bounds."""

from __future__ import annotations

import http.client
import json
import socket
from concurrent.futures import Future

import pytest

from edge_app.http import MAX_BODY, EdgeHttp
from edgemnist.data import load_frames
from edgemnist.testing.hostile import bomb_png

TOKEN = "t0ken-for-tests"


class Answer:
    def __init__(self, n: int) -> None:
        self.n = n

    def to_dict(self) -> dict:
        return {"count": self.n, "model_version": "m-1", "results": [self.row(i) for i in range(self.n)]}

    @staticmethod
    def row(i: int) -> dict:
        return {"count": i, "result_class": 3, "result_probability": 0.9}


class FakeFeed:
    """Answers every push at once and remembers what was pushed."""

    pushed = 0

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def submit(self, frames, labels=None) -> Future:
        self.frames += list(frames)
        done: Future = Future()
        done.set_result(Answer(len(frames)))
        return done


@pytest.fixture
def serve():
    servers = []
    loaded = []

    def start(**kwargs) -> tuple[EdgeHttp, FakeFeed, list[str]]:
        feed = FakeFeed()

        def frames(source):
            loaded.append(source)
            return load_frames(source)

        app = EdgeHttp(
            feed, "127.0.0.1", 0, source="bundled", camera="Cam-h", frames=frames, **kwargs
        ).start()
        servers.append(app)
        return app, feed, loaded

    yield start
    for app in servers:
        app.close()


def call(app, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=20)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read() or b"{}")
    conn.close()
    return out


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "source", ["mnist-idx:/etc/passwd", "png:/etc", "png:/", "mnist-idx:/etc,/etc/hosts"]
)
def test_push_never_reads_a_path_named_in_source(serve, source):
    """Issue 24.4: source= names one of the edge's data sets, never a local file or folder."""
    app, feed, loaded = serve(token=TOKEN)
    status, body = call(app, "POST", f"/push?start_idx=0&end_idx=4&source={source}", headers=AUTH)
    assert status == 400 and "source" in body["error"] and "1919905652" not in body["error"]
    assert loaded == [] and feed.frames == []


def test_push_serves_the_configured_and_bundled_data_sets(serve):
    app, feed, loaded = serve(token=TOKEN)
    assert call(app, "POST", "/push?start_idx=0&end_idx=3", headers=AUTH)[0] == 200
    assert call(app, "POST", "/push?start_idx=0&end_idx=2&source=digits", headers=AUTH)[0] == 200
    assert loaded == ["bundled", "digits"] and len(feed.frames) == 5


def test_without_a_token_one_is_generated_and_required(serve, capsys):
    """Issue 24.5: no EDGE_MNIST_EDGE_TOKEN is not 'no authentication'."""
    app, feed, _ = serve()
    assert app.token and len(app.token) >= 20
    assert app.token in capsys.readouterr().err
    assert call(app, "POST", "/push?start_idx=0&end_idx=3")[0] == 401
    headers = {"Authorization": f"Bearer {app.token}"}
    assert call(app, "POST", "/push?start_idx=0&end_idx=3", headers=headers)[0] == 200
    assert len(feed.frames) == 3


def test_no_auth_only_when_asked_for(serve):
    app, feed, _ = serve(no_auth=True)
    assert app.token is None
    assert call(app, "POST", "/push?start_idx=0&end_idx=2")[0] == 200


def test_the_token_is_checked_before_the_body_is_read(serve):
    """Issue 24.5: a wrong token gets 401 from the headers alone; the 32 MiB body is never read."""
    app, feed, _ = serve(token=TOKEN)
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as s:
        s.sendall(
            b"POST /frames HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Authorization: Bearer wrong\r\nContent-Length: %d\r\n\r\n" % MAX_BODY
        )
        head = s.recv(4096)  # no body sent: a server that reads it first would never answer
    assert head.startswith(b"HTTP/1.1 401")
    assert feed.frames == []


def test_a_body_over_the_cap_is_refused_from_its_length(serve):
    app, _, _ = serve(token=TOKEN)
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as s:
        s.sendall(
            b"POST /frames HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
        )
        assert s.recv(4096).startswith(b"HTTP/1.1 413")


def test_pushed_frames_are_bounded_like_every_other_image(serve):
    """Issue 24.5: a frame larger than 1024 px a side is refused from its header, before decoding."""
    app, feed, _ = serve(token=TOKEN)
    big = bomb_png(2048, bits=8)
    status, body = call(app, "POST", "/frames", big, {**AUTH, "Content-Type": "image/png"})
    assert status == 413 and "2048x2048" in body["error"] and "1024" in body["error"]
    assert feed.frames == []
    ok = bomb_png(28, bits=8)
    assert call(app, "POST", "/frames", ok, {**AUTH, "Content-Type": "image/png"})[0] == 200
    assert feed.frames == [ok]


def test_the_form_sends_its_token_in_a_small_body(serve):
    app, feed, _ = serve(token=TOKEN)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=20)
    conn.request("POST", "/push", body=f"start_idx=0&end_idx=2&token={TOKEN}", headers=form)
    assert conn.getresponse().status == 200
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=20)
    conn.request("POST", "/push", body="start_idx=0&end_idx=2&token=nope", headers=form)
    assert conn.getresponse().status == 401
    conn.close()
    assert len(feed.frames) == 2
