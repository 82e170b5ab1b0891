"""HTTP push into a camera: stdlib `http.server` in a thread, so the edge stays free of web frameworks.

    POST /frames        one PNG as the body, or JSON {"images": ["<base64 PNG>", ...], "labels": [...]?}
    GET|POST /push      ?start_idx=I&end_idx=J[&source=NAME]: that index range of a data set (J exclusive)
    GET /               a small HTML form doing /push for a person
    GET /health         liveness and counts

Pushed frames join the camera's own stream (`edge_app.push.PushFeed`) and the
answer waits for their scores. Bad input is refused with a 4xx naming the
problem before anything enters the pipeline. Pushes need `Authorization: Bearer
<token>` (the form sends it as a field): EDGE_MNIST_EDGE_TOKEN, else a token generated
and printed at start; `--http-no-auth` turns this off for a closed network. The token is
checked from the headers before the body is read; `source=` names one of the edge's data
sets, never a path; every frame passes `edgemnist.png.check_png`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import json
import logging
import secrets
import sys
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge_app.push import EdgeStopped, PushFeed
from edgemnist.data import Frames, load_frames
from edgemnist.errors import EdgeMnistError, SchemaError
from edgemnist.png import MAX_IMAGE_SIDE, check_png

__all__ = ["BadRequest", "PushRequest", "parse_frames", "parse_range", "EdgeHttp", "MAX_BODY", "MAX_IMAGES"]

log = logging.getLogger(__name__)

MAX_BODY = 32 * 2**20
MAX_FORM_BODY = 4096  # the form's fields, token among them: all a request without a bearer header may send
MAX_IMAGES = 10_000
MAX_SIDE = MAX_IMAGE_SIDE
# data sets /push may name besides the edge's own --source: built in, never a path
NAMED_SOURCES = ("bundled", "bundled-train", "bundled-all", "digits")


class BadRequest(Exception):
    """Input the edge refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PushRequest:
    """Frames to push, with their true classes when known."""

    frames: tuple[bytes, ...]
    labels: tuple[int, ...] | None = None


def _check_png(data: bytes, what: str) -> bytes:
    try:
        check_png(data, what)
    except SchemaError as exc:
        raise BadRequest(str(exc), 413 if "each side must be" in str(exc) else 400) from exc
    return data


def _labels(v: Any, n: int) -> tuple[int, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != n:
        raise BadRequest(f"'labels' must be a list of {n} digits, one per image")
    if not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 9 for x in v):
        raise BadRequest("'labels' must hold digits 0..9")
    return tuple(v)


def parse_frames(body: bytes, content_type: str) -> PushRequest:
    """POST /frames: a PNG body, or JSON with base64 PNGs (and optional labels)."""
    if not body:
        raise BadRequest('empty body: send one PNG, or JSON {"images": [base64 PNG, ...]}')
    if len(body) > MAX_BODY:
        raise BadRequest(f"body of {len(body)} bytes is larger than {MAX_BODY}", 413)
    ctype = content_type.split(";")[0].strip().lower()
    if ctype != "application/json" and not body.lstrip().startswith(b"{"):
        return PushRequest((_check_png(body, "the body"),))
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    images = obj.get("images") if isinstance(obj, dict) else None
    if not isinstance(images, list) or not images:
        raise BadRequest("JSON body needs 'images': a non-empty list of base64 PNG strings")
    if len(images) > MAX_IMAGES:
        raise BadRequest(f"{len(images)} images in one request, more than {MAX_IMAGES}", 413)
    frames = []
    for i, text in enumerate(images):
        if not isinstance(text, str):
            raise BadRequest(f"images[{i}] must be a base64 string")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(f"images[{i}] is not valid base64") from exc
        frames.append(_check_png(raw, f"images[{i}]"))
    return PushRequest(tuple(frames), _labels(obj.get("labels"), len(frames)))


