"""The durable outbox: nothing acknowledged is kept, nothing unacknowledged is lost, metrics never dropped."""

import sqlite3
import threading

import pytest

from edge_app.outbox import IMAGE, METRICS, Outbox, Record
from edge_app.sender import Sender
from edgemnist.errors import BrokerUnavailable, ConfigError
from edgemnist.wire.messages import OutboxStats


def img(i: int, size: int = 100) -> Record:
    return Record(IMAGE, b"cam", f"img{i:04d}".encode().ljust(size, b"."))


def met(i: int) -> Record:
    return Record(METRICS, b"cam", f"met{i:04d}".encode().ljust(100, b"."))


def test_put_peek_ack_and_survives_reopen(tmp_path):
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        box.put([img(i) for i in range(10)])
        rows = box.peek(4)
        assert [r[2][:7] for r in rows] == [b"img0000", b"img0001", b"img0002", b"img0003"]
        box.ack([r[0] for r in rows])
        assert box.pending == 6
    with Outbox(path) as box:  # a restarted edge finds what was not delivered
        assert box.pending == 6 and box.size_bytes == 600
        assert [r[2][:7] for r in box.peek(100)] == [f"img{i:04d}".encode() for i in range(4, 10)]


def test_full_outbox_drops_oldest_images_never_metrics(tmp_path):
    with Outbox(tmp_path / "o.db", max_bytes=1000) as box:
        box.put([met(0)] + [img(i) for i in range(5)])
        box.put([met(1)] + [img(i) for i in range(5, 10)])
        kept = [r[2][:7].decode() for r in box.peek(100)]
        assert box.size_bytes <= 1000
        assert kept == ["met0000", "img0002", "img0003", "img0004", "met0001"] + [
            f"img{i:04d}" for i in range(5, 10)
        ]
        assert box.stats().dropped == 2
        box.put([met(i) for i in range(2, 20)])  # images make way; metrics stay even over the bound
        assert [r[2][:3] for r in box.peek(1000)] == [b"met"] * 20
        assert box.stats() == OutboxStats(pending=20, dropped=10)
    with Outbox(tmp_path / "o.db", max_bytes=1000) as box:
        assert box.stats().dropped == 10  # the drop count is durable


def test_bad_outbox_path_and_bound(tmp_path):
    bad = tmp_path / "not.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not.db"):
        Outbox(bad).open()
    with pytest.raises(ConfigError, match="positive"):
        Outbox(tmp_path / "x.db", max_bytes=0)


class FlakyProducer:
    """Fails everything while `down` is set; records what it acknowledged."""

    def __init__(self, down: threading.Event, got: list) -> None:
        self.down, self.got = down, got

    def send_batch(self, topic, records, timeout):
        if self.down.is_set():
            return [BrokerUnavailable("broker down")] * len(records)
        self.got.extend(v for _, v in records)
        return [None] * len(records)

    def close(self):
        pass


def test_sender_keeps_everything_while_broker_down_and_delivers_after(tmp_path):
    down, got = threading.Event(), []
    down.set()
    with (
        Outbox(tmp_path / "o.db") as box,
        Sender(box, "t", lambda: FlakyProducer(down, got), max_backoff=0.05) as sender,
    ):
        box.put([img(i) for i in range(300)])
        assert not sender.drain(0.5)
        assert box.pending == 300 and got == []
        down.clear()
        assert sender.drain(10)
        assert len(got) == 300 and len(set(got)) == 300 and box.pending == 0


def test_sender_retries_when_producer_cannot_be_made(tmp_path):
    attempts = []

    def factory():
        attempts.append(1)
        if len(attempts) < 3:
            raise BrokerUnavailable("no broker at 127.0.0.1:1")
        return FlakyProducer(threading.Event(), got)

    got: list = []
    with Outbox(tmp_path / "o.db") as box, Sender(box, "t", factory, max_backoff=0.05) as sender:
        box.put([met(i) for i in range(5)])
        assert sender.drain(10)
    assert len(got) == 5 and len(attempts) == 3


def test_backlog_reads_an_open_outbox_without_writing_and_names_the_oldest_metrics(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        box.put([Record(IMAGE, b"c", b"i1"), Record(METRICS, b"c", b"m1"), Record(IMAGE, b"c", b"i2")])
        seqs = [seq for seq, _, _ in box.peek()]
        got = Outbox.backlog(path)  # while the edge holds it open
        assert got.by_kind == {IMAGE: 2, METRICS: 1} and got.pending == 3
        assert got.oldest_seq == seqs[1]  # the metrics message, though an image is older
        box.ack([seqs[1]])
        assert Outbox.backlog(path).oldest_seq == seqs[0]  # no metrics left: the oldest of any kind
        box.ack([seqs[0], seqs[2]])
    assert Outbox.backlog(path) == type(got)({}, None)
    with pytest.raises(sqlite3.Error):
        Outbox.backlog(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
