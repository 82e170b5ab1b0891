"""Issue 14: poison messages and hostile input against the real hub process, real Kafka, real PostgreSQL.

Each test reproduces one defect found by probing the running system; each failed on the
code before the fix (a hub stuck on one record, a 500, an oversized image stored, a
password in a job file...) and passes after it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from edgemnist.kafka import ensure_topics
from metro_app.samples import make_image, make_metrics
from metro_app.store import Store
from metro_app.testing import HubProcess, free_port, wait_until
from tests.helpers import EDGE_APP, outbox_rows, produce, read_all

pytestmark = pytest.mark.integration


def counts(hub: HubProcess) -> tuple[int, int, int]:
    """(images, metrics, dead letters) the hub has stored."""
    h = hub.health()
    return h["stored"]["images"], h["stored"]["metrics"], h["dlq"]


def dead_reasons(kafka_settings, dlq: str, n: int) -> dict[int, str]:
    """Source offset -> reason of the first n records on the dead-letter topic."""
    out = {}
    for rec in read_all(kafka_settings, dlq, n):
        h = {k: v.decode() for k, v in rec.headers}
        out[int(h["source_offset"])] = h["reason"]
    return out


def hub_for(
    kafka,
    tmp_path: Path,
    topic: str,
    dlq: str,
    store: str | None = None,
    client: str = "kafka-python",
    **kw: Any,
) -> HubProcess:
    return HubProcess(
        kafka.bootstrap_servers,
        topic,
        store or f"sqlite:///{tmp_path}/hub.db",
        tmp_path / f"{topic}.log",
        extra=["--dlq-topic", dlq, "--kafka-client", client, *kw.pop("extra", [])],
        **kw,
    )


def topics(kafka_settings, make_topic: Callable[[str], str]) -> tuple[str, str]:
    topic, dlq = make_topic("events"), make_topic("dlq")
    ensure_topics(kafka_settings, {topic: 1, dlq: 1})
    return topic, dlq


def _image(n: int, **changes: Any) -> bytes:
    return json.dumps({**make_image("Poison", n, run="p").to_dict(), **changes}).encode()


def _metrics(n: int, camera: str = "Poison", slots: list[int] | None = None, **changes: Any) -> bytes:
    d = make_metrics(camera, n, run="p").to_dict()
    if slots is not None:
        d["camera_metrics"] = {camera: {"certain": slots, "uncertain": [0] * 11}}
    return json.dumps({**d, **changes}).encode()


def _good(n: int) -> list[tuple[bytes, bytes]]:
    """A normal edge's messages: n images and n metrics windows of camera CamA."""
    out = []
    for i in range(n):
        out += [(make_image("CamA", i).to_json(), b"CamA"), (make_metrics("CamA", i).to_json(), b"CamA")]
    return out


# item 1 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_values_the_store_cannot_hold_are_dead_lettered_and_the_hub_goes_on(
    backend, kafka, kafka_settings, tmp_path, request, make_topic, hub_kafka_client
):
    """Before: the insert raised (OverflowError / bigint out of range / NUL), the hub retried the
    same batch forever and stored nothing after it."""
    topic, dlq = topics(kafka_settings, make_topic)
    poison = [
        (_image(1, count=2**63), "'count' is 9223372036854775808, outside"),
        (_metrics(2, slots=[2**62] * 11), "must be 11 integers 0..1000000000"),
        (_metrics(3, slots=[2**29] * 11), "counts 5905580032 images, more than 1000000000"),
        (_image(4, camera="Poi\x00son"), "'camera' contains a NUL"),
        (_metrics(5, id="Poison/p/\x00m5"), "'id' contains a NUL"),
        (_image(6, id="Poison/p/i6", model_version="m\x00"), "'model_version' contains a NUL"),
    ]
    produce(kafka_settings, topic, [(v, b"Poison") for v, _ in poison] + _good(20))
    if backend == "sqlite":
        store = f"sqlite:///{tmp_path}/hub.db"
    else:
        store = request.getfixturevalue("postgres").fresh_database(f"limits_{hub_kafka_client}")
    with hub_for(kafka, tmp_path, topic, dlq, store, client=hub_kafka_client) as hub:
        wait_until(lambda: counts(hub) == (20, 20, len(poison)), 90, "20 + 20 stored, 6 dead letters")
        assert hub.health()["status"] == "ok" and hub.health()["consumer"]["store_errors"] == 0
        ids = {t["tuple"]["id"] for v in ("UncertainPredictions", "ClassificationMetrics")
               for t in hub.client.fetch_all(v)}  # fmt: skip
    assert ids == {f"CamA/r1/{k}{i}" for i in range(20) for k in "im"}
    reasons = dead_reasons(kafka_settings, dlq, len(poison))
    for offset, (_, why) in enumerate(poison):
        assert why in reasons[offset], (offset, reasons[offset])


