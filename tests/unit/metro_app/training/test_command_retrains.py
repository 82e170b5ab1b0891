"""Issue 24.8: a retrain asked for on the control topic survives a hub stopped before or during it."""

from __future__ import annotations

import threading

from edgemnist.testing.fakes import FakeClock, FakeConsumer, FakeProducer, Record, TopicPartition
from metro_app.ingest.control import ControlLoop
from metro_app.ingest.loop import DeadLetterSink
from metro_app.store.requests import STALE_SECONDS
from metro_app.training.jobs import CommandRetrains, RetrainJobs
from metro_app.training.retrain import RetrainResult

COMMAND = b'{"type": "command", "payload": "retrain"}'


def result() -> RetrainResult:
    return RetrainResult(version="m-2", parent="m-1", accepted=True, reason="test")


def test_the_request_is_in_the_store_before_the_offset_is_committed(store):
    class Watching(FakeConsumer):
        def commit(self):
            seen.append(store.retrain_requests().get("edge-mnist.control[0]@0"))
            super().commit()

    seen: list = []
    tp = TopicPartition("edge-mnist.control", 0)
    consumer = Watching([{tp: [Record("edge-mnist.control", 0, 0, None, COMMAND)]}])
    loop = ControlLoop(
        consumer, store, DeadLetterSink(FakeProducer(), "dlq"), lambda name: None, retry_seconds=0
    )
    loop.step()
    assert [s["state"] for s in seen] == ["pending"]


def test_a_request_left_by_a_stopped_hub_is_run_by_the_next_one(store):
    clock = FakeClock(1000.0)
    requests = store.retrain_requests()
    requests.record([("edge-mnist.control[0]@5", "control topic edge-mnist.control")], now=clock.now)
    hang = threading.Event()
    first = RetrainJobs(lambda progress: hang.wait(30) and result())
    CommandRetrains(first, requests, "hub-a", clock=clock).serve()
    assert requests.get("edge-mnist.control[0]@5")["state"] == "running"
    # hub-a is killed during its retrain: nothing renews the claim. A restarted hub waits for the
    # claim to go stale, then runs the request and records that it was interrupted.
    ran: list[str] = []
    second = RetrainJobs(lambda progress: ran.append("retrain") or result())
    again = CommandRetrains(second, requests, "hub-b", clock=clock)
    assert again.serve() is None
    clock.now += STALE_SECONDS + 1
    job = again.serve()
    second.join(10)
    hang.set()
    assert job is not None and ran == ["retrain"]
    row = requests.get("edge-mnist.control[0]@5")
    assert row["state"] == "done" and row["job"] == job["id"] and row["holder"] == "hub-b"
    assert "interrupted: hub-a stopped during its retrain" in row["detail"]


def test_a_failed_retrain_leaves_the_request_failed_with_its_error(store):
    requests = store.retrain_requests()
    requests.record([("c[0]@1", "t"), ("c[0]@2", "t")])

    def boom(progress):
        raise RuntimeError("no labels to learn from")

    jobs = RetrainJobs(boom)
    job = CommandRetrains(jobs, requests, "hub-a").serve()
    jobs.join(10)
    rows = [requests.get(r) for r in ("c[0]@1", "c[0]@2")]
    assert job is not None and {(r["state"], r["job"]) for r in rows} == {("failed", job["id"])}
    assert "no labels to learn from" in rows[0]["detail"]
    assert requests.counts() == {"failed": 2}


def test_a_request_waits_while_another_retrain_runs_and_runs_after_it(store):
    requests = store.retrain_requests()
    gate = threading.Event()
    jobs = RetrainJobs(lambda progress: gate.wait(10) and result())
    jobs.start("POST /models/retrain")
    requests.record([("c[0]@3", "t")])
    retrains = CommandRetrains(jobs, requests, "hub-a")
    assert retrains.serve() is None and requests.get("c[0]@3")["state"] == "pending"
    gate.set()
    jobs.join(10)
    job = retrains.serve()
    jobs.join(10)
    assert job is not None and requests.get("c[0]@3")["state"] == "done"
