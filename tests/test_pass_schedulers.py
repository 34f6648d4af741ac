"""The pass-scheduler registry (sim/schedulers.py) and, for every scheduler in it, the decode fast
path each one declares (`decode_run_applies`): runs of identical decode passes, block-boundary
crossings inside them and runs past other workers' pass ends give the records and ITL gaps of
plain pass-by-pass scheduling, on random session traces with tight KV pools (preemption) under
Dynamo's polynomial (the version's decode input) and under a constant timing (the closed-form
jump over identical passes)."""

from __future__ import annotations

import random

import pytest
from test_sim_internals import _records, _run, _session_trace

from trace_pipe.sim.config import EngineArgs
from trace_pipe.sim.pass_dynamo import DynamoWorker
from trace_pipe.sim.pass_vllm_v0 import VllmV0Worker
from trace_pipe.sim.schedulers import SCHEDULERS, scheduler_for
from trace_pipe.sim.timing import FixedTiming
from trace_pipe.sim.versions import VERSIONS

V0_ARGS = {"scheduler": "vllm_v0", "enable_chunked_prefill": False, "enable_prefix_caching": False}


def test_registry_names_the_rule_sets_and_the_engine_arguments_pick_one():
    assert list(SCHEDULERS) == ["dynamo-1.4", "dynamo-1.5", "dynamo-1.6", "vllm-v0"]
    for v in ("1.4", "1.5", "1.6"):
        s = scheduler_for(EngineArgs(), VERSIONS[v])
        assert (s.name, s.worker, s.rules) == (f"dynamo-{v}", DynamoWorker, VERSIONS[v])
        assert s.make(0, EngineArgs(), FixedTiming(1, 1), 64, None).first_decodes is VERSIONS[v].prompt_pass_decodes
    v0 = scheduler_for(EngineArgs(**V0_ARGS), VERSIONS["1.6"])
    assert (v0.name, v0.worker, v0.rules) == ("vllm-v0", VllmV0Worker, None)
    # a vllm_v0 worker refuses the flags that vLLM did not have, with the engine arguments' error
    with pytest.raises(Exception, match="vllm_v0 .* needs enable_chunked_prefill false"):
        v0.make(0, EngineArgs(scheduler="vllm_v0"), FixedTiming(1, 1), 64, None)


@pytest.mark.parametrize("timing", ["poly", "fixed"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("seed", range(16))
def test_decode_fast_path_equals_plain_passes(seed, name, timing):
    sched = SCHEDULERS[name]
    rng = random.Random(seed)
    bs = rng.choice((2, 4, 8))
    tbs = rng.choice((bs, 2 * bs, 4, 6))
    rows = _session_trace(rng, tbs)
    need = max(-(-(r["input_length"] + r["output_length"]) // bs) for r in rows)
    longest = max(r["input_length"] + r["output_length"] for r in rows)
    eng = {"block_size": bs, "num_gpu_blocks": need + 1 + rng.randrange(0, 6), "max_num_seqs": rng.choice((1, 2, 4, 8)),
           "max_num_batched_tokens": max(longest, rng.choice((64, 256, 8192))),
           "preemption_mode": rng.choice(("lifo", "fifo")), "enable_prefix_caching": rng.random() < 0.9}
    if sched.rules is None:
        eng.update(V0_ARGS)
    workers = rng.choice((1, 1, 2, 3))
    kw = dict(num_workers=workers, trace_block_size=tbs, engine=EngineArgs.from_json(eng), seed=seed, record=True,
              rules=sched.rules or VERSIONS["1.6"], timing=FixedTiming(7.25, 1.5) if timing == "fixed" else None,
              arrival_speedup_ratio=rng.choice((1.0, 25.0)))  # crowded arrivals: preemptions
    fast, plain = _run(rows, True, **kw), _run(rows, False, **kw)
    assert _records(fast) == _records(plain)
    assert fast.timeline == plain.timeline and fast.itl_gaps == plain.itl_gaps
    kw["record"] = False  # without pass records: crossings inline, runs past other workers' pass ends
    free = _run(rows, True, **kw)
    assert _records(free) == _records(plain) and free.itl_gaps == plain.itl_gaps
    # a pass scheduler is chosen by the rules and the engine arguments, never by anything else
    assert scheduler_for(kw["engine"], kw["rules"]) is sched


@pytest.mark.parametrize("record", [True, False])
def test_a_decode_run_stops_for_a_release_from_a_pass_started_later_at_the_same_instant(record):
    # Two workers step at the same instants (same prompt shapes). Worker 0 decodes a long answer;
    # worker 1's request ends at 132.340805 and its session's next turn, routed to worker 0, is
    # released then. Worker 0's decode run started before worker 1's pass was in flight: it must
    # still stop there (with pass records it used to run on until 1125.9).
    from trace_pipe.pipeline.mooncake import row_from_json
    from trace_pipe.sim.replay import ReplayOptions, run_replay

    rows = [{"timestamp": 0, "session_id": "a", "input_length": 64, "output_length": 300, "hash_ids": [1, 2]},
            {"timestamp": 0, "session_id": "b", "input_length": 64, "output_length": 20, "hash_ids": [3, 4]},
            {"timestamp": 0, "session_id": "b", "delay": 0, "input_length": 96, "output_length": 2,
             "hash_ids": [3, 4, 5]}]
    parsed = [row_from_json(dict(d), f"t:{i}") for i, d in enumerate(rows)]
    res = run_replay(parsed, [f"t:{i}" for i in range(3)], "mooncake",
                     ReplayOptions(num_workers=2, trace_block_size=32, engine=EngineArgs.from_json({"block_size": 256}),
                                   record=record))
    assert [(r.worker, r.ready_ms, r.first_admit_ms, r.end_ms) for r in res.requests] == [
        (0, 0.0, 0.0, 1758.785968000008), (1, 0.0, 0.0, 132.34080500000002),
        (0, 132.34080500000002, 132.34080500000002, 161.796901)]