def parse_range(params: dict[str, list[str]], default_source: str) -> tuple[int, int, str]:
    """/push parameters: start_idx, end_idx (exclusive), source (default: the camera's own)."""

    def index(name: str) -> int:
        values = params.get(name)
        if not values:
            raise BadRequest(f"missing {name}: use /push?start_idx=I&end_idx=J")
        try:
            return int(values[0])
        except ValueError as exc:
            raise BadRequest(f"{name} must be an integer, got {values[0][:40]!r}") from exc

    start, end = index("start_idx"), index("end_idx")
    if start < 0 or end <= start:
        raise BadRequest(f"need 0 <= start_idx < end_idx, got {start}..{end}")
    if end - start > MAX_IMAGES:
        raise BadRequest(f"{end - start} images in one push, more than {MAX_IMAGES}", 413)
    source = (params.get("source") or [default_source])[0] or default_source
    return start, end, source


_FORM = """<!doctype html><html><head><meta charset="utf-8"><title>edge-mnist: {camera}</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:2em auto">
<h1>Push images into {camera}</h1>
<p>Scores a range of the data set through this camera's pipeline (prepare, score, filter, window, send).</p>
<form method="post" action="/push">
<label>source <input name="source" value="{source}"></label><br>
<label>start_idx <input name="start_idx" type="number" value="0" min="0"></label>
<label>end_idx <input name="end_idx" type="number" value="10" min="1"></label><br>
{token_field}<button type="submit">Push</button>
</form>{result}</body></html>"""


def _table(answer: dict[str, Any]) -> str:
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{:.3f}</td><td>{}</td></tr>".format(
            r["count"], r["result_class"], r["result_probability"], r.get("true_class", "")
        )
        if r and "error" not in r
        else f"<tr><td colspan=4>{html.escape(str(r and r.get('error')))}</td></tr>"
        for r in answer["results"]
    )
    return (
        f"<h2>{answer['count']} scored by model {html.escape(str(answer['model_version']))}</h2>"
        "<table border=1 cellpadding=4><tr><th>count</th><th>class</th><th>probability</th><th>true</th></tr>"
        f"{rows}</table>"
    )


