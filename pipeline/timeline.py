"""A simulated run as plain records: what a replay produced, in the terms a timeline writer needs.

The simulator converts its result into this (sim/export.py) and the Perfetto writer draws it
(proto/simulated.py), so neither has to import the other. Times are float ms on the simulated
clock (0 = the first recorded start, when the input carries recorded times).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class SimulatedRequest:
    request_id: str
    play: str  # play / DAG component label the simulator grouped it under
    session_id: str | None
    worker: int | None  # None: never routed
    ready_ms: float | None  # released by the DAG (arrival)
    admit_ms: float | None  # first scheduled on its worker
    first_token_ms: float | None
    end_ms: float | None
    prefill_chunks: tuple[tuple[float, float, int], ...]  # (start, end, tokens) per chunk
    input_length: int
    output_tokens: int
    cached_tokens: int
    admissions: int
    status: str  # completed | rejected | incomplete | not_started
    # a disaggregated run (`SimulatedRun.pools`): `worker` is its decode worker, `prefill_chunks`
    # ran on `prefill_worker`, its KV was held there from `kv_held_ms` and joined the decode set
    # at `decode_admit_ms`
    prefill_worker: int | None = None
    kv_held_ms: float | None = None
    decode_admit_ms: float | None = None


class EnginePass(NamedTuple):
    """One engine pass (or, with recorded timing, one stretch of constant batch) on a worker; with
    `repeat` > 1, a run of that many back-to-back decode passes of the same batch and length
    `pass_ms`, from the first's start to the last's end (a long replay has millions of passes, mostly
    such runs). The k-th pass of a run starts where adding `pass_ms` to the start k times lands, as
    the engine's own clock advanced."""

    worker: int
    start_ms: float
    end_ms: float
    batch_size: int
    prefill_tokens: int
    decode_requests: int
    repeat: int = 1
    pass_ms: float = 0.0  # each pass's length when repeat > 1


class WorkerSample(NamedTuple):
    """Worker state from `time_ms` on (until the next sample of the same worker)."""

    worker: int
    time_ms: float
    running: int
    waiting: int
    kv_blocks_active: int
    kv_blocks_cached: int
    prefix_hit_tokens: int


@dataclass(frozen=True, slots=True)
class SimulatedRun:
    requests: Sequence[SimulatedRequest]  # trace order
    passes: Sequence[EnginePass]  # per worker, in time order
    samples: Sequence[WorkerSample]  # per worker, in time order
    edges: Sequence[tuple[str, str, str]]  # (dependency id, dependent id, relation)
    num_workers: int
    description: str = ""
    #: each worker's pool ("prefill" / "decode") in a disaggregated run, by worker id; () when
    #: every worker serves whole requests
    pools: tuple[str, ...] = ()
