"""The agentic lifecycle transcript of ai-dynamo 1.6.1 (`agentic_lifecycle_digest`, its event
count and the play outcomes; sim/agentic_lifecycle.py), pinned on traces minimised from the
random-trace fuzzer (bench/fuzz_oracle16.py) against the 1.6.1 oracle.

Each case pins one rule of the order in which AISimulate's WorkloadDriver records events that
share an instant:
- `spawn_at_dispatch_follows_parent`, `spawn_under_floor_follows_parent`: a request released by
  another's dispatch at the same instant is dispatched right after it, although its graph ordinal
  is lower (seeds 23 and 39);
- `pass_start_splits_batch`: two requests ending at the same instant, one in a pass that started
  then (a cached 0-output prompt takes no time), are two feedback batches (seed 9);
- `rejection_on_two_workers`: a join rejected on one worker ends its play (the requests it
  would release are skipped) while the other worker's play completes (seed 2319, two workers);
  these four differed from 1.6.1 while the transcript was ordered by time and ordinal alone;
- `workers_share_one_batch`: passes ending at the same instant on different workers deliver one
  batch (seed 314, three workers), not one per pass;
- `batch_terminals_before_quiescence`: within a batch every causal terminal comes before any
  quiescence (seed 129).

The digests, counts and outcomes are 1.6.1 output (`dynamo.replay.run_trace_replay`, round_robin,
offline); `test_live_oracle` (slow) reruns every case on the oracle when its venv exists
($TRACE_PIPE_ORACLE16_PYTHON, default /work/oracle16/bin/python).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from trace_pipe.pipeline.mooncake import read_rows
from trace_pipe.sim import report
from trace_pipe.sim.agentic_lifecycle import lifecycle
from trace_pipe.sim.replay import run_replay

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from fuzz_oracle16 import compare, options  # noqa: E402

_HEADER = {"schema": "dynamo.agentic_mooncake", "version": 2, "hash_id_scope": "local",
           "source": {"format": "fuzz", "digest": "0"}}


def _row(rid: str, play: str, n: int, out: int, hashes: list[int], nb: float, deps: tuple = ()) -> dict:
    r = {"request_id": rid, "play_id": play, "session_id": play, "model": "m", "input_length": n,
         "output_length": out, "hash_ids": hashes, "not_before_ms": nb}
    if deps:
        r["dependencies"] = [{"request_id": d, "trigger": t, "delay_ms": delay, "relation": rel}
                             for d, t, delay, rel in deps]
    return r


def _done(play: str, t: float) -> dict:
    return {"play_id": play, "status": "completed", "causal_terminal_ms": t, "settled_at_ms": t}


class Case(NamedTuple):
    rows: list[dict]
    engine: dict
    tbs: int
    workers: int
    event_count: int
    digest: str
    outcomes: list[dict]
    order_matters: bool  # the time-and-ordinal rule alone gives another digest


CASES = {
    "spawn_at_dispatch_follows_parent": Case(
        [_row("r802-0", "p0", 3, 0, [1], 0.0),
         _row("r426-3", "p0", 4, 0, [1000], 0.0, (("r802-0", "dispatch", 0.0, "spawn"),))],
        {"block_size": 4}, 4, 1, 7, "7010fbdd00c0f9da017bbd4f1c1696fc24ed319f0f34670c95a24c62788dda26",
        [_done("p0", 16.592536000000003)], True),
    "spawn_under_floor_follows_parent": Case(
        [_row("r287-3", "p2", 4, 0, [1000], 100.5),
         _row("r064-6", "p2", 4, 0, [1000], 0.0, (("r287-3", "dispatch", 0.0, "spawn"),))],
        {"block_size": 2}, 4, 1, 7, "50f669266650d1500868e3c0b5478f13b1a044ca36207c469f66ae5eda6a2f4d",
        [_done("p2", 117.06216)], True),
    "pass_start_splits_batch": Case(
        [_row("r227-3", "p1", 4, 0, [1000], 5.0), _row("r509-7", "p3", 4, 0, [1000], 0.0)],
        {"block_size": 4}, 4, 1, 8, "1ba31e97f5ec8c3eee915b65ac92ea6987bffae36b80ac4e386f11b84096c935",
        [_done("p1", 16.56216), _done("p3", 16.56216)], True),
    "rejection_on_two_workers": Case(
        [_row("r873-4", "p1", 2, 0, [9], 1.0),
         _row("r718-5", "p1", 2, 5, [2000], 0.0, (("r873-4", "completion", 1.0, "sequence"),)),
         _row("r615-6", "p1", 2, 0, [12], 0.0, (("r718-5", "dispatch", 40.0, "spawn"),)),
         _row("r221-7", "p1", 10, 0, [3000, 3001, 13, 14, 15], 0.0,
              (("r615-6", "completion", 0.0, "join"), ("r718-5", "completion", 1.0, "join"))),
         _row("r540-9", "p2", 1, 0, [21], 50.0),
         _row("r575-10", "p2", 1, 0, [22], 0.0, (("r540-9", "completion", 10.0, "sequence"),)),
         _row("r145-11", "p2", 2, 5, [1000], 5.0, (("r540-9", "completion", 0.0, "spawn"),))],
        {"block_size": 2, "num_gpu_blocks": 4}, 2, 2, 23,
        "6cbca84c8f9f35131576a0257e02e3a77843a8792ea548fb94c33868d69e4ae8",
        [{"play_id": "p1", "status": "failed", "causal_terminal_ms": 192.942768, "settled_at_ms": 192.942768,
          "failure_request_id": "r221-7", "failure_status": "rejected"}, _done("p2", 192.942768)], True),
    "workers_share_one_batch": Case(
        [_row("r122-18", "p6", 1, 0, [1000], 0.0), _row("r036-10", "p3", 1, 0, [1000], 0.0)],
        {"block_size": 2}, 1, 3, 8, "6da8b00805dbc3f1fb5dd3e1ebe394b8af0fc8a758c3c029e07aaaf26d637756",
        [_done("p3", 16.516604), _done("p6", 16.516604)], False),
    "batch_terminals_before_quiescence": Case(
        [_row("r382-1", "p0", 2, 0, [2], 0.0), _row("r668-7", "p2", 2, 0, [13], 0.0)],
        {"block_size": 8}, 4, 1, 8, "e6dbfcc0d3a682f5c807122fe5e353fdb0dcbcce1e067dd6fe3913ff970b4d4d",
        [_done("p0", 16.56216), _done("p2", 16.56216)], False),
}


def _case(c: Case) -> dict:
    text = "".join(json.dumps(r) + "\n" for r in [dict(_HEADER, block_size=c.tbs)] + c.rows)
    return {"text": text, "fmt": "agentic_mooncake", "workers": c.workers, "tbs": c.tbs, "engine": c.engine,
            "arrival_speedup": 1.0}


def _replay(c: Case, tmp_path: Path, record: bool = False):
    tr = tmp_path / "t.jsonl"
    tr.write_text(_case(c)["text"])
    mf = read_rows([str(tr)])
    opts = options(_case(c), record, "1.6", ("fuzz", "0"))
    return run_replay(mf.rows, mf.sources, "agentic_mooncake", opts), opts


@pytest.mark.parametrize("record", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_lifecycle_as_1_6_1(name, record, tmp_path):
    c = CASES[name]
    res, opts = _replay(c, tmp_path, record)
    rep = report.summary(res, rules=opts.rules)
    assert rep["agentic_lifecycle_event_count"] == c.event_count
    assert rep["agentic_lifecycle_digest"] == c.digest
    assert rep["agentic_play_outcomes"] == c.outcomes


@pytest.mark.parametrize("name", sorted(CASES))
def test_order_is_the_replays(name, tmp_path):
    """The replay records the order (every released request has a release position, every
    terminal one a delivery position); the four cases that failed before need it: ordered by
    time and ordinal alone, their transcript is not 1.6.1's."""
    c = CASES[name]
    res, _opts = _replay(c, tmp_path)
    for r in res.requests:
        assert (r.release_seq is not None) == (r.ready_ms is not None)
        assert (r.terminal_seq is not None) == (r.end_ms is not None)
    by_rule = lifecycle(res.graph, tuple(dataclasses.replace(r, release_seq=None, terminal_seq=None)
                                         for r in res.requests))
    assert by_rule.event_count == c.event_count
    assert (by_rule.digest != c.digest) == c.order_matters


@pytest.mark.slow
def test_live_oracle():
    from fuzz_oracle16 import run_ours
    from oracle_cases import oracle16

    with oracle16() as oracle:
        for name, c in sorted(CASES.items()):
            theirs = oracle.run(_case(c))
            s = theirs["summary"]
            assert (s["agentic_lifecycle_event_count"], s["agentic_lifecycle_digest"]) == (c.event_count, c.digest), name
            assert s["agentic_play_outcomes"] == c.outcomes, name
            diffs, _missing = compare(theirs, run_ours(_case(c)))
            assert not diffs, (name, diffs[:5])
