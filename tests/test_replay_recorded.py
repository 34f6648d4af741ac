"""`--timing recorded`: with enough workers that nothing queues, the simulation reproduces the
recorded run (every start and end to 1 ms), which checks the DAG reconstruction (pipeline.request_graph)
and the release rule (sim.dag); with a concurrency limit, queueing shows up as start error."""

from __future__ import annotations

import pytest
from dynamo_records import FIXTURES, req, write_jsonl
from replay_cases import agentic_records

from trace_pipe.pipeline.replay_input import load_input
from trace_pipe.sim.config import EngineArgs
from trace_pipe.sim.recorded import Service, run_recorded
from trace_pipe.sim.replay import ReplayOptions

WEKA = FIXTURES / "kv_cache_tester_traces"


def replay_recorded(paths, fmt, workers=8, **engine):
    inp = load_input([str(p) for p in paths], fmt)
    svc = [Service(float(r.end_ms - r.start_ms), r.ttft_ms) for r in inp.recorded]
    opts = ReplayOptions(num_workers=workers, trace_block_size=inp.block_size, engine=EngineArgs.from_json(engine),
                         record=True)
    return inp, run_recorded(inp.rows, inp.sources, inp.sim_format, opts, svc)


def assert_reproduces(inp, res):
    t0 = min(r.start_ms for r in inp.recorded)
    assert [r.request_id for r in inp.recorded] == [s.request_id for s in res.requests]
    for rec, sim in zip(inp.recorded, res.requests):
        assert sim.status == "completed"
        assert sim.first_admit_ms == sim.ready_ms, f"{sim.request_id} queued"
        assert abs(sim.ready_ms - (rec.start_ms - t0)) <= 1.0, sim.request_id
        assert abs(sim.end_ms - (rec.end_ms - t0)) <= 1.0, sim.request_id
        if rec.ttft_ms is not None and rec.ttft_ms <= rec.end_ms - rec.start_ms:
            assert abs(sim.first_token_ms - sim.ready_ms - rec.ttft_ms) <= 1e-6


@pytest.mark.skipif(not WEKA.is_dir(), reason=f"WEKA fixtures not found at {WEKA}")
def test_weka_traces_reproduce_recorded_times():
    files = sorted(WEKA.glob("trace_*.json"))
    assert len(files) == 29
    edges = 0
    for p in files:
        inp, res = replay_recorded([p], "weka", workers=2)
        assert_reproduces(inp, res)
        edges += len(inp.edges)
    assert edges > 3000  # every request after the first of its chain waits for something


def test_generated_dynamo_trace_with_subagents_and_tools_reproduces(tmp_path):
    for seed in range(4):
        p = write_jsonl(tmp_path / f"t{seed}.jsonl", agentic_records(seed))
        inp, res = replay_recorded([p], "dynamo", workers=4)
        rel = {e.relation for e in inp.edges}
        assert {"sequence", "spawn", "join"} <= rel
        assert sum(r.tool_wait_ms is not None for r in inp.rows) > 5
        assert_reproduces(inp, res)


def test_concurrency_limit_queues_and_shifts_dependents(tmp_path):
    # two independent 1 s requests at t=0 and a dependent of the second: one worker with one slot
    p = write_jsonl(tmp_path / "t.jsonl", [
        req("a", "A", None, 0, 1000, [1], ttft_ms=100.0), req("b", "B", None, 0, 1000, [2], ttft_ms=200.0),
        req("b2", "B", None, 1500, 2000, [3], ttft_ms=50.0)])
    inp, res = replay_recorded([p], "dynamo", workers=1, max_num_seqs=1)
    got = {r.request_id: (r.ready_ms, r.first_admit_ms, r.first_token_ms, r.end_ms) for r in res.requests}
    assert got == {"a": (0.0, 0.0, 100.0, 1000.0), "b": (0.0, 1000.0, 1200.0, 2000.0),
                   "b2": (2500.0, 2500.0, 2550.0, 3000.0)}
    # one "pass" per stretch of constant membership: (start, end, batch, prefill tokens, decoding)
    passes = [(p.start_ms, p.end_ms, p.batch_size, p.prefill_tokens, p.decode_requests)
              for p in res.timeline.passes()]
    assert passes == [(0.0, 100.0, 1, 2, 0), (100.0, 1000.0, 1, 0, 1), (1000.0, 1200.0, 1, 2, 0),
                      (1200.0, 2000.0, 1, 0, 1), (2500.0, 2550.0, 1, 2, 0), (2550.0, 3000.0, 1, 0, 1)]
    waiting = [(c.time_ms, c.waiting) for c in res.timeline.counters()]
    assert waiting == [(0.0, 1), (100.0, 1), (1000.0, 0), (1200.0, 0), (2500.0, 0), (2550.0, 0)]
