"""`trace-pipe collect`: receive harness tool events over ZMQ and write Dynamo-style shards."""

from __future__ import annotations

import signal
import sys
from typing import Optional

import typer

from trace_pipe.cli.common import user_errors


def register(app: typer.Typer) -> None:
    app.command("collect", short_help="Collect harness tool events from a ZMQ socket into rows convert reads.")(collect_cmd)


def collect_cmd(
    output: Optional[str] = typer.Option(None, "--output", "-o", help=(
        "`.jsonl`: one file, appended. `.jsonl.gz`: the name minus `.jsonl.gz` is the segment prefix, "
        "as in Dynamo: tools.jsonl.gz -> tools.000000.jsonl.gz, tools.000001.jsonl.gz, ... "
        "Default: Dynamo's sink variables ($DYN_REQUEST_TRACE_SINKS, $DYN_REQUEST_TRACE_FILE_PATH, "
        "then the deprecated and G2 names).")),
    fmt: Optional[str] = typer.Option(None, "--format", help=(
        "jsonl or jsonl_gz. Default: the --output suffix, $DYN_REQUEST_TRACE_FILE_FORMAT, a jsonl / jsonl_gz "
        "sink name, else jsonl_gz (Dynamo's default).")),
    endpoint: Optional[str] = typer.Option(None, help=(
        "ZMQ endpoint to bind (PULL). Default: $DYN_REQUEST_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT, "
        "$DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT, tcp://127.0.0.1:20390.")),
    topic: Optional[str] = typer.Option(None, help=(
        "Required first frame. Default: $DYN_REQUEST_TRACE_TOOL_EVENTS_ZMQ_TOPIC, "
        "$DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_TOPIC, agent-tool-events. '' accepts any topic.")),
    flush_interval_ms: Optional[int] = typer.Option(None, "--flush-interval-ms", min=1, help=(
        "Flush period (each .gz flush appends one gzip member). Default: $DYN_REQUEST_TRACE_FILE_FLUSH_INTERVAL_MS "
        "(or its older names) or 1000.")),
    buffer_bytes: Optional[int] = typer.Option(None, min=1, help=(
        "Flush early when this many bytes are buffered. Default: $DYN_REQUEST_TRACE_FILE_BUFFER_BYTES "
        "(or its older names) or 1 MiB.")),
    roll_bytes: Optional[int] = typer.Option(None, min=1, help=(
        "Start a new .gz segment before exceeding this many uncompressed bytes. "
        "Default: $DYN_REQUEST_TRACE_FILE_ROLL_BYTES (or its older names) or 256 MiB.")),
    roll_lines: Optional[int] = typer.Option(None, min=1, help=(
        "Also roll .gz segments after this many lines. Default: $DYN_REQUEST_TRACE_FILE_ROLL_LINES "
        "(or its older names) or unset.")),
    max_messages: Optional[int] = typer.Option(None, min=1, help=(
        "Exit after receiving this many messages (default: run until SIGINT/SIGTERM).")),
    drain_timeout: float = typer.Option(2.0, min=0.0, help=(
        "On SIGINT/SIGTERM, seconds at most spent draining messages already queued.")),
) -> None:
    """Collect harness tool events (ZMQ PULL, MessagePack frames as Dynamo's tool relay) into
    enveloped rows `trace-pipe convert` reads like Dynamo's own shards.

    Validates as Dynamo does, counts dropped messages per reason, flushes periodically, and on
    SIGINT/SIGTERM drains, flushes, closes the file and exits 0 with a summary on stderr."""
    from trace_pipe.tools import env
    from trace_pipe.tools.collector import Collector, CollectorConfig
    from trace_pipe.tools.sink import DEFAULT_BUFFER_BYTES, DEFAULT_ROLL_BYTES

    with user_errors():
        choice = env.sink_choice(output, fmt)
        cfg = CollectorConfig(
            endpoint=env.collector_endpoint(endpoint),
            topic=env.collector_topic(topic),
            output=choice.path,
            fmt=choice.fmt,
            stderr=choice.stderr,
            flush_interval_s=env.sink_int(env.FLUSH_VARS, flush_interval_ms, 1000) / 1000,
            buffer_bytes=env.sink_int(env.BUFFER_VARS, buffer_bytes, DEFAULT_BUFFER_BYTES),
            roll_bytes=env.sink_int(env.ROLL_BYTES_VARS, roll_bytes, DEFAULT_ROLL_BYTES),
            roll_lines=env.sink_int(env.ROLL_LINES_VARS, roll_lines, None),
            max_messages=max_messages,
            drain_timeout_s=drain_timeout,
        )
        collector = Collector(cfg)
        bound = collector.bind()
        topic_note = f"topic {cfg.topic!r}" if cfg.topic else "any topic"
        # also the readiness signal scripts wait for
        dest = " and ".join(([f"{choice.path} ({choice.fmt})"] if choice.path else []) + (["stderr"] if choice.stderr else []))
        print(f"trace-pipe collect: listening on {bound} ({topic_note}) -> {dest}", file=sys.stderr,
              flush=True)

        def on_signal(signum: int, frame: object) -> None:
            collector.stop()  # only sets an event; the loop notices within one poll interval

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            stats = collector.run()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        files = ", ".join(stats.paths)
        print(f"trace-pipe collect: {stats.summary()}; files: {files}", file=sys.stderr, flush=True)
        if stats.write_error is not None:
            # the files end at whole lines / gzip members: convert reads everything in them
            print(f"{stats.write_error} (collecting stopped; every line before it is complete on disk)",
                  file=sys.stderr, flush=True)
            raise typer.Exit(1)
