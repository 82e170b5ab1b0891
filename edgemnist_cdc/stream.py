"""Reading a Debezium change topic: batches of decoded events, the table view, idle and caught-up tests.

The topic is read from its beginning with no consumer group (as the edge reads
the models topic): a trainer wants the whole table, every time, and commits
nothing. A record that is not a change event is counted and logged once per
reason, never fatal.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Literal

from edgemnist.errors import ConfigError, SchemaError
from edgemnist.kafka import TopicReader
from edgemnist.kafka.settings import KafkaSettings
from edgemnist_cdc.events import ChangeEvent, TableView, decode_change

__all__ = ["ChangeReader", "read_view"]

log = logging.getLogger(__name__)


class ChangeReader:
    """Decoded change events of one topic, batch by batch, from offset 0.

    Args:
        wait_for_topic: seconds to wait for the topic to exist (the connector creates
            it when it writes its first record) before :meth:`open` gives up.
    """

    def __init__(self, settings: KafkaSettings, topic: str, *, wait_for_topic: float = 60.0) -> None:
        self.topic = topic
        self._reader = TopicReader(settings, topic)
        self._wait_for_topic = wait_for_topic
        self.bad: Counter[str] = Counter()
        self.records = 0
        self.last_record = time.monotonic()

    def __enter__(self) -> ChangeReader:
        self.open()
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.close()
        return False

    def open(self) -> None:
        deadline = time.monotonic() + self._wait_for_topic
        while not self._reader.open():
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"topic {self.topic!r} does not exist after {self._wait_for_topic:g} s: "
                    "is the connector running (`edge-mnist cdc status`) and the table name right?"
                )
            time.sleep(0.5)
        self.last_record = time.monotonic()

    def close(self) -> None:
        self._reader.close()

    def caught_up(self) -> bool:
        """Every record that was on the topic when it was opened has been read."""
        return self._reader.caught_up()

    def idle_for(self) -> float:
        return time.monotonic() - self.last_record

    def poll(self, timeout: float = 0.5) -> list[ChangeEvent]:
        """The next batch of decoded events (empty when none arrived within ``timeout``)."""
        events: list[ChangeEvent] = []
        records = self._reader.poll(timeout)
        if records:
            self.last_record = time.monotonic()
            self.records += len(records)
        for r in records:
            where = f"topic {r.topic}, partition {r.partition}, offset {r.offset}"
            try:
                events.append(decode_change(r.key, r.value, where))
            except SchemaError as exc:
                reason = str(exc).split(" (topic ")[0]
                if not self.bad[reason]:
                    log.warning("skipping a record that is not a change event: %s", exc)
                self.bad[reason] += 1
        return events

    def batches(
        self, *, until_idle: float | None, stop: Callable[[], bool] = lambda: False
    ) -> Iterator[list[ChangeEvent]]:
        """Batches until caught up and idle for ``until_idle`` seconds (None: until ``stop()``)."""
        while not stop():
            batch = self.poll(0.5)
            if batch:
                yield batch
            elif until_idle is not None and self.caught_up() and self.idle_for() >= until_idle:
                return


def read_view(
    settings: KafkaSettings,
    topic: str,
    *,
    until_idle: float = 10.0,
    wait_for_topic: float = 60.0,
    view: TableView | None = None,
) -> tuple[TableView, dict[str, Any]]:
    """The table as its change topic says it is, once caught up and quiet for ``until_idle`` seconds.

    Returns the view and what was read: records, events by op, records skipped.
    """
    view = view if view is not None else TableView()
    with ChangeReader(settings, topic, wait_for_topic=wait_for_topic) as reader:
        for batch in reader.batches(until_idle=until_idle):
            view.apply_all(batch)
        stats = {
            "topic": topic,
            "records": reader.records,
            "ops": dict(view.counts),
            "skipped": sum(reader.bad.values()),
        }
    return view, stats