def _pg_exec(url: str, *sql: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in sql:
            conn.execute(sa.text(statement))
    engine.dispose()


_REFUSE_CAMERA = """
CREATE FUNCTION refuse_camera() RETURNS trigger AS $$
BEGIN
  IF NEW.camera = 'Refused' THEN
    RAISE EXCEPTION 'value % out of range for this store', NEW.count USING ERRCODE = '22003';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql
"""
_DISK_FULL = """
CREATE FUNCTION disk_full() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100';
END $$ LANGUAGE plpgsql
"""


def test_a_record_the_database_refuses_is_split_out_and_dead_lettered_with_its_reason(
    kafka, kafka_settings, postgres, tmp_path, make_topic, hub_kafka_client
):
    """Validation cannot foresee every refusal (here a trigger): the batch is bisected down to the
    record, which is dead-lettered with the database's words; before, the hub retried forever."""
    url = postgres.fresh_database(f"refuse_{hub_kafka_client}")
    Store(url).close()  # the tables, so the trigger can be attached before the hub starts
    _pg_exec(
        url,
        _REFUSE_CAMERA,
        "CREATE TRIGGER refuse BEFORE INSERT ON uncertain_images FOR EACH ROW EXECUTE FUNCTION refuse_camera()",
    )
    topic, dlq = topics(kafka_settings, make_topic)
    good = _good(30)
    refused = make_image("Refused", 77).to_json()
    produce(kafka_settings, topic, good[:31] + [(refused, b"Refused")] + good[31:])
    with hub_for(kafka, tmp_path, topic, dlq, url, client=hub_kafka_client) as hub:
        wait_until(lambda: counts(hub) == (30, 30, 1), 90, "60 stored and the refused one dead-lettered")
        produce(kafka_settings, topic, [(make_metrics("CamA", 99).to_json(), b"CamA")])
        wait_until(lambda: counts(hub) == (30, 31, 1), 60, "a later message stored too")
        health = hub.health()
        assert health["status"] == "ok" and health["consumer"]["store_refused"] == 1
    [reason] = dead_reasons(kafka_settings, dlq, 1).items()
    assert reason[0] == 31
    assert "the store refused it: NumericValueOutOfRange: value 77 out of range for this store" in reason[1]


def test_health_is_degraded_while_the_store_keeps_failing_and_nothing_is_dead_lettered(
    kafka, kafka_settings, postgres, tmp_path, make_topic, hub_kafka_client
):
    """A store that fails for every record (disk full) is not the records' fault: retry, report
    `degraded` on /health (before: `ok`, lag 0), and store everything once it recovers."""
    url = postgres.fresh_database(f"diskfull_{hub_kafka_client}")
    Store(url).close()
    trigger = "CREATE TRIGGER disk_full_now BEFORE INSERT ON metrics_windows FOR EACH ROW EXECUTE FUNCTION disk_full()"
    _pg_exec(url, _DISK_FULL, trigger)
    topic, dlq = topics(kafka_settings, make_topic)
    with hub_for(kafka, tmp_path, topic, dlq, url, client=hub_kafka_client) as hub:
        produce(kafka_settings, topic, _good(10))
        wait_until(lambda: hub.health()["status"] == "degraded", 60, "/health to say degraded")
        assert counts(hub) == (0, 0, 0) and hub.health()["consumer"]["store_errors"] >= 1
        _pg_exec(url, "DROP TRIGGER disk_full_now ON metrics_windows")
        wait_until(lambda: counts(hub) == (10, 10, 0), 60, "everything stored after the store recovered")
        assert hub.health()["status"] == "ok"


# item 2 ----------------------------------------------------------------------------------------


def test_timestamps_outside_the_sane_range_are_dead_lettered_and_views_keep_answering(
    kafka, kafka_settings, tmp_path, make_topic, hub_kafka_client
):
    """Before: one metrics message stamped 9999-12-31 made every FleetMetrics page holding it a 500."""
    topic, dlq = topics(kafka_settings, make_topic)
    future = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + 2 * 86400))
    poison = [
        _metrics(1, timestamp="9999-12-31T23:59:59.999999Z"),
        _metrics(2, timestamp="1999-12-31T23:59:59.999999Z"),
        _metrics(3, timestamp=future),
        _metrics(4, window_start="0001-01-01T00:00:00Z"),
        _image(5, timestamp="9999-12-31T23:59:59.999999Z"),
    ]
    produce(kafka_settings, topic, [(v, b"Poison") for v in poison] + _good(5))
    with hub_for(kafka, tmp_path, topic, dlq, client=hub_kafka_client) as hub:
        wait_until(lambda: counts(hub) == (5, 5, 5), 90, "5 + 5 stored and 5 dead letters")
        fleet = hub.client.fetch_all("FleetMetrics")
        assert sum(t["tuple"]["images"] for t in fleet) >= 20 and hub.client.cameras()
    for why in dead_reasons(kafka_settings, dlq, 5).values():
        assert re.search(r"outside 2000-01-01 \.\. now \+ 1 day", why), why


