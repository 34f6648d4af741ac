"""trace-pipe: Dynamo agent traces to (agentic) Mooncake and Perfetto, and DAG replay through mock workers."""

__version__ = "0.1.0"
