"""What a replay produced, as plain records a writer (report, JSONL, Perfetto) can use without
importing any other simulator module. Times are float ms on the virtual clock, 0 = the earliest
normalised arrival."""

from __future__ import annotations

from dataclasses import dataclass


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
    #: `RequestRecord.cached_tokens` also counts decode-side readmissions, as the summary does)
    prefill_reused_tokens: int = 0


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    session_id: str | None
    play: str
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
    #: first_admit_ms / admission_history / cached_tokens / prefill_chunks the prefill side's)
    handoff: Handoff | None = None


@dataclass(frozen=True, slots=True)
class EnginePass:
    worker: int
    start_ms: float
    end_ms: float
    batch_size: int  # requests scheduled in the pass
    prefill_tokens: int
    decode_requests: int  # requests that emitted a token at its end


@dataclass(frozen=True, slots=True)
class CounterSample:
    """Worker state at the end of a pass's scheduling."""

    worker: int
    time_ms: float
    running: int
    waiting: int
    kv_blocks_active: int
    kv_blocks_cached: int  # free blocks still holding a reusable hash
    prefix_hit_tokens: int  # tokens credited from cache by admissions in this pass


@dataclass(frozen=True, slots=True)
class PlayRecord:
    play: str
    request_ids: tuple[str, ...]
    start_ms: float
    end_ms: float
    makespan_ms: float
    completed: bool
    critical_path: tuple[str, ...]  # request ids, first to last
    critical_waits_ms: tuple[float, ...]  # dependency wait before each element (0 for the first)


@dataclass(frozen=True, slots=True)
class Timeline:
    """Engine passes and counter samples per worker, stored compactly (a run of identical decode
    passes is one raw row) and expanded on iteration.

    Raw row: (start, end, batch, prefill tokens, decode requests, running, waiting, kv active,
    kv cached, prefix-hit tokens, repeat, decode ms)."""

    raw: tuple[tuple[tuple, ...], ...]  # per worker

    def _expand(self):
        for wid, rows in enumerate(self.raw):
            for row in rows:
                s, e, bsz, ptok, ndec, run, wait, act, cached, hit, rep, dms = row
                if rep == 1:
                    yield wid, s, e, row
                    continue
                t = s
                for _ in range(rep):
                    nt = t + dms
                    yield wid, t, nt, row
                    t = nt

    def passes(self):
        """EnginePass records, per worker in time order."""
        for wid, s, e, row in self._expand():
            yield EnginePass(wid, s, e, row[2], row[3], row[4])

    def counters(self):
        """CounterSample records (taken at each pass start), per worker in time order."""
        for wid, s, _e, row in self._expand():
            yield CounterSample(wid, s, row[5], row[6], row[7], row[8], row[9])

    def runs(self):
        """(worker, start, end, raw row) per raw row, not expanded: a run of identical decode
        passes from its first pass's start to its last pass's end (the engine's own clock)."""
        for wid, rows in enumerate(self.raw):
            for row in rows:
                yield wid, row[0], row[1], row

    def pass_count(self) -> int:
        return sum(row[10] for rows in self.raw for row in rows)


@dataclass(frozen=True, slots=True)
class GraphNode:
    """One request's place in the agentic graph Dynamo 1.5+ builds (AISimulate's
    `ValidatedAgenticGraph`), in trace (row) order."""

    ordinal: int  # rank of its request_id (Dynamo's node index; its uuid is ordinal + 1)
    play_id: str
    session_id: str  # the row's conversation
    root_id: str | None  # its play's root, when the play has exactly one
    parent_id: str | None  # its earliest (by ordinal) spawn dependency
    dependencies: tuple[tuple[str, str], ...]  # (request_id, trigger) it waits for


@dataclass(frozen=True, slots=True)
class AgenticGraph:
    """The replayed agentic graph's identity (Dynamo 1.6's `agentic_graph` summary object) and
    what the report needs to label requests and plays as 1.6.1 does."""

    source: tuple[str, str] | None  # (format, digest) of the trace's provenance
    graph_digest: str  # BLAKE3 of the canonical graph AISimulate hashes
    block_size: int
    source_models: tuple[str, ...]  # sorted, distinct
    plays: tuple[str, ...]  # play ids in Dynamo's play order
    roots: tuple[tuple[int, ...], ...]  # per play, the row indices of its roots
    nodes: tuple[GraphNode, ...]  # per row


@dataclass(frozen=True, slots=True)
class SimResult:
    requests: tuple[RequestRecord, ...]  # trace order
    timeline: Timeline
    plays: tuple[PlayRecord, ...]
    itl_gaps: tuple[tuple[float, int], ...]  # (gap ms, number of tokens with that gap)
    num_workers: int
    wall_time_ms: float
    stopped_at_ms: float | None  # set when --max-sim-time-seconds cut the run
    graph: AgenticGraph | None = None  # agentic traces under Dynamo 1.5+ rules
    #: disaggregated replay: the prefill pool's size and passes (`num_workers` and `timeline`
    #: are then the decode pool's); 0 and None for aggregated workers
    num_prefill_workers: int = 0
    prefill_timeline: Timeline | None = None
