"""Randomized equivalence of the replay's internal shortcuts against their plain versions: lazily
released block runs (sim.kvcache.LAZY), kv_router pruning (sim.router.PRUNE), boundary crossings
inside decode runs (sim.engine.INLINE), decode runs past other workers' pass ends
(sim.replay.AHEAD), the closed-form jump over identical passes, hashed prompt identities against
exact token-prefix equality, and shared row prefixes in the Mooncake reader."""

from __future__ import annotations

import math
import random

import pytest

from trace_pipe.pipeline.mooncake import read_rows, row_from_json
from trace_pipe.sim.config import EngineArgs
from trace_pipe.sim.engine import identical_passes
from trace_pipe.sim.replay import ReplayOptions, run_replay
from trace_pipe.sim.shortcuts import shortcuts
from trace_pipe.sim.workload import block_keys, chain_of


def _session_trace(rng: random.Random, tbs: int) -> list[dict]:
    """Sessions whose turns extend the previous prompt (as agentic traces do), some sharing a
    common system prefix, with identical prompts, tiny prompts and long outputs mixed in."""
    rows = []
    system = [rng.randrange(1 << 20) for _ in range(rng.randrange(0, 4))]
    next_id = 1 << 21
    for s in range(rng.randrange(1, 6)):
        ids = (system[:] if rng.random() < 0.6 else []) + [next_id + i for i in range(rng.randrange(1, 5))]
        next_id += 100
        t = rng.uniform(0, 50)
        for turn in range(rng.randrange(1, 7)):
            if turn:
                if rng.random() < 0.8:
                    ids = ids[:len(ids) - rng.randrange(0, 2)] if len(ids) > 1 else ids
                    ids = ids + [next_id + i for i in range(rng.randrange(0, 4))]
                    next_id += 10
                else:
                    ids = ids[:rng.randrange(1, len(ids) + 1)]  # a shorter prompt (full-prefix hits)
            L = max(1, len(ids) * tbs - rng.randrange(0, tbs))
            row = {"timestamp": t, "session_id": f"s{s}", "input_length": L,
                   "output_length": rng.choice((1, 2, 3, 5, 9, 17)), "hash_ids": list(ids)}
            if turn:
                row["delay"] = rng.choice((0.0, 0.5, 3.0, 20.0))
            rows.append(row)
            t += rng.uniform(0, 30)
    if rng.random() < 0.5 and rows:  # an identical copy arriving with its original
        rows.append(dict(rows[rng.randrange(len(rows))], session_id="copy", delay=None))
    for r in rows:
        if r.get("delay") is None:
            r.pop("delay", None)
    return rows


def _records(res) -> list:
    return [(r.request_id, r.worker, r.first_admit_ms, r.first_token_ms, r.second_token_ms, r.last_token_ms,
             r.end_ms, r.output_tokens, r.cached_tokens, r.first_cached_tokens, r.admissions, r.status)
            for r in res.requests]


def _run(rows: list[dict], lazy: bool, **kw):
    """Replay with every shortcut on (`lazy`) or off: lazy block runs, kv_router pruning,
    block-boundary crossings inside decode runs and decode runs past other workers' pass ends."""
    parsed = [row_from_json(dict(d), f"t:{i}") for i, d in enumerate(rows)]
    with shortcuts(lazy):
        return run_replay(parsed, [f"t:{i}" for i in range(len(rows))], "mooncake", ReplayOptions(**kw))


