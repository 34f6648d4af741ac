"""The vLLM 0.2/0.3 scheduler mode of the mock engine (`EngineArgs.scheduler = "vllm_v0"`):
prefill-only steps while the waiting head can be admitted, decode-only steps otherwise, FCFS
recompute preemption when no KV block is free at a running request's turn."""

from __future__ import annotations

import random
import statistics
from collections import deque
from pathlib import Path

import pytest

from trace_pipe.pipeline.plain_rows import plain_rows
from trace_pipe.pipeline.request_graph import sort_key
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.mooncake import Row
from trace_pipe.pipeline.readers import read_trace
from trace_pipe.sim.config import EngineArgs
from trace_pipe.sim.fit import FittedTiming, fit_timing
from trace_pipe.sim.replay import ReplayOptions, run_replay
from trace_pipe.sim.timing import PolynomialTiming, TimingModel, quantize_ms

# prefill 10 + T/8 ms, decode 5 ms flat: every duration below is exact in binary
FLAT = FittedTiming((10.0, 0.125, 0.0), (5.0, 0.0, 0.0))


def _engine(scheduler: str = "vllm_v0", **kw) -> EngineArgs:
    a = dict(block_size=4, num_gpu_blocks=100, max_num_seqs=8, max_num_batched_tokens=64,
             enable_chunked_prefill=False, enable_prefix_caching=False, scheduler=scheduler)
    a.update(kw)
    return EngineArgs(**a)


def _replay(rows: list[Row], eng: EngineArgs, timing=FLAT, record: bool = True):
    return run_replay(rows, [f"t:{i}" for i in range(len(rows))], "mooncake",
                      ReplayOptions(trace_block_size=4, engine=eng, timing=timing, record=record))


