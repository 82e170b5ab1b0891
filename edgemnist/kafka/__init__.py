"""The only way into kafka-python for the rest of the code: producer, consumer and admin helpers.

Everything else receives an :class:`EventProducer` or a consumer, so it tests without a
broker. "Cannot reach the broker" surfaces as :class:`~edgemnist.errors.BrokerUnavailable`.
The code lives in `edgemnist.kafka.clients` (client factories, SteadyConsumer),
`_kafka_producer` (EventProducer), `_kafka_admin` (access, broker wait, topics) and
`_kafka_reader` (TopicReader); import it from here.
"""

from __future__ import annotations

from edgemnist.kafka.acls import Grant, create_acls, kafka_acls_commands, needs
from edgemnist.kafka.admin import GroupLag, _admin, check_access, ensure_topics, wait_for_broker
from edgemnist.kafka.clients import (
    CONSUMER_DEFAULTS,
    PRODUCER_DEFAULTS,
    SteadyConsumer,
    is_unavailable,
    make_consumer,
    make_group_consumer,
    make_producer,
    require_crc32c,
)
from edgemnist.kafka.producer import EventProducer
from edgemnist.kafka.reader import TopicReader, TopicRecord

__all__ = [
    "require_crc32c",
    "make_producer",
    "make_consumer",
    "make_group_consumer",
    "SteadyConsumer",
    "EventProducer",
    "ensure_topics",
    "GroupLag",
    "wait_for_broker",
    "check_access",
    "is_unavailable",
    "TopicRecord",
    "TopicReader",
    "PRODUCER_DEFAULTS",
    "CONSUMER_DEFAULTS",
    "Grant",
    "needs",
    "create_acls",
    "kafka_acls_commands",
    "_admin",
]