# item 3 ----------------------------------------------------------------------------------------


def big_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of any size, built without holding its pixels in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    parts = [z.compress(row * min(1000, height - k)) for k in range(0, height, 1000)] + [z.flush()]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    )


def test_oversized_images_are_refused_from_the_png_header(
    kafka, kafka_settings, tmp_path, make_topic, hub_kafka_client
):
    """Before: a 4096x4096 PNG was decoded in full and stored; 20000x20000 came back as
    `internal error DecompressionBombError`. Now both get a reason naming size and limit."""
    topic, dlq = topics(kafka_settings, make_topic)
    sizes = [(4096, 4096), (20000, 20000), (28, 1025)]
    poison = [_image(i, image=base64.b64encode(big_png(w, h)).decode()) for i, (w, h) in enumerate(sizes)]
    produce(kafka_settings, topic, [(v, b"Poison") for v in poison] + _good(5))
    with hub_for(kafka, tmp_path, topic, dlq, client=hub_kafka_client) as hub:
        wait_until(lambda: counts(hub) == (5, 5, 3), 90, "the normal messages stored, 3 dead letters")
    reasons = dead_reasons(kafka_settings, dlq, 3)
    for offset, (w, h) in enumerate(sizes):
        assert f"key 'image' is a {w}x{h} PNG; each side must be 1..1024 pixels" in reasons[offset]


# item 4 ----------------------------------------------------------------------------------------


def _many_cameras(n: int, k: int) -> bytes:
    d = make_metrics("Fleet", k, run="many").to_dict()
    counts = {"certain": [1] * 10 + [0], "uncertain": [1] + [0] * 10}
    d["camera_metrics"] = {f"Cam{k}-{c:04d}": counts for c in range(n)}
    return json.dumps(d).encode()


