"""Harness tool events over ZMQ (dynamo-formats.md §3.3): a Python publisher and a collector.

`ToolEventPublisher` is the harness side (PUSH, connect); `Collector` is the Dynamo side (PULL,
bind) behind `trace-pipe collect`, writing rows Dynamo's own sinks would write.
"""

from .collector import CollectorConfig, Collector, CollectStats, collect
from .publisher import PublisherStats, ToolCall, ToolEventPublisher
from .validation import DROP_REASONS, InvalidToolEvent, normalize

__all__ = [
    "Collector", "CollectorConfig", "CollectStats", "collect",
    "ToolEventPublisher", "ToolCall", "PublisherStats",
    "normalize", "InvalidToolEvent", "DROP_REASONS",
]
