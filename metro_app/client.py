"""A small client of the hub's HTTP API, for dashboards and scripts (stdlib only)."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterator
from typing import Any

from edgemnist.errors import EdgeMnistError

__all__ = ["ApiError", "ViewClient"]


class ApiError(EdgeMnistError):
    """The hub answered with an error status, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ViewClient:
    """Read views (paged, long-polled), cameras, images and labels; post labels with a token.

    The token (argument, else env EDGE_MNIST_API_TOKEN) goes with every request: a hub with a
    tokens file may need it for reads too. `ca_file` (else env EDGE_MNIST_API_CA_FILE) is a PEM
    file of the CA that signed an HTTPS hub's certificate; without it the system's CAs are used.

    >>> ViewClient("http://127.0.0.1:8000/").base
    'http://127.0.0.1:8000'
    """

    def __init__(
        self,
        base: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        timeout: float = 30,
        ca_file: str | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.token = token if token is not None else os.environ.get("EDGE_MNIST_API_TOKEN")
        self.timeout = timeout
        ca_file = ca_file or os.environ.get("EDGE_MNIST_API_CA_FILE") or None
        self._tls = _tls_context(ca_file) if self.base.startswith("https:") else None

    def _request(self, path: str, *, body: Any = None, timeout: float | None = None) -> bytes:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(
            self.base + path, data=data, headers=headers, method="POST" if data else "GET"
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=self._tls) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:500]
            raise ApiError(f"{req.method} {path}: HTTP {exc.code}: {text}", exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f"{req.method} {path}: hub at {self.base} unreachable ({exc})") from exc

    def _json(self, path: str, **kw: Any) -> Any:
        return json.loads(self._request(path, **kw))

    def views(self) -> list[dict[str, Any]]:
        return self._json("/views")["views"]

    def page(self, name: str, after: int = 0, max: int = 100, wait: float = 0) -> dict[str, Any]:
        """One page of a view: {"name", "items": [{"seq", "tuple"}], "last_seq"}."""
        q = urllib.parse.urlencode({"after": after, "max": max, "wait": wait})
        return self._json(f"/views/{urllib.parse.quote(name)}?{q}", timeout=self.timeout + wait)

    def fetch_all(self, name: str, after: int = 0, page_size: int = 500) -> list[dict[str, Any]]:
        """Every item of a view after a seq, paging until the end."""
        items: list[dict[str, Any]] = []
        while page := self.page(name, after, page_size)["items"]:
            items += page
            after = page[-1]["seq"]
        return items

    def follow(self, name: str, after: int = 0, wait: float = 10) -> Iterator[dict[str, Any]]:
        """Yield items as they arrive (long-poll), forever; the caller breaks out."""
        while True:
            for item in self.page(name, after, 500, wait)["items"]:
                after = item["seq"]
                yield item

    def recent(self, name: str, n: int = 100) -> list[dict[str, Any]]:
        """The newest n items of a view, as the reference's client keeps them."""
        last = self.page(name, 0, 1)["last_seq"]
        buf: deque[dict[str, Any]] = deque(maxlen=n)
        buf.extend(self.fetch_all(name, after=max(0, last - 2 * n)))
        return list(buf)

    def cameras(self) -> list[dict[str, Any]]:
        """Every camera's health, by name (all pages of `camera_page`)."""
        out: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = self.camera_page(limit=500, offset=offset)
            out += page["items"]
            offset = page["next_offset"]
        return out

    def camera_page(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        sort: str = "name",
        q: str | None = None,
        alert: bool = False,
    ) -> dict[str, Any]:
        """One page of cameras: {"items": [health], "total", "sort", "limit", "offset", "next_offset"}.

        `sort`: accuracy | uncertain | p99 (worst first) | name; ties by name, so the order is stable.
        `q` keeps names holding it (any case); `alert` only cameras with an open alert. `total` counts
        the cameras matching; `next_offset` is None on the last page.
        """
        params: dict[str, Any] = {"limit": limit, "offset": offset, "sort": sort}
        params |= ({"q": q} if q else {}) | ({"alert": 1} if alert else {})
        page = self._json(f"/cameras?{urllib.parse.urlencode(params)}")
        return {"items": page.pop("cameras")} | page

    def camera(
        self, name: str, *, recent_windows: int = 0, recent_images: int = 0, hourly: int = 0
    ) -> dict[str, Any]:
        """One camera's health (ApiError 404 for a camera that never sent a metrics window).

        Asked for, also its newest N metrics windows, uncertain images and hourly roll-ups of pruned
        windows, each oldest first, under the keys `recent_windows`, `recent_images` and `hourly`.
        """
        asked = {"recent_windows": recent_windows, "recent_images": recent_images, "hourly": hourly}
        query = urllib.parse.urlencode({k: v for k, v in asked.items() if v})
        return self._json(f"/cameras/{urllib.parse.quote(name, safe='')}" + (f"?{query}" if query else ""))

    def fleet_summary(self, worst: int = 5) -> dict[str, Any]:
        """{"cameras", "active", "alerting", "alerts", "fleet_uncertain_share", "worst_accuracy",
        "worst_uncertain"}: counts and the `worst` cameras by live accuracy and by uncertain share."""
        return self._json(f"/cameras/summary?worst={int(worst)}")

    def image_png(self, image_id: str) -> bytes:
        return self._request(f"/images/{urllib.parse.quote(image_id, safe='/:')}")

    def labels(self, image_id: str | None = None, page_size: int = 5000) -> list[dict[str, Any]]:
        """Every stored label (of one image, or all of them, paged), ascending by id."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            q = {"after": after, "max": page_size} | ({"image_id": image_id} if image_id else {})
            page = self._json(f"/labels?{urllib.parse.urlencode(q)}")["labels"]
            out += page
            if len(page) < page_size:
                return out
            after = page[-1]["id"]

    def add_label(
        self, image_id: str, label: str, labeller: str | None = None, **context: Any
    ) -> dict[str, Any]:
        """POST one label; `context` (e.g. model_version, previous_prediction) travels in the body.

        `labeller` None: the hub takes the token's person (a hub with a tokens file).
        """
        body = {**context, "image_id": image_id, "label": label}
        return self._json("/labels", body=body | ({"labeller": labeller} if labeller else {}))

    def resolve(self, image_id: str, label: str, resolver: str | None = None) -> dict[str, Any]:
        """POST a reviewer's final label for an image its labellers disagree on (needs an operator)."""
        body = {"image_id": image_id, "label": label} | ({"resolver": resolver} if resolver else {})
        return self._json("/labels/resolve", body=body)

    def whoami(self) -> dict[str, Any]:
        """Who the hub says the token names: {"person": {name, role, verified} | None, "mode", ...}."""
        return self._json("/whoami")

    def audit(self, after: int = 0, max: int = 1000) -> list[dict[str, Any]]:
        """The hub's audit trail after row `after`, oldest first (needs an operator)."""
        return self._json(f"/audit?{urllib.parse.urlencode({'after': after, 'max': max})}")["audit"]

    def conflicts(self) -> list[dict[str, Any]]:
        """Images whose labellers disagree, with each labeller's latest label."""
        return self._json("/labels/conflicts")["conflicts"]

    def labellers(self) -> dict[str, Any]:
        """Each labeller's count and agreement rate, plus the images and open conflicts in all."""
        return self._json("/labellers")

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        """Camera alerts, newest first (status: open, closed, or None for all)."""
        return self._json("/alerts" + (f"?status={status}" if status else ""))["alerts"]

    def models(self) -> list[dict[str, Any]]:
        """The model registry, newest first."""
        return self._json("/models")["models"]

    def model(self, version: str) -> dict[str, Any]:
        return self._json(f"/models/{urllib.parse.quote(version, safe='')}")

    def model_file(self, version: str) -> bytes:
        """The model's skops bytes (verify them with edgemnist.model.load_model_bytes)."""
        return self._request(f"/models/{urllib.parse.quote(version, safe='')}/file")

    def retrain(self) -> dict[str, Any]:
        """Start a retrain on the hub (needs the token); ApiError with status 409 while one runs."""
        return self._json("/models/retrain", body={})

    def retrain_job(self, job: str) -> dict[str, Any]:
        """A retrain job's state, stage, progress, and result once done."""
        return self._json(f"/models/retrain/{urllib.parse.quote(job, safe='')}")

    def rollouts(self, max: int = 100) -> list[dict[str, Any]]:
        """Rollouts, newest first: stage, canary cameras, shadow and canary figures, reason."""
        return self._json(f"/rollouts?max={int(max)}")["rollouts"]

    def rollout(self, rollout_id: int) -> dict[str, Any]:
        return self._json(f"/rollouts/{int(rollout_id)}")

    def start_rollout(
        self, version: str, canary: list[str], *, shadow: bool = True, **bounds: Any
    ) -> dict[str, Any]:
        """Register a rollout of `version` to the `canary` cameras (needs an operator); it starts in
        shadow unless `shadow` is False. ApiError 409 while another one runs."""
        body = {"canary": list(canary), "shadow": shadow, **bounds}
        return self._json(f"/models/{urllib.parse.quote(version, safe='')}/rollout", body=body)

    def disagreements(self, rollout_id: int, after: int = 0, max: int = 100) -> dict[str, Any]:
        """The rollout's disagreement images, newest first, with who was right on the labelled ones."""
        query = urllib.parse.urlencode({"after": after, "max": max})
        return self._json(f"/rollouts/{int(rollout_id)}/disagreements?{query}")

    def health(self, timeout: float | None = None) -> dict[str, Any]:
        """The hub's /health; `timeout` (seconds) overrides the client's, so a hung hub is seen soon."""
        return self._json("/health", timeout=timeout)


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify the hub's certificate against `ca_file` (or the system's CAs); ApiError naming a bad file."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ApiError(f"CA file {ca_file} (EDGE_MNIST_API_CA_FILE): cannot load it ({exc})") from exc
