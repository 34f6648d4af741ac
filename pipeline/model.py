"""The normalized trace model every reader produces and every writer consumes.

Times are integer Unix milliseconds, as in Dynamo's converters (the Rust loaders do integer ms
arithmetic); the recorded float metrics are kept unrounded for display. Identity is normalized to
"chain" (one reasoning/tool lane: G1 `program_id`, G2/G3a `trajectory_id`, G3b/c `session_id`,
a WEKA agent) and "parent chain" (the chain that spawned it); the original field names survive in
`identity` so writers can show what the trace actually said.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


class Generation(enum.Enum):
    """Where a record came from; decides field names, loader strictness and error wording."""

    G1 = "G1"  # dynamo.agent.trace.v1, workflow/program
    G2 = "G2"  # dynamo.agent.trace.v1, session/trajectory
    G3A = "G3a"  # dynamo.request.trace.v1, trajectory
    G3B = "G3b"  # dynamo.request.trace.v1, session (also G3c: same record shape)
    G3_FREE = "G3"  # dynamo.request.trace.v1 without agent_context
    WEKA = "weka"  # kv-cache-tester agent trace
    MOONCAKE = "mooncake"  # (agentic) Mooncake JSONL read back
    SIM = "sim"  # produced by the simulator

    @property
    def chain_word(self) -> str:
        """The noun Dynamo's messages use for a chain in this generation."""
        if self is Generation.G1:
            return "program"
        return "session" if self in (Generation.G3B, Generation.G3_FREE) else "trajectory"


@dataclass(slots=True, unsafe_hash=True)
class Source:
    """File and 1-based line a record came from, for error messages. Treat as immutable: one is
    made per input line, and a `frozen` one cost 1.1 µs to make against 0.4 µs (as Request)."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class Worker:
    prefill_worker_id: int | None = None
    prefill_dp_rank: int | None = None
    decode_worker_id: int | None = None
    decode_dp_rank: int | None = None


@dataclass(slots=True, unsafe_hash=True)
class ToolCallRef:
    """One entry of `finish_reason_metadata.tool_calls` (arguments are never recorded). Treat as
    immutable: one is made per call of every request row, and a `frozen` one cost 3x as much."""

    choice_index: int | None
    tool_call_index: int | None
    id: str | None
    name: str | None


@dataclass(slots=True)
class Request:
    """One LLM call (`request_end` row, WEKA call, or Mooncake row). Treat as immutable.

    Not `frozen`: a frozen dataclass sets each of these ~30 fields through `object.__setattr__`,
    which made construction 4x slower (7 µs vs 1.6 µs) and a quarter of the read time of a
    million-row trace. Nothing in the project mutates a Request."""

    request_id: str
    chain_id: str | None  # None: context-free row
    parent_chain_id: str | None
    start_ms: int
    end_ms: int
    output_tokens: int | None
    # replay block
    block_size: int | None
    input_length: int | None
    # Opaque prefix-sequence labels (u64, never floats): a tuple, an array("Q"), or the Dynamo
    # reader's SharedHashes (a chain's shared prefix; `shared_hashes.flat` gives one array)
    hashes: Sequence[int]
    completion_hashes: Sequence[int] | None = None
    # recorded metrics (absent when not recorded)
    model: str | None = None
    x_request_id: str | None = None
    input_tokens: int | None = None
    cached_tokens: int | None = None
    prefill_wait_time_ms: float | None = None
    prefill_time_ms: float | None = None
    ttft_ms: float | None = None
    total_time_ms: float | None = None
    avg_itl_ms: float | None = None
    kv_hit_rate: float | None = None
    kv_transfer_estimated_latency_ms: float | None = None
    queue_depth: int | None = None
    worker: Worker | None = None
    finish: dict | None = None  # finish_reason_metadata as recorded
    tool_calls: tuple[ToolCallRef, ...] = ()
    event_time_ms: float | None = None
    run_id: str | None = None  # G1 workflow_id / G2 session_id / WEKA play id: the whole run
    identity: tuple[tuple[str, object], ...] = ()  # agent_context fields as recorded, in order
    generation: Generation = Generation.G3B
    source: Source | None = None
    # False: a Dynamo row without request_received_ms (G1/G2), whose start was derived from its
    # end and total time; the Perfetto args then leave the field out rather than invent it
    received_recorded: bool = True

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass(frozen=True, slots=True)
class ClaudeLink:
    """G3c `tool.claude`: explicit causality between a tool and the requests around it."""

    source_request_id: str | None
    consumer_request_id: str | None
    child_session_id: str | None
    execution_mode: str | None


@dataclass(slots=True)
class ToolEvent:
    """One harness tool row (`tool_start`, `tool_end`, `tool_error`), fields as recorded. Treat as
    immutable (not `frozen` for construction speed, as Request)."""

    event_type: str
    chain_id: str
    parent_chain_id: str | None
    tool_call_id: str | None
    tool_class: str | None
    event_time_ms: float
    started_at_ms: int | None = None
    ended_at_ms: int | None = None
    duration_ms: float | None = None
    status: str | None = None
    output_tokens: int | None = None
    output_bytes: int | None = None
    tool_name_hash: str | None = None
    error_type: str | None = None
    claude: ClaudeLink | None = None
    event_source: str | None = None
    run_id: str | None = None
    identity: tuple[tuple[str, object], ...] = ()
    generation: Generation = Generation.G3B
    source: Source | None = None

    @property
    def terminal(self) -> bool:
        return self.event_type != "tool_start"


@dataclass(frozen=True, slots=True)
class ChainLink:
    """Explicit parent/child edges a reader knows better than timing inference (WEKA markers).

    `spawn_request_id` spawns the chain's first request; `join_request_id`, when set, waits for the
    chain's last-finishing request. None means "infer from recorded times as Dynamo does".
    """

    chain_id: str
    spawn_request_id: str | None = None
    join_request_id: str | None = None


@dataclass(slots=True)
class Trace:
    """Everything read from a set of inputs."""

    requests: list[Request] = field(default_factory=list)
    tools: list[ToolEvent] = field(default_factory=list)
    links: dict[str, ChainLink] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> rows skipped
    notes: Counter = field(default_factory=Counter)  # reason -> values adjusted or derived (not skipped)
    plays: dict[str, str] = field(default_factory=dict)  # chain id -> play label, when a reader knows it
    # Mooncake input read back: the rows as written (their edges are explicit) and the v2 header
    mooncake_rows: list = field(default_factory=list)
    mooncake_header: dict | None = None

    @property
    def block_size(self) -> int | None:
        for r in self.requests:
            if r.block_size is not None:
                return r.block_size
        return None
