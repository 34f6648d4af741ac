"""What a replay produced, as plain records a writer (report, JSONL, Perfetto) can use without
importing any other simulator module. Times are float ms on the virtual clock, 0 = the earliest
normalised arrival. The per-request, per-pass and per-sample records are the shared model's
(pipeline/timeline.py), which the Perfetto writer draws too."""

from __future__ import annotations

from dataclasses import dataclass

from trace_pipe.pipeline.timeline import EnginePass, SimulatedRequest, WorkerSample


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
        """EnginePass records, one per pass (runs expanded), per worker in time order."""
        for wid, s, e, row in self._expand():
            yield EnginePass(wid, s, e, row[2], row[3], row[4])

    def counters(self):
        """WorkerSample records (taken at each pass start), per worker in time order."""
        for wid, s, _e, row in self._expand():
            yield WorkerSample(wid, s, row[5], row[6], row[7], row[8], row[9])

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
    requests: tuple[SimulatedRequest, ...]  # trace order
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
