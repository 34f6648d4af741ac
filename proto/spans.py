"""What the Perfetto / Chrome-JSON layout draws: generic timed spans, one `Timeline` per root.

These types are the whole input of the layout. They know nothing of Dynamo records, so a second
root (`Simulated`) can be built from a simulated run and drawn beside `Recorded` with the same
subtree: same group / chain names, same request keys (so flows and colours line up), its own
uuid and flow-id ranges. Times are integer nanoseconds.

The per-request records (Slice, Mark, Placement, RequestSpan, ChainItem) are built several times
per request and are not `frozen`: a frozen slotted dataclass sets every field through
`object.__setattr__`, about 4x slower, and that was most of the cost of building a timeline (as
for pipeline.model.Request). Treat them as immutable; nothing mutates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: drawing needs no graph code (nor the Mooncake reader it imports)
    from trace_pipe.pipeline.request_graph import Edge

# A debug-annotation list: (name, value) pairs in display order. Values are None (skipped), bool,
# int, float, str, or nested dict / list / tuple of those.
Args = tuple[tuple[str, object], ...]

# Slice categories: what a slice is, for the writers' colours and `trace-pipe check`'s nesting rules
CAT_REQUEST = "dynamo.llm"  # an LLM request, at the top of its chain's track
CAT_STAGE = "dynamo.llm.stage"  # prefill wait / prefill / decode ..., inside its request
CAT_MARKER = "dynamo.llm.marker"  # the first token, inside its request
CAT_TOOL = "dynamo.agent.tool"
CAT_TOOL_MARKER = "dynamo.agent.tool.marker"
CAT_WORKER = "trace_pipe.worker"  # a request's time on a worker
# a request's stages in the order they happen (others, as a replay's "queued", are not ordered)
STAGE_ORDER = {"prefill wait": 0, "prefill": 1, "first token": 2, "decode": 3}

# Slice argument keys whose string values the Perfetto writer interns (proto/packets.py, which
# knows no field names): few distinct values (Dynamo's identity and finish fields, statuses),
# repeated on many slices.
INTERNED_ARGS = frozenset((
    "model", "session_id", "session_type_id", "trajectory_id", "parent_trajectory_id", "parent_session_id",
    "workflow_id", "workflow_type_id", "program_id", "parent_program_id", "play_id", "agent_id",
    "event_type", "event_source", "status", "tool_class", "source", "finish.finish_reason",
    "finish.backend_finish_reason", "finish.stop_reason", "finish.tool_call_names",
    "finish.choice_finish_reasons", "error_type", "finish_reason", "backend_finish_reason", "stop_reason",
    "tool_call_names", "choice_finish_reasons", "name"))
# Ids repeated on a request's stages and worker slices (4-6 uses) but used once when a request has
# neither: interned from their second use on, so single-use ids cost nothing extra.
REPEATED_ARGS = frozenset(("request_id", "x_request_id"))


@dataclass(slots=True)
class Slice:
    name: str
    category: str
    start_ns: int
    end_ns: int
    args: Args = ()


@dataclass(slots=True)
class Mark:
    """An instant (a point in time, e.g. `first token`)."""

    name: str
    category: str
    ts_ns: int
    args: Args = ()


@dataclass(slots=True)
class Placement:
    """A stretch of a request that ran on one worker (what the `workers` group shows)."""

    worker: str  # display name, e.g. "worker 2" or "worker 2 dp 1"
    order: tuple  # sort key among workers, e.g. (2, 1): numeric, so worker 2 comes before worker 10
    slice: Slice
    pool: str = ""  # the group of `workers` it sits in ("prefill workers", "decode workers"; "": none)
    # a flow named so leaves this slice / ends on it, paired within its request (the KV handoff of
    # a disaggregated request, from its prefill slice to its decode slice)
    flow_out: str = ""
    flow_in: str = ""


@dataclass(slots=True)
class RequestSpan:
    """One LLM request: its slice on its chain's track, nested stages and marks, worker placements.

    `key` identifies the request across timelines: flows are drawn between keys and the
    correlation id (slice colour) is derived from it.
    """

    key: str
    group: str  # play / root session (a group track under the root)
    chain: str  # chain label (a track, with same-named lanes when requests overlap)
    slice: Slice
    stages: tuple[Slice, ...] = ()  # ordered, non-overlapping, inside `slice`
    marks: tuple[Mark, ...] = ()  # inside `slice`
    placements: tuple[Placement, ...] = ()


@dataclass(slots=True)
class ChainItem:
    """A slice or an instant on a chain's `tools` track (real, inferred or unmatched tool rows)."""

    group: str
    chain: str
    slice: Slice | None = None
    mark: Mark | None = None

    @property
    def start_ns(self) -> int:
        return self.slice.start_ns if self.slice is not None else self.mark.ts_ns  # type: ignore[union-attr]

    @property
    def end_ns(self) -> int:
        return self.slice.end_ns if self.slice is not None else self.mark.ts_ns  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class CounterSeries:
    """A counter track's samples: (ts ns, value) in time order; a value holds until the next."""

    name: str
    unit: str  # unit_name shown in the UI
    samples: Sequence[tuple[int, int]]
    description: str = ""


@dataclass(frozen=True, slots=True)
class WorkerTrack:
    """What a worker did that belongs to no single request (a simulated run's engine passes and
    state counters), drawn under that worker beside its placements."""

    worker: str  # display name, as Placement.worker
    order: tuple  # sort key among workers, as Placement.order
    passes: Sequence[Slice] = ()  # non-overlapping, in time order: one `engine passes` track
    counters: Sequence[CounterSeries] = ()
    pool: str = ""  # as Placement.pool


@dataclass(frozen=True, slots=True)
class Timeline:
    """Everything under one root track."""

    name: str  # root track name: "Recorded", "Simulated" (roots sort by name in the UI)
    requests: Sequence[RequestSpan]
    tools: Sequence[ChainItem] = ()
    links: Sequence[Edge] = ()  # one flow each
    description: str = ""
    separate_stages: bool = False  # stages on a sibling "<chain> stages" track instead of nested
    workers: Sequence[WorkerTrack] = ()  # per-worker passes / counters (simulated runs)
    not_drawn: int = 0  # requests of the input missing here (a replay that stopped before releasing them)
