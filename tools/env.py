"""Environment variables of both ends, as Dynamo and the Pi provider read them.

Collector (Dynamo side): today's `DYN_REQUEST_TRACE_*` name first, then the names Dynamo still
reads as deprecated aliases (the `_JSONL_*` / `_OUTPUT_PATH` spellings, `DYN_AUDIT_*`), then the
G2 `DYN_AGENT_TRACE_*` name. Harness (publisher side): Pi's list, first set wins. Blank values
count as unset (Pi and Dynamo trim). Explicit arguments / CLI flags always win over the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from trace_pipe.pipeline.errors import TraceError

from .wire import DEFAULT_ENDPOINT, DEFAULT_TOPIC


class SettingError(TraceError, ValueError):
    """A flag or environment variable `collect` cannot use: bad input (a TraceError, one line),
    and a ValueError to library callers, as before."""

COLLECTOR_ENDPOINT_VARS = ("DYN_REQUEST_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT",
                           "DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT")
COLLECTOR_TOPIC_VARS = ("DYN_REQUEST_TRACE_TOOL_EVENTS_ZMQ_TOPIC",
                        "DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_TOPIC")
# The file sink's settings, each a list of names in Dynamo's order of precedence (its
# request_trace/config.rs), then the G2 name (dynamo-formats.md §1.1).
SINK_VARS = ("DYN_REQUEST_TRACE_SINKS", "DYN_AUDIT_SINKS", "DYN_AGENT_TRACE_SINKS")
PATH_VARS = ("DYN_REQUEST_TRACE_FILE_PATH", "DYN_REQUEST_TRACE_OUTPUT_PATH", "DYN_AUDIT_OUTPUT_PATH",
             "DYN_AGENT_TRACE_OUTPUT_PATH")
FORMAT_VAR = "DYN_REQUEST_TRACE_FILE_FORMAT"
BUFFER_VARS = ("DYN_REQUEST_TRACE_FILE_BUFFER_BYTES", "DYN_REQUEST_TRACE_JSONL_BUFFER_BYTES",
               "DYN_AUDIT_JSONL_BUFFER_BYTES", "DYN_AGENT_TRACE_JSONL_BUFFER_BYTES")
FLUSH_VARS = ("DYN_REQUEST_TRACE_FILE_FLUSH_INTERVAL_MS", "DYN_REQUEST_TRACE_JSONL_FLUSH_INTERVAL_MS",
              "DYN_AUDIT_JSONL_FLUSH_INTERVAL_MS", "DYN_AGENT_TRACE_JSONL_FLUSH_INTERVAL_MS")
ROLL_BYTES_VARS = ("DYN_REQUEST_TRACE_FILE_ROLL_BYTES", "DYN_REQUEST_TRACE_JSONL_GZ_ROLL_BYTES",
                   "DYN_AUDIT_JSONL_GZ_ROLL_BYTES", "DYN_AGENT_TRACE_JSONL_GZ_ROLL_BYTES")
ROLL_LINES_VARS = ("DYN_REQUEST_TRACE_FILE_ROLL_LINES", "DYN_REQUEST_TRACE_JSONL_GZ_ROLL_LINES",
                   "DYN_AUDIT_JSONL_GZ_ROLL_LINES", "DYN_AGENT_TRACE_JSONL_GZ_ROLL_LINES")
JSONL, JSONL_GZ = "jsonl", "jsonl_gz"
DEFAULT_FORMAT = JSONL_GZ  # Dynamo's, when nothing names one
_FORMAT_NAMES = {"jsonl": JSONL, "jsonl_gz": JSONL_GZ, "jsonl.gz": JSONL_GZ}  # Dynamo's parse_file_format
# sink names Dynamo knows; `jsonl` / `jsonl_gz` are its legacy names for the file sink with that format
_REMOTE_SINKS = ("nats", "otel", "s3")
_SINK_NAMES = ("file", "stderr", *_REMOTE_SINKS, JSONL, JSONL_GZ)

PUBLISHER_ENDPOINT_VARS = ("DYN_AGENT_TOOL_EVENTS_ZMQ_ENDPOINT", "DYN_AGENT_TRACE_TOOL_ZMQ_ENDPOINT",
                           "DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT")
PUBLISHER_TOPIC_VARS = ("DYN_AGENT_TOOL_EVENTS_ZMQ_TOPIC", "DYN_AGENT_TRACE_TOOL_ZMQ_TOPIC",
                        "DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_TOPIC")
QUEUE_CAPACITY_VAR = "DYN_AGENT_TOOL_EVENTS_QUEUE_CAPACITY"
DEFAULT_QUEUE_CAPACITY = 100_000  # Pi's default
DEFAULT_SESSION_TYPE_ID = "python_agent"


def first_env(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        v = (env.get(name) or "").strip()
        if v:
            return v
    return None


def collector_endpoint(flag: str | None, env: Mapping[str, str] = os.environ) -> str:
    return flag or first_env(env, COLLECTOR_ENDPOINT_VARS) or DEFAULT_ENDPOINT


def collector_topic(flag: str | None, env: Mapping[str, str] = os.environ) -> str:
    """`--topic ''` (explicitly empty) accepts any topic, like G2 Dynamo with no topic set."""
    if flag is not None:
        return flag
    return first_env(env, COLLECTOR_TOPIC_VARS) or DEFAULT_TOPIC


def sink_int(names: tuple[str, ...], flag: int | None, default: int | None,
             env: Mapping[str, str] = os.environ) -> int | None:
    """A numeric sink setting (`BUFFER_VARS`, `FLUSH_VARS`, `ROLL_BYTES_VARS`, `ROLL_LINES_VARS`):
    flag, else the first variable set, else default. Bad numbers are an error naming the variable."""
    if flag is not None:
        return flag
    for name in names:
        v = (env.get(name) or "").strip()
        if v:
            try:
                n = int(v)
            except ValueError:
                raise SettingError(f"environment variable {name}={v!r} is not an integer") from None
            if n <= 0:
                raise SettingError(f"environment variable {name}={v!r} must be positive")
            return n
    return default


@dataclass(frozen=True, slots=True)
class SinkChoice:
    """Where `collect` writes: `path` in `fmt` (None: no file), and/or every row on stderr."""

    path: str | None
    fmt: str | None
    stderr: bool = False


def sink_choice(output: str | None, fmt: str | None, env: Mapping[str, str] = os.environ) -> SinkChoice:
    """`--output` / `--format`, else Dynamo's sink variables, else the G2 ones.

    Without `--output` the sink list (`SINK_VARS`, first set) picks the sinks as Dynamo does:
    `file` (the default), `stderr`, and the legacy `jsonl` / `jsonl_gz` (the file sink in that
    format); `nats`, `otel` and `s3` are sinks trace-pipe cannot be, an error. The path comes from
    `PATH_VARS`. The format: `--format`, the `--output` name's suffix (`.jsonl`, `.gz`),
    `DYN_REQUEST_TRACE_FILE_FORMAT`, a legacy sink name, else Dynamo's default `jsonl_gz`
    (`jsonl`: the literal path, appended; `jsonl_gz`: the path minus `.jsonl[.gz]` is the prefix
    of `.NNNNNN.jsonl.gz` segments)."""
    legacy_fmt = None
    stderr = False
    path_src = "--output"
    path = output
    if not output:
        sinks_var, names = _sink_names(env)
        file_sink = names is None
        for n in names or ():
            if n in _REMOTE_SINKS:
                raise SettingError(f"environment variable {sinks_var} selects the {n!r} sink, which trace-pipe collect "
                                 f"cannot be (it writes files and stderr only): give --output or drop {n!r}")
            if n not in _SINK_NAMES:
                raise SettingError(f"environment variable {sinks_var}: unknown sink {n!r} "
                                 f"(Dynamo's are {', '.join(_SINK_NAMES)})")
            stderr |= n == "stderr"
            file_sink |= n in ("file", JSONL, JSONL_GZ)
        if names is not None:
            # Dynamo: jsonl_gz anywhere in the list wins over jsonl
            legacy_fmt = JSONL_GZ if JSONL_GZ in names else JSONL if JSONL in names else None
            legacy_fmt = legacy_fmt and (sinks_var, legacy_fmt)
        if not file_sink:
            return SinkChoice(None, None, stderr)
        path_src, path = _first(env, PATH_VARS)
        if path is None:
            raise SettingError(f"no output file: give --output or set {PATH_VARS[0]}")
        path_src = f"environment variable {path_src}"
    fmt_src, fmt = _file_format(output, fmt, env, legacy_fmt)
    if fmt == JSONL and path.endswith(".gz"):
        raise SettingError(f"{fmt_src} writes one plain JSONL file, but {path_src} names a gzip file: {path}")
    return SinkChoice(path, fmt, stderr)


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str | None, str | None]:
    for name in names:
        v = (env.get(name) or "").strip()
        if v:
            return name, v
    return None, None


def _sink_names(env: Mapping[str, str]) -> tuple[str | None, list[str] | None]:
    """(variable, names) of the first sink list set; Dynamo trims, lower-cases, drops empty items
    and reads a list of nothing but commas as `stderr`."""
    name, v = _first(env, SINK_VARS)
    if name is None:
        return None, None
    names = [n.strip().lower() for n in v.split(",") if n.strip()]
    return name, (list(dict.fromkeys(names)) or ["stderr"])


def _file_format(output: str | None, flag: str | None, env: Mapping[str, str],
                 legacy: tuple[str, str] | None) -> tuple[str, str]:
    """(where it came from, `jsonl` | `jsonl_gz`)."""
    if flag is not None:
        fmt = _FORMAT_NAMES.get(flag.strip().lower())
        if fmt is None:
            raise SettingError(f"--format {flag!r}: want jsonl or jsonl_gz")
        return f"--format {fmt}", fmt
    if output:
        if output.endswith(".gz"):
            return "--output", JSONL_GZ
        if output.endswith(".jsonl"):
            return "--output", JSONL
    v = (env.get(FORMAT_VAR) or "").strip()
    if v:
        fmt = _FORMAT_NAMES.get(v.lower())
        if fmt is None:
            raise SettingError(f"environment variable {FORMAT_VAR}={v!r}: want jsonl or jsonl_gz")
        return f"{FORMAT_VAR}={v}", fmt
    if legacy is not None:
        return f"environment variable {legacy[0]} ({legacy[1]})", legacy[1]
    return "the default format", DEFAULT_FORMAT


def publisher_endpoint(env: Mapping[str, str] = os.environ) -> str | None:
    return first_env(env, PUBLISHER_ENDPOINT_VARS)


def publisher_topic(env: Mapping[str, str] = os.environ) -> str:
    return first_env(env, PUBLISHER_TOPIC_VARS) or DEFAULT_TOPIC


def queue_capacity(env: Mapping[str, str] = os.environ) -> int:
    v = first_env(env, (QUEUE_CAPACITY_VAR,))
    try:
        n = int(v) if v else 0
    except ValueError:
        n = 0
    return n if n > 0 else DEFAULT_QUEUE_CAPACITY  # Pi: non-positive or junk -> default