def _row(i: int, t: float, prompt: int, out: int) -> Row:
    return Row(prompt, out, tuple(range(100 * i, 100 * i + -(-prompt // 4))), request_id=f"r{i}", timestamp=t)


def _times(res) -> list[tuple]:
    return [(r.request_id, r.first_token_ms, r.second_token_ms, r.last_token_ms, r.admissions, r.status)
            for r in res.requests]


def _passes(res) -> list[tuple]:
    return [(p.start_ms, p.end_ms, p.prefill_tokens, p.decode_requests) for p in res.timeline.passes()]


def test_second_request_arriving_mid_decode_waits_for_the_step_then_prefills_alone():
    # r0: 8-token prompt, 4 tokens out, at 0; r1: 16-token prompt, 2 out, at 12 (during r0's decode step)
    rows = [_row(0, 0.0, 8, 4), _row(1, 12.0, 16, 2)]
    res = _replay(rows, _engine())
    # by hand: [0, 11] prefill r0 (10 + 8/8): r0 token 1 | [11, 16] decode: r0 token 2 (r1 arrived at 12,
    # waits for the step end) | [16, 28] prefill-only r1 (10 + 16/8): r1 token 1, r0 stalls |
    # [28, 33] decode both: r0 token 3, r1 token 2 (done) | [33, 38] decode: r0 token 4 (done)
    assert _passes(res) == [(0.0, 11.0, 8, 1), (11.0, 16.0, 0, 1), (16.0, 28.0, 16, 1), (28.0, 33.0, 0, 2),
                            (33.0, 38.0, 0, 1)]
    assert _times(res) == [("r0", 11.0, 16.0, 38.0, 1, "completed"), ("r1", 28.0, 33.0, 33.0, 1, "completed")]
    assert [(c.start_ms, c.end_ms, c.tokens) for r in res.requests for c in r.prefill_chunks] == [
        (0.0, 11.0, 8), (16.0, 28.0, 16)]
    # inter-token gaps: r0 5, 17 (stalled by r1's prefill), 5; r1 5
    assert res.itl_gaps == ((5.0, 3), (17.0, 1))
    # the Dynamo scheduler on the same input: prefill + decode in one pass, first token at the pass end
    dyn = _replay(rows, _engine("dynamo", enable_chunked_prefill=False))
    assert _passes(dyn) == [(0.0, 16.0, 8, 1), (16.0, 33.0, 16, 2), (33.0, 38.0, 0, 2), (38.0, 43.0, 0, 1)]
    assert _times(dyn) == [("r0", 16.0, 33.0, 43.0, 1, "completed"), ("r1", 33.0, 38.0, 38.0, 1, "completed")]


def test_prompts_waiting_together_share_one_prefill_step_within_the_budget():
    # three 16-token prompts at 0 with a 40-token budget: two fit the first step, the third the next
    rows = [_row(i, 0.0, 16, 2) for i in range(3)]
    res = _replay(rows, _engine(max_num_batched_tokens=40))
    # [0, 14] prefill r0+r1 (10 + 32/8) | [14, 26] prefill r2 (waiting prompts go first) |
    # [26, 31] decode all three: second (last) tokens
    assert _passes(res) == [(0.0, 14.0, 32, 2), (14.0, 26.0, 16, 1), (26.0, 31.0, 0, 3)]
    assert _times(res) == [(f"r{i}", f, 31.0, 31.0, 1, "completed") for i, f in enumerate((14.0, 14.0, 26.0))]
    # max_num_seqs caps the running set the same way
    res = _replay(rows, _engine(max_num_seqs=1))
    assert _passes(res) == [(0.0, 12.0, 16, 1), (12.0, 17.0, 0, 1), (17.0, 29.0, 16, 1), (29.0, 34.0, 0, 1),
                            (34.0, 46.0, 16, 1), (46.0, 51.0, 0, 1)]


def test_recompute_preemption_when_no_block_is_free():
    # 5 blocks of 4 tokens, watermark int(1% of 5) = 0. Both 8-token prompts (2 blocks each) are
    # prefilled together; the first decode step needs a 3rd block for each but 1 is free: r0 (earlier
    # arrival) takes it, then at r1's turn nothing is free and nothing later is running, so r1
    # preempts itself (vLLM 0.x) and goes back to the head of the queue keeping its one token.
    rows = [_row(0, 0.0, 8, 3), _row(1, 0.0, 8, 3)]
    res = _replay(rows, _engine(num_gpu_blocks=5))
    # [0, 12] prefill 16 tokens: both token 1 | [12, 17] decode r0: token 2 | r1 (9 tokens: 3 blocks)
    # cannot be admitted with 2 free | [17, 22] decode r0: token 3, done, 5 free | [22, 33.125]
    # re-prefill r1's 8 + 1 tokens (10 + 9/8): its token 2 | [33.125, 38.125] decode r1: token 3
    assert _passes(res) == [(0.0, 12.0, 16, 2), (12.0, 17.0, 0, 1), (17.0, 22.0, 0, 1), (22.0, 33.125, 9, 1),
                            (33.125, 38.125, 0, 1)]
    assert _times(res) == [("r0", 12.0, 17.0, 22.0, 1, "completed"), ("r1", 12.0, 33.125, 38.125, 2, "completed")]
    assert sorted(res.itl_gaps) == [(5.0, 3), (21.125, 1)]


def test_running_request_preempts_the_latest_arrival_even_without_needing_a_block():
    # vLLM 0.x checks "a block is free" at every running request's turn, not only when it needs one.
    # 6 blocks: r0 (8 + 4 out) and r1 (8 + 4 out) prefilled together take 4; the first decode step
    # gives each a 3rd block, leaving 0 free; at the next step r0's turn finds none free and
    # preempts r1 (the later arrival), which is re-admitted as soon as its 3 blocks fit.
    rows = [_row(0, 0.0, 8, 4), _row(1, 0.0, 8, 4)]
    res = _replay(rows, _engine(num_gpu_blocks=6))
    # [0,12] prefill both | [12,17] decode both (token 2; 0 free) | [17,22] r0's turn: preempt r1 (3 free),
    # decode r0 (token 3) | [22, 33.25] re-prefill r1: 8 + 2 tokens (10 + 10/8): its token 3; 0 free |
    # [33.25, 38.25] r0's turn: preempt r1 again, decode r0: token 4, done (3 + 3 free) |
    # [38.25, 49.625] re-prefill r1: 8 + 3 tokens: its token 4, done
    assert _passes(res) == [(0.0, 12.0, 16, 2), (12.0, 17.0, 0, 2), (17.0, 22.0, 0, 1), (22.0, 33.25, 10, 1),
                            (33.25, 38.25, 0, 1), (38.25, 49.625, 11, 1)]
    assert _times(res) == [("r0", 12.0, 17.0, 38.25, 1, "completed"), ("r1", 12.0, 17.0, 49.625, 3, "completed")]


def test_v0_needs_no_chunking_and_no_prefix_caching():
    with pytest.raises(TraceError, match="vllm_v0 .* needs enable_chunked_prefill false"):
        EngineArgs.from_json({"scheduler": "vllm_v0"})
    with pytest.raises(TraceError, match="`scheduler` must be one of dynamo, vllm_v0"):
        EngineArgs.from_json({"scheduler": "sglang"})
    a = EngineArgs.from_json({"scheduler": "vllm_v0", "enable_chunked_prefill": False,
                              "enable_prefix_caching": False})
    assert a.scheduler == "vllm_v0" and EngineArgs().scheduler == "dynamo"


# -- an independent, step-by-step vLLM 0.x scheduler (the engine's fast paths must agree) ---------

def _naive_v0(reqs: list[tuple[float, int, int]], G: int, bs: int, mnbt: int, max_seqs: int,
              model: TimingModel, max_pad: int = 256) -> list[tuple]:
    """reqs: (arrival, prompt, out), arrival-sorted. Per request: (first, second, last token, admissions)."""
    wm = int(0.01 * G)
    arrivals = deque(range(len(reqs)))
    waiting: deque[int] = deque()
    running: list[int] = []
    toks: list[list[float]] = [[] for _ in reqs]
    blocks = [0] * len(reqs)
    admits = [0] * len(reqs)
    free = G
    t = 0.0
    while arrivals or waiting or running:
        while arrivals and reqs[arrivals[0]][0] <= t:
            waiting.append(arrivals.popleft())
        if not waiting and not running:
            t = reqs[arrivals[0]][0]
            continue
        admitted, tokens = [], 0
        while waiting:
            i = waiting[0]
            kn = reqs[i][1] + len(toks[i])
            nb = -(-kn // bs)
            assert kn <= mnbt and G - nb >= wm
            padded = (len(admitted) + 1) * max([kn] + [reqs[j][1] + len(toks[j]) for j in admitted])
            if (free - nb < wm or padded > mnbt or padded - tokens - kn > max_pad
                    or len(running) + len(admitted) + 1 > max_seqs):
                break
            waiting.popleft()
            free -= nb
            blocks[i] = nb
            admits[i] += 1
            admitted.append(i)
            tokens += kn
        if admitted:
            t = t + quantize_ms(model.prefill_ms(tokens, len(admitted), None), 1.0)
            for i in admitted:
                toks[i].append(t)
                if len(toks[i]) == reqs[i][2]:
                    free += blocks[i]
                else:
                    running.append(i)
            continue
        queue = deque(sorted(running, key=lambda i: (reqs[i][0], i)))
        kept = []
        while queue:
            i = queue.popleft()
            itself = False
            while free < 1:
                if queue:  # the latest arrival still unvisited
                    v = queue.pop()
                else:
                    v = i
                    itself = True
                free += blocks[v]
                waiting.appendleft(v)
                if itself:
                    break
            if itself:
                break
            if reqs[i][1] + len(toks[i]) > blocks[i] * bs:
                blocks[i] += 1
                free -= 1
            kept.append(i)
        running = kept
        if not running:
            continue
        ctx = sum(reqs[i][1] + len(toks[i]) for i in running)
        t = t + quantize_ms(model.decode_ms(G - free, G, ctx, len(running), None), 1.0)
        for i in running:
            toks[i].append(t)
            if len(toks[i]) == reqs[i][2]:
                free += blocks[i]
        running = [i for i in running if len(toks[i]) < reqs[i][2]]
    return [(x[0], x[1] if len(x) > 1 else None, x[-1], admits[i]) for i, x in enumerate(toks)]


def _workload(seed: int):
    rng = random.Random(seed)
    bs = rng.choice((2, 4, 8))
    G = rng.choice((12, 20, 40, 150))
    mnbt = rng.choice((32, 64))
    max_seqs = rng.choice((2, 4, 64))
    max_pad = rng.choice((0, 6, 256))
    if seed % 2:
        # decode time from the KV blocks in use: block crossings inside decode runs change it
        model = PolynomialTiming("physical", block_size=bs)
    else:
        model = FittedTiming((rng.uniform(5, 20), rng.uniform(0.01, 0.2), rng.choice((0.0, 1e-4))),
                             (rng.uniform(2, 8), 0.0, rng.choice((0.0, 0.003))))
    reqs, t = [], 0.0
    for k in range(rng.randrange(3, 25)):
        if k:
            t = float(int(t + rng.choice((0.0, rng.uniform(0, 40)))))
        prompt = rng.randrange(1, 25)
        out = min(rng.randrange(1, 12), mnbt - prompt + 1)  # a recompute re-prefills prompt + output
        if out > 1 and -(-(prompt + out - 1) // bs) + max(1, int(0.01 * G)) > G:
            out = 1  # could never run alone (replay refuses it)
        reqs.append((t, prompt, out))
    return bs, G, mnbt, max_seqs, max_pad, model, reqs


@pytest.mark.parametrize("seed", range(40))
def test_engine_matches_a_naive_step_by_step_vllm_v0(seed):
    bs, G, mnbt, max_seqs, max_pad, model, reqs = _workload(seed)
    rows = [Row(p, o, tuple(range(100 * i, 100 * i + -(-p // 4))), request_id=f"r{i}", timestamp=a)
            for i, (a, p, o) in enumerate(reqs)]
    want = _naive_v0(reqs, G, bs, mnbt, max_seqs, model, max_pad)
    eng = _engine(block_size=bs, num_gpu_blocks=G, max_num_batched_tokens=mnbt, max_num_seqs=max_seqs,
                  max_paddings=max_pad)
    for record in (True, False):  # pass records off: block crossings handled inside decode runs
        res = _replay(rows, eng, model, record=record)
        got = [(r.first_token_ms, r.second_token_ms, r.last_token_ms, r.admissions) for r in res.requests]
        assert got == want, (seed, record)
        assert all(r.status == "completed" for r in res.requests)


def test_the_naive_comparison_covers_preemption_and_batched_prefills():
    preempting = batched = 0
    for seed in range(40):
        bs, G, mnbt, max_seqs, max_pad, model, reqs = _workload(seed)
        out = _naive_v0(reqs, G, bs, mnbt, max_seqs, model, max_pad)
        preempting += any(a > 1 for *_, a in out)
        batched += len({f for f, *_ in out}) < len(out)
    assert preempting >= 5 and batched >= 10, (preempting, batched)


def test_prompts_padded_past_max_paddings_take_separate_steps():
    # prompts of 4 and 20 tokens arrive together: batched they pad to 2 x 20 = 40 tokens, 16 of
    # them padding. With max_paddings 256 both prefill in one step (10 + 24/8 = 13 ms); with 8 the
    # second waits for its own step (10 + 4/8 = 10.5 ms, then 10 + 20/8 = 12.5 ms more)
    rows = [_row(0, 0.0, 4, 1), _row(1, 0.0, 20, 1)]
    assert [r[1] for r in _times(_replay(rows, _engine()))] == [13.0, 13.0]
    assert [r[1] for r in _times(_replay(rows, _engine(max_paddings=8)))] == [10.5, 23.0]
    # ... and the padded size counts against max_num_batched_tokens (2 x 20 > 32)
    assert [r[1] for r in _times(_replay(rows, _engine(max_num_batched_tokens=32)))] == [10.5, 23.0]
    with pytest.raises(TraceError, match="`max_paddings` must be an integer >= 0"):
        EngineArgs.from_json({"max_paddings": -1})


def test_a_request_that_could_never_run_alone_is_refused():
    # 4 blocks of 4 tokens: 8 + 8 - 1 tokens need all 4, and vLLM 0.x preempts a lone request
    # that leaves no block free: it would be recomputed forever
    with pytest.raises(TraceError, match="t:0: request 'r0' needs 4 KV blocks .* vllm_v0"):
        _replay([_row(0, 0.0, 8, 8)], _engine(num_gpu_blocks=4))
    assert _times(_replay([_row(0, 0.0, 8, 5)], _engine(num_gpu_blocks=4))) == [
        ("r0", 11.0, 16.0, 31.0, 1, "completed")]


# -- the DistServe vLLM runs (bench/bench_fidelity.py) -------------------------------------------

RUNS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "distserve_alignment" / "opt-13b-sharegpt"


@pytest.mark.skipif(not RUNS.is_dir(), reason=f"DistServe alignment fixture not found at {RUNS}")
def test_distserve_1_5_rps_run_replayed_with_the_vllm_v0_scheduler():
    """Measured (bench/bench_fidelity.py): TTFT median APE 8.8%, E2E 3.2% on vllm-150-1.5, fitted
    on vllm-100-1 (the Dynamo scheduler with the prefill-end read-out: 9.5% and 2.9%)."""
    fitted = fit_timing(read_trace([str(RUNS / "vllm-100-1.exp")]))
    trace = read_trace([str(RUNS / "vllm-150-1.5.exp")])
    recorded = sorted(trace.requests, key=sort_key)
    rows, bs = plain_rows(trace)
    eng = EngineArgs(block_size=16, num_gpu_blocks=3500, max_num_seqs=256, max_num_batched_tokens=2048,
                     enable_chunked_prefill=False, enable_prefix_caching=False, scheduler="vllm_v0")
    res = run_replay(rows, [r.request_id for r in recorded], "mooncake",
                     ReplayOptions(trace_block_size=bs, engine=eng, timing=fitted, record=True))
    assert all(s.status == "completed" and s.admissions == 1 for s in res.requests)
    # each first token comes at the end of its own prefill-only step (no decode in that step)
    assert all(s.first_token_ms == s.prefill_chunks[0].end_ms for s in res.requests)
    steps = {(p.start_ms, p.end_ms): p for p in res.timeline.passes()}
    assert all(steps[(c.start_ms, c.end_ms)].batch_size == steps[(c.start_ms, c.end_ms)].decode_requests
               for s in res.requests for c in s.prefill_chunks)
    ttft = [abs(s.first_token_ms - s.ready_ms - r.ttft_ms) / r.ttft_ms for r, s in zip(recorded, res.requests)]
    e2e = [abs(s.last_token_ms - s.ready_ms - r.total_time_ms) / r.total_time_ms
           for r, s in zip(recorded, res.requests)]
    assert 0.07 < statistics.median(ttft) < 0.085  # 7.8% (bench/FIDELITY.md)
    assert 0.025 < statistics.median(e2e) < 0.04