class EdgeHttp:
    """The HTTP server of one edge, feeding `feed`; `start()` serves in a daemon thread."""

    def __init__(
        self,
        feed: PushFeed,
        host: str,
        port: int,
        *,
        source: str,
        camera: str,
        token: str | None = None,
        no_auth: bool = False,
        answer_timeout: float = 120.0,
        frames: Callable[[str], Frames] = load_frames,
    ) -> None:
        self.feed = feed
        self.source = source
        self.camera = camera
        self.token = None if no_auth else token or None
        self.generated = not no_auth and self.token is None
        if self.generated:
            self.token = secrets.token_urlsafe(24)
        self.sources = (source, *(s for s in NAMED_SOURCES if s != source))
        self.answer_timeout = answer_timeout
        self._load = frames
        self._sets: dict[str, Frames] = {}
        self._sets_lock = threading.Lock()
        self.counts = {"requests": 0, "refused": 0, "images": 0}
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="edge-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> EdgeHttp:
        self._thread.start()
        log.info(
            "HTTP push on http://%s:%d (token %s)",
            *self.server.server_address[:2],
            "generated" if self.generated else "set" if self.token else "off (--http-no-auth)",
        )
        if self.generated:  # stderr: stdout may carry the metrics (--dry-run)
            print(
                f"HTTP push token (no EDGE_MNIST_EDGE_TOKEN given): {self.token}", file=sys.stderr, flush=True
            )
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def frames_of(self, source: str) -> Frames:
        if source not in self.sources:
            raise BadRequest(f"unknown source {source[:80]!r}: this edge serves {', '.join(self.sources)}")
        with self._sets_lock:
            if source not in self._sets:
                try:
                    self._sets[source] = self._load(source)
                except EdgeMnistError as exc:
                    raise BadRequest(f"unknown source {source!r}: {exc}") from exc
            return self._sets[source]

    def authorised(self, header: str | None, form_token: str | None = None) -> bool:
        if self.token is None:
            return True
        given = form_token or (header[7:] if header and header.startswith("Bearer ") else "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    def range_request(self, params: dict[str, list[str]]) -> PushRequest:
        start, end, source = parse_range(params, self.source)
        data = self.frames_of(source)
        n = len(data.frames)
        if end > n:
            raise BadRequest(f"end_idx {end} is out of bounds: source {source!r} has {n} images (0..{n})")
        labels = None if data.labels is None else tuple(int(x) for x in data.labels[start:end])
        return PushRequest(tuple(data.frames[start:end]), labels)

    def score(self, push: PushRequest) -> dict[str, Any]:
        """Feed the frames into the pipeline and wait for their results."""
        future = self.feed.submit(push.frames, push.labels)
        try:
            answer = future.result(timeout=self.answer_timeout).to_dict()
        except EdgeStopped as exc:
            raise BadRequest(str(exc), 503) from exc
        except FutureTimeout as exc:
            raise BadRequest(
                f"not scored within {self.answer_timeout:g} s; the edge is overloaded", 503
            ) from exc
        self.counts["images"] += len(push.frames)
        return answer


def _handler(app: EdgeHttp) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `app` (http.server builds one handler per request)."""
    return type("Handler", (_Handler,), {"app": app})


class _Handler(BaseHTTPRequestHandler):
    server_version = "edge-mnist"
    protocol_version = "HTTP/1.1"
    app: EdgeHttp

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def _body(self, limit: int) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            self.close_connection = True
            raise BadRequest("Content-Length is not a number") from exc
        if length > limit:
            self.close_connection = True
            raise BadRequest(f"body of {length} bytes is larger than {limit}", 413)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        app = self.app
        url = urlsplit(self.path)
        if url.path == "/health":
            self._json(200, {"status": "ok", "camera": app.camera, "pushed": app.feed.pushed, **app.counts})
        elif url.path == "/":
            self._form("")
        elif url.path == "/push":
            self._serve(lambda: app.range_request(parse_qs(url.query)), form=False)
        else:
            self._json(404, {"error": f"no such path {url.path!r}: try /, /push, /frames, /health"})

    def do_POST(self) -> None:
        app = self.app
        url = urlsplit(self.path)
        ctype = self.headers.get("Content-Type", "")
        # the token is checked from the headers before the body is read; only the form, whose
        # token is a field, may send a small body without it
        bearer = app.authorised(self.headers.get("Authorization"))
        form_post = url.path == "/push" and ctype.startswith("application/x-www-form-urlencoded")
        try:
            if not bearer and not form_post:
                self.close_connection = True
                app.counts["refused"] += 1
                raise BadRequest("missing or wrong bearer token (EDGE_MNIST_EDGE_TOKEN)", 401)
            body = self._body(MAX_BODY if bearer else MAX_FORM_BODY)
        except BadRequest as exc:
            self._json(exc.status, {"error": str(exc)})
            return
        if url.path == "/frames":
            self._serve(lambda: parse_frames(body, ctype), form=False)
        elif url.path == "/push":
            self._post_push(url.query, body, ctype)
        else:
            self._json(404, {"error": f"no such path {url.path!r}: try /, /push, /frames, /health"})

    def _post_push(self, query: str, body: bytes, ctype: str) -> None:
        """POST /push: the range in the query, or in the fields of the HTML form."""
        form = ctype.startswith("application/x-www-form-urlencoded")
        params = parse_qs(query)
        if form:
            params.update(parse_qs(body.decode("utf-8", "replace")))
        self._serve(
            lambda: self.app.range_request(params),
            form=form,
            form_token=next(iter(params.get("token") or ()), None),
        )

    def _serve(self, parse: Callable[[], PushRequest], *, form: bool, form_token: str | None = None) -> None:
        app = self.app
        app.counts["requests"] += 1
        try:
            if not app.authorised(self.headers.get("Authorization"), form_token):
                raise BadRequest("missing or wrong bearer token (EDGE_MNIST_EDGE_TOKEN)", 401)
            answer = app.score(parse())
        except BadRequest as exc:
            app.counts["refused"] += 1
            log.info("refused a push (%d): %s", exc.status, exc)
            if form:
                self._form(f"<p style='color:#b00'>{html.escape(str(exc))}</p>", exc.status)
            else:
                self._json(exc.status, {"error": str(exc)})
            return
        if form:
            self._form(_table(answer))
        else:
            self._json(200, answer)

    def _form(self, result: str, status: int = 200) -> None:
        app = self.app
        token_field = '<label>token <input name="token" type="password"></label><br>' if app.token else ""
        page = _FORM.format(
            camera=html.escape(app.camera),
            source=html.escape(app.source),
            token_field=token_field,
            result=result,
        )
        self._send(status, page.encode(), "text/html; charset=utf-8")
