"""A group consumer left with no partitions while records wait and nobody commits is recreated."""

from edgemnist.kafka import SteadyConsumer
from edgemnist.testing.fakes import FakeClock, FakeConsumer, TopicPartition


class GroupMember(FakeConsumer):
    """A member of a group of one partition whose offsets are the shared dict `group`.

    `assigned` says whether the join gave it the partition; committing moves two records on.
    """

    def __init__(self, group, assigned):
        super().__init__(assigned=assigned)
        self.group = group

    def poll(self, timeout_ms=0, max_records=None):
        super().poll(timeout_ms, max_records)
        if not self.assigned:
            return {}
        return {TopicPartition("events", 0): [f"record-{self.group['committed'] + i}" for i in range(2)]}

    def end_offsets(self, tps):
        return {tp: self.group["end"] for tp in tps}

    def committed(self, tp, timeout_ms=None):
        return self.group["committed"]

    def commit(self):
        super().commit()
        self.group["committed"] += 2


def steady(joins, group):
    made = []

    def factory():
        made.append(GroupMember(group, joins[len(made)]))
        return made[-1]

    clock = FakeClock()
    return SteadyConsumer(factory, session_timeout=10.0, clock=clock), made, clock


def test_a_consumer_never_assigned_is_recreated_after_the_session_timeout_and_then_consumes():
    group = {"end": 100, "committed": 0}
    c, made, clock = steady([False, True], group)
    for t in (0, 3, 6, 9.9):
        clock.now = t
        assert c.poll(timeout_ms=100) == {}
    assert len(made) == 1 and c.recreated == 0
    clock.now = 10.0
    c.poll(timeout_ms=100)
    assert made[0].closed and len(made) == 2 and c.recreated == 1
    assert c.poll(timeout_ms=100) == {TopicPartition("events", 0): ["record-0", "record-1"]}
    c.commit()  # delegated to the new consumer
    assert group["committed"] == 2 and c.assignment() == {TopicPartition("events", 0)}


def test_an_idle_member_whose_partitions_others_consume_stays():
    group = {"end": 100, "committed": 0}
    c, made, clock = steady([False], group)
    for t in range(0, 60):
        clock.now = float(t)
        group["committed"] = min(group["end"], t)  # another member owns the partition and commits
        c.poll()
    assert c.recreated == 0 and len(made) == 1 and not made[0].closed


def test_an_idle_member_with_nothing_waiting_stays():
    group = {"end": 40, "committed": 40}
    c, made, clock = steady([False], group)
    for t in range(0, 60):
        clock.now = float(t)
        c.poll()
    assert c.recreated == 0 and len(made) == 1