def test_cameras_per_metrics_message_are_bounded(
    kafka, kafka_settings, tmp_path, make_topic, hub_kafka_client
):
    """Before: a message naming 1,000 cameras was stored and /cameras took seconds and GBs (the
    per-camera figures parsed every window once per camera). Now more than 100 are refused."""
    topic, dlq = topics(kafka_settings, make_topic)
    produce(kafka_settings, topic, [(_many_cameras(1000, 0), b"F"), (_many_cameras(100, 1), b"F")] + _good(3))
    with hub_for(kafka, tmp_path, topic, dlq, client=hub_kafka_client) as hub:
        wait_until(lambda: counts(hub) == (3, 4, 1), 90, "3 images and 4 metrics stored, 1 dead letter")
        cams = {c["name"]: c for c in hub.client.cameras()}
    assert len(cams) == 101 and all(cams[f"Cam1-{c:04d}"]["images"] == 11 for c in range(100))
    assert cams["Cam1-0000"]["fleet_uncertain_share"] == pytest.approx(1 / 11)
    [why] = dead_reasons(kafka_settings, dlq, 1).values()
    assert "names 1000 cameras, more than the 100 allowed per message" in why


# item 5 ----------------------------------------------------------------------------------------


def _status(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _raw_post(port: int, headers: list[str], body: bytes | list[bytes]) -> int:
    """Send a POST's headers and only part of its body; the status the hub answers, within 20 s."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        head = ["POST /labels HTTP/1.1", "Host: hub", "Content-Type: application/json", *headers]
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for part in [body] if isinstance(body, bytes) else body:
                s.sendall(part)
        except OSError:  # the hub may close as soon as it has answered
            pass
        reply = s.recv(4096)
    return int(reply.split(b" ", 2)[1])


def test_api_bounds_after_and_checks_the_token_before_reading_a_body(
    kafka, kafka_settings, tmp_path, make_topic
):
    """Before: ?after=2**63 was a 500; a 300 MB anonymous POST was read in full before the 401."""
    topic, dlq = topics(kafka_settings, make_topic)
    produce(kafka_settings, topic, _good(2))
    with hub_for(kafka, tmp_path, topic, dlq) as hub:
        wait_until(lambda: counts(hub) == (2, 2, 0), 60, "2 + 2 stored")
        base = f"http://127.0.0.1:{hub.port}"
        for view in ("ClassificationMetrics", "FleetMetrics", "UncertainPredictions"):
            assert _status(f"{base}/views/{view}?after={2**63}") == 422
            assert _status(f"{base}/views/{view}?after={2**63 - 1}") == 200
        assert _status(f"{base}/labels?after={2**64}") == 422
        huge = ["Content-Length: 300000000"]
        assert _raw_post(hub.port, huge, b"x" * 65536) == 401  # never waits for the other 299.9 MB
        bearer = f"Authorization: Bearer {hub.token}"
        assert _raw_post(hub.port, [*huge, bearer], b"x" * 65536) == 413
        chunk = b"x" * 2**20
        chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 9
        assert _raw_post(hub.port, ["Transfer-Encoding: chunked", bearer], chunks) == 413
        [image] = hub.client.fetch_all("UncertainPredictions", page_size=1)[:1]
        label = hub.client.add_label(image["tuple"]["id"], "7", "tester")
        assert label["label"] == "7" and hub.alive() and hub.health()["status"] == "ok"


# item 7 ----------------------------------------------------------------------------------------


def _metro(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metro_app.cli", *args], capture_output=True, text=True, timeout=180, env=env
    )


def test_a_store_password_never_reaches_job_files_listings_argv_or_logs(
    kafka, kafka_settings, postgres, tmp_path, make_topic
):
    """Before: the password was in the job file (0644), in `jobs --json` and in the hub's argv."""
    secret = "s3cret-Pw-14"
    url = postgres.fresh_database("secret").replace("postgres@", f"postgres:{secret}@")
    topic = make_topic("events")
    state = tmp_path / "state"
    env = {**os.environ, "EDGE_MNIST_STATE_DIR": str(state), "EDGE_MNIST_API_TOKEN": "t"}
    flags = ["--bootstrap-servers", kafka.bootstrap_servers, "--topic", topic, "--store", url]
    try:
        submitted = _metro("submit", "--name", "hub", *flags, "--port", str(free_port()), "-v", env=env)
        assert submitted.returncode == 0, submitted.stderr[-2000:]
        registry = state / "jobs" / "hub.json"
        job = json.loads(registry.read_text())
        assert stat.S_IMODE(registry.stat().st_mode) == 0o600
        assert stat.S_IMODE((state / "jobs").stat().st_mode) == 0o700
        assert stat.S_IMODE(Path(job["log"]).stat().st_mode) == 0o600
        listing = _metro("jobs", "--json", env=env)
        [shown] = [json.loads(line) for line in listing.stdout.splitlines()]
        assert shown["state"] == "running"
        cmdline = Path(f"/proc/{job['pid']}/cmdline").read_bytes().decode()
        produce(kafka_settings, topic, [(make_metrics("CamA", 1).to_json(), b"CamA")])
        wait_until(
            lambda: Store(url).counts()["metrics"] == 1, 60, "the job storing into the PostgreSQL store"
        )
        for where, text in (
            ("job file", registry.read_text()),
            ("jobs --json", listing.stdout),
            ("argv", cmdline),
            ("log", Path(job["log"]).read_text()),
            ("submit output", submitted.stdout + submitted.stderr),
        ):
            assert secret not in text, where
        assert "postgres:***@" in Path(job["log"]).read_text()  # logged, masked
    finally:
        _metro("cancel", "hub", env=env)


# item 8 ----------------------------------------------------------------------------------------


def test_an_id_repeated_with_other_content_is_dead_lettered_and_the_first_copy_kept(
    kafka, kafka_settings, tmp_path, make_topic, hub_kafka_client
):
    """Before: a forged copy with a known id counted as a duplicate (and in one batch it won)."""
    topic, dlq = topics(kafka_settings, make_topic)
    originals = [make_image("CamA", i) for i in range(20)]
    forged = [make_image("CamA", i).to_dict() | {"result_class": (i + 1) % 10} for i in range(20)]
    same_batch = []
    for i in range(10):
        same_batch += [(originals[i].to_json(), b"CamA"), (json.dumps(forged[i]).encode(), b"CamA")]
    produce(kafka_settings, topic, same_batch + [(m.to_json(), b"CamA") for m in originals[10:]])
    with hub_for(kafka, tmp_path, topic, dlq, client=hub_kafka_client) as hub:
        wait_until(lambda: counts(hub) == (20, 0, 10), 60, "20 originals stored, 10 forged dead-lettered")
        later = [(json.dumps(f).encode(), b"CamA") for f in forged[10:]]
        produce(kafka_settings, topic, later + [(m.to_json(), b"CamA") for m in originals[10:]])
        wait_until(lambda: counts(hub) == (20, 0, 20), 60, "the 10 later forgeries dead-lettered too")
        wait_until(lambda: hub.health()["consumer"]["duplicates"] >= 10, 30, "exact resends as duplicates")
        stored = {t["tuple"]["id"]: t["tuple"] for t in hub.client.fetch_all("UncertainPredictions")}
    assert all(stored[m.id]["result_class"] == m.result_class for m in originals)
    reasons = dead_reasons(kafka_settings, dlq, 20)
    assert len(reasons) == 20
    assert all("with different content; this copy is refused" in why for why in reasons.values())


def test_the_edge_summary_reports_uncertain_images_sent_and_dropped_apart(model_path, tmp_path, make_topic):
    """Before: `uncertain_sent` counted images the outbox bound had dropped."""
    outbox = tmp_path / "outbox.db"
    dead_port = free_port()
    cmd = [*EDGE_APP, "run", "--camera", "Test", "--repeat", "1", "--metrics-duration", "1",
           "--bootstrap-servers", f"127.0.0.1:{dead_port}", "--topic", make_topic("events"), "--model", str(model_path),
           "--outbox", str(outbox), "--outbox-max-mb", "0.5", "--drain-timeout", "1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 3, proc.stderr[-2000:]  # nothing delivered: the broker is unreachable
    [done] = [line for line in proc.stderr.splitlines() if "done: {" in line]
    summary = json.loads(re.sub(r"^.*?done: ", "", done))
    assert summary["uncertain_dropped"] > 0
    assert summary["uncertain_sent"] + summary["uncertain_dropped"] == summary["scored"] == 1000
    assert outbox_rows(outbox) == summary["uncertain_sent"] + summary["metrics_sent"]
