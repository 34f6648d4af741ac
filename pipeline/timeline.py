"""A simulated run as plain records: what a replay produced, in the terms its writers need.

The simulator builds these (sim/), the report reads them and the Perfetto writer draws them
(proto/simulated.py, through `SimulatedRun`, which sim/export.py assembles), so neither of sim/
and proto/ imports the other. Times are float ms on the simulated clock (0 = the earliest
normalised arrival, or the first recorded start when the input carries recorded times).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # annotations only: a replay of Mooncake rows needs no graph code
    from .request_graph import Edge


@dataclass(frozen=True, slots=True)
class PrefillChunk:
    start_ms: float
    end_ms: float
    tokens: int


@dataclass(frozen=True, slots=True)
class RouteOverlap:
    """Prefix overlap the KV router saw when it placed a request."""

    selected_blocks: int  # on the worker it chose
    best_blocks: int | None  # the largest over all workers (None: not recorded)
    tokens: int  # selected_blocks x engine block size


@dataclass(frozen=True, slots=True)
class Handoff:
    """A disaggregated request's prefill side and the handoff of its KV to the decode pool
    (sim/disagg.py); instants in ms, None when not reached."""

    prefill_worker: int
    prefill_admit_ms: float | None
    source_held_ms: float | None  # its prefill completed: the prefill worker holds its KV
    destination_reserved_ms: float | None  # the decode worker reserved its blocks
    destination_activated_ms: float | None  # the transfer ended
    decode_admit_ms: float | None  # it joined the decode set
    source_released_ms: float | None
    decode_reused_tokens: int | None
    #: (time, prefix-hit tokens) of its admissions on the decode worker
    decode_admissions: tuple[tuple[float, int], ...] = ()
    #: the largest prefix hit of its prefill-side admissions (the row's reused_input_tokens;
    #: `SimulatedRequest.cached_tokens` also counts decode-side readmissions, as the summary does)
    prefill_reused_tokens: int = 0


@dataclass(frozen=True, slots=True)
class SimulatedRequest:
    request_id: str
    session_id: str | None
    play: str  # play / DAG component label the simulator grouped it under
    source: str  # "path:line" of the row
    worker: int | None  # None: never routed (e.g. the run stopped first)
    ready_ms: float | None  # arrival for metrics (= release time; TTFT excludes dependency waits)
    dispatch_ms: float | None  # handed to a worker's queue (later than ready when the router queued it)
    first_admit_ms: float | None
    first_token_ms: float | None
    second_token_ms: float | None
    last_token_ms: float | None
    end_ms: float | None  # terminal time (last token, or rejection)
    input_length: int
    requested_output_length: int
    output_tokens: int  # tokens actually emitted
    cached_tokens: int  # largest prefix hit over its admissions (Dynamo's reused_input_tokens)
    first_cached_tokens: int  # prefix hit at its first admission
    admissions: int  # > 1 after preemption
    prefill_chunks: tuple[PrefillChunk, ...]
    status: str  # completed | rejected | incomplete | not_started
    # What Dynamo 1.6's per-request rows and summary add (defaults keep older builders working):
    #: (time, prefix-hit tokens) of every admission, readmissions after preemption included;
    #: empty when only the first admission is known (the report then uses first_admit_ms)
    admission_history: tuple[tuple[float, int], ...] = ()
    #: tokens its prefill passes computed (recomputation after preemption included, an
    #: unfinished pass not); None when not counted (the report then uses the first admission)
    prefill_tokens: int | None = None
    #: the KV router's choice (None under round_robin, which computes no overlap)
    route: RouteOverlap | None = None
    #: positions in the run's event order (releases, terminal deliveries and pass starts share
    #: one counter) of its release and of its terminal's delivery; None when not recorded
    #: (Dynamo 1.6's lifecycle transcript then orders one instant's events by rule)
    release_seq: int | None = None
    terminal_seq: int | None = None
    #: disaggregated replay: the prefill side and the KV handoff (`worker` is the decode worker,
    #: numbered within the decode pool; first_admit_ms / admission_history / cached_tokens /
    #: prefill_chunks the prefill side's)
    handoff: Handoff | None = None


class EnginePass(NamedTuple):
    """One engine pass (or, with recorded timing, one stretch of constant batch) on a worker; with
    `repeat` > 1, a run of that many back-to-back decode passes of the same batch and length
    `pass_ms`, from the first's start to the last's end (a long replay has millions of passes, mostly
    such runs). The k-th pass of a run starts where adding `pass_ms` to the start k times lands, as
    the engine's own clock advanced."""

    worker: int
    start_ms: float
    end_ms: float
    batch_size: int  # requests scheduled in the pass
    prefill_tokens: int
    decode_requests: int  # requests that emitted a token at its end
    repeat: int = 1
    pass_ms: float = 0.0  # each pass's length when repeat > 1


class WorkerSample(NamedTuple):
    """Worker state from `time_ms` on (until the next sample of the same worker), as its engine
    saw it at the end of a pass's scheduling."""

    worker: int
    time_ms: float
    running: int
    waiting: int
    kv_blocks_active: int
    kv_blocks_cached: int  # free blocks still holding a reusable hash
    prefix_hit_tokens: int  # tokens credited from cache by admissions in the pass


@dataclass(frozen=True, slots=True)
class SimulatedRun:
    """What a timeline writer draws of a replay. Workers are numbered run-wide: in a disaggregated
    run the prefill pool first, so a request's decode worker k is worker `decode_base + k`."""

    requests: Sequence[SimulatedRequest]  # trace order
    passes: Sequence[EnginePass]  # per worker, in time order
    samples: Sequence[WorkerSample]  # per worker, in time order
    edges: Sequence[Edge]  # the replayed DAG's dependencies, one flow each
    num_workers: int
    description: str = ""
    #: each worker's pool ("prefill" / "decode") in a disaggregated run, by worker id; () when
    #: every worker serves whole requests
    pools: tuple[str, ...] = ()

    @property
    def decode_base(self) -> int:
        """The run-wide id of decode worker 0 (0 when every worker serves whole requests)."""
        return self.pools.count("prefill")
