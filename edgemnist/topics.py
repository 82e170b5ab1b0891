"""The default Kafka topic names, one place for the edges, the hub, the demo and CDC.

Each is only a default: every app takes its topics from flags and
``EDGE_MNIST_*`` env vars. The edge and the hub must agree on them without
configuration, which is why both read them from here.

>>> EVENTS, DLQ
('edge-mnist.events', 'edge-mnist.dlq')
>>> f"{CDC_PREFIX}.public.labels"  # Debezium names a table's topic <prefix>.<schema>.<table>
'edge-mnist.cdc.public.labels'
"""

from __future__ import annotations

__all__ = [
    "EVENTS",
    "MODELS",
    "DLQ",
    "CONTROL",
    "ALERTS",
    "PREDICT_REQUESTS",
    "PREDICT_RESPONSES",
    "CDC_PREFIX",
]

EVENTS = "edge-mnist.events"  # metrics and uncertain images, edge -> hub
MODELS = "edge-mnist.models"  # model envelopes, hub -> edges
DLQ = "edge-mnist.dlq"  # records the hub could not store, with the reason
CONTROL = "edge-mnist.control"  # commands and training events for the hub
ALERTS = "edge-mnist.alerts"  # drift and label alerts the hub raises
PREDICT_REQUESTS = "edge-mnist.predict.requests"  # images to classify, to the hub
PREDICT_RESPONSES = "edge-mnist.predict.responses"  # the hub's answers
CDC_PREFIX = "edge-mnist.cdc"  # Debezium topic.prefix of the digit database