@pytest.mark.parametrize("seed", range(150))
def test_lazy_runs_match_per_block_release(seed):
    rng = random.Random(seed)
    bs = rng.choice((2, 4, 8))
    tbs = rng.choice((bs, 2 * bs, 4, 6))
    rows = _session_trace(rng, tbs)
    need = max(-(-(r["input_length"] + r["output_length"]) // bs) for r in rows)
    args = EngineArgs.from_json({
        "block_size": bs, "num_gpu_blocks": need + rng.randrange(0, 40),
        "max_num_seqs": rng.choice((1, 2, 4, 8)), "max_num_batched_tokens": rng.choice((64, 256, 8192)),
        "preemption_mode": rng.choice(("lifo", "fifo")),
        "enable_prefix_caching": rng.random() < 0.9})
    workers = rng.choice((1, 1, 2, 3, 4))
    kw = dict(num_workers=workers, router_mode=rng.choice(("round_robin", "kv_router")) if workers > 1 else "round_robin",
              trace_block_size=tbs, engine=args, seed=seed, record=True)
    a, b = _run(rows, True, **kw), _run(rows, False, **kw)
    assert _records(a) == _records(b)
    assert a.timeline == b.timeline and a.itl_gaps == b.itl_gaps
    kw["record"] = False  # runs without pass records take boundary crossings inline
    c = _run(rows, True, **kw)
    assert _records(c) == _records(b) and c.itl_gaps == b.itl_gaps


def test_lazy_runs_are_taken_on_agentic_chains():
    # a 3-turn chain: the later turns take the previous turn's blocks straight from its run
    rows = [{"timestamp": 0, "session_id": "s", "input_length": 16, "output_length": 2, "hash_ids": [1, 2, 3, 4]},
            {"timestamp": 1, "session_id": "s", "delay": 1, "input_length": 24, "output_length": 2,
             "hash_ids": [1, 2, 3, 4, 5, 6]},
            {"timestamp": 2, "session_id": "s", "delay": 1, "input_length": 28, "output_length": 2,
             "hash_ids": [1, 2, 3, 4, 5, 6, 7]}]
    kw = dict(trace_block_size=4, engine=EngineArgs.from_json({"block_size": 4}))
    res = _run(rows, True, **kw)
    assert [r.cached_tokens for r in res.requests] == [0, 16, 24]
    assert _records(res) == _records(_run(rows, False, **kw))


def test_hashed_identities_equal_exactly_when_prefixes_are_equal():
    rng = random.Random(7)
    big = (1 << 61) - 1
    alphabet = [0, 1, 2, 3, big + 1, big + 2, 1 << 63, (1 << 64) - 1, 1 + (1 << 32)]
    seqs = [tuple(rng.choice(alphabet) for _ in range(rng.randrange(1, 7))) for _ in range(400)]
    for bs, tbs in ((4, 4), (2, 4), (2, 8), (4, 6), (3, 2)):
        seen: dict[int, tuple] = {}
        for s in seqs:
            L = len(s) * tbs
            keys = block_keys(chain_of(s, len(s)), 0, L // bs, bs, tbs)
            for i, k in enumerate(keys):
                tokens = tuple(h for h in s for _ in range(tbs))[:(i + 1) * bs]
                assert seen.setdefault(k, tokens) == tokens  # one identity, one token prefix
            for lo in range(len(keys) + 1):  # a prompt's tail is built from an offset
                assert block_keys(chain_of(s, len(s)), lo, len(keys), bs, tbs) == keys[lo:]
    # ids congruent modulo 2**61 - 1 (where CPython's int hash wraps) stay distinct
    assert chain_of((1,), 1) != chain_of((1 + big,), 1)
    assert chain_of((1,), 1) != chain_of((1 + (1 << 32),), 1)


def test_shared_row_prefixes_keep_values_and_checks(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"session_id":"a","input_length":4,"output_length":1,"hash_ids":[5,6,7]}\n'
                 '{"session_id":"a","input_length":4,"output_length":1,"hash_ids":[5,6,8,9]}\n'
                 '{"session_id":"b","input_length":4,"output_length":1,"hash_ids":[5,6]}\n'
                 '{"session_id":"a","input_length":4,"output_length":1,"hash_ids":[5,6,8,9]}\n'
                 '{"input_length":4,"output_length":1,"hash_ids":[18446744073709551615]}\n')
    rows = read_rows([str(p)]).rows
    assert [r.hash_ids for r in rows] == [(5, 6, 7), (5, 6, 8, 9), (5, 6), (5, 6, 8, 9), ((1 << 64) - 1,)]
    assert rows[1].hash_ids[0] is rows[0].hash_ids[0] and rows[3].hash_ids is rows[1].hash_ids
    for bad in ('[5,6,-1]', '[5,6,true]', '[5,6.0]'):
        q = tmp_path / "b.jsonl"
        q.write_text('{"session_id":"a","input_length":4,"output_length":1,"hash_ids":[5,6,7]}\n'
                     f'{{"session_id":"a","input_length":4,"output_length":1,"hash_ids":{bad}}}\n')
        with pytest.raises(Exception, match="hash_ids` must be a list of non-negative integers"):
            read_rows([str(q)])


def _passes_by_addition(now, dms, horizon, left):
    gaps: dict[float, int] = {}
    n = 0
    while True:
        end = now + dms
        gaps[end - now] = gaps.get(end - now, 0) + 1
        n += 1
        now = end
        if n >= left or now >= horizon:
            return n, now, gaps


def test_identical_passes_jump_equals_repeated_additions():
    rng = random.Random(3)
    durations = [5.743296, 5.749889, 34.01, 0.057499, 22.259900000000002, 6.762413, 2.0 ** -20 * 3, 1.5, 0.75, 2.5]
    for _ in range(1200):
        now = rng.choice((1.0, 2.0 ** rng.randrange(0, 56), rng.uniform(1, 10 ** rng.randrange(1, 17))))
        now = float(now) - rng.choice((0.0, 0.0, math.ulp(now)))
        dms = rng.choice(durations) * rng.choice((1, 1, 1e-3, 7))
        horizon = rng.choice((math.inf, now, now + dms * rng.uniform(0, 500), now + rng.uniform(0, 1e6)))
        left = rng.choice((1, 2, 17, 400, 1 << 62))
        want_n, want_end, want_gaps = _passes_by_addition(now, dms, horizon, min(left, 20000))
        if want_n >= 20000:
            continue
        # the engine's loop: jumps while it can, single additions otherwise
        n, t, gaps = 0, now, {}
        while True:
            j, g, end = identical_passes(t, dms, horizon, left - n) if t >= 1.0 else (0, 0.0, t)
            if j:
                gaps[g] = gaps.get(g, 0) + j
                n += j
                t = end
            else:
                end = t + dms
                gaps[end - t] = gaps.get(end - t, 0) + 1
                n += 1
                t = end
            if n >= left or t >= horizon:
                break
        assert (n, t, gaps) == (want_n, want_end, want_gaps), (now, dms, horizon, left)
