"""Fidelity on real GPU data: fit the timing model on the lowest-rate vLLM run of the DistServe
alignment data, replay every vLLM run through one mock worker, and compare per request with the
measured TTFT and E2E (median and p90 absolute percentage error), beside the peers.md baseline
("fitted quadratic with no queueing": DistServe's own fitted vLLM coefficients for OPT-13B/A100,
prefill = 22.05 + 0.1405 n + 8.1e-6 n^2 ms as the TTFT, plus (output - 1) batch-of-one decode
steps for the E2E).

Engine args (a 2024 vLLM 0.2/0.3 serving OPT-13B on one A100-80GB):
- scheduler vllm_v0: that vLLM's step structure. A step is prefill-only (every prompt that can be
  admitted, whole, each emitting its first token at the step end) whenever the head of the
  waiting queue can be admitted, decode-only otherwise; KV exhaustion during decode preempts the
  latest arrival by recompute (sim/pass_vllm_v0.py).
- block_size 16: vLLM's default KV block then.
- num_gpu_blocks 3500 (56,000 tokens): 0.9 x 80 GB minus 26 GB of fp16 weights and the
  profiling activations leaves ~44-46 GB, at 40 layers x 2 x 5120 x 2 B = 0.8 MB per token
  (13.1 MB per block) that is 3,400-3,700 blocks. Cross-check from the measured runs: whenever a
  request waited for memory at 3-4 req/s, the KV of the running requests was 51-56k tokens.
- enable_chunked_prefill false, enable_prefix_caching false: not in that vLLM (and the
  synthesized hash ids never match).
- max_num_batched_tokens 2048: vLLM's default for a 2048-token model, prompt tokens per prefill
  step (decode steps have no token budget there).
- max_num_seqs 256: vLLM's default.

For comparison the table also gives the previous set-up: the Dynamo scheduler (prefill + decode
in one pass; budget 2048 + 256 so that 2048 are left for prompts) with the TTFT read at the end
of the pass's prefill part (`sim.fit.prefill_end_first_tokens`).

Run: .venv/bin/python bench/bench_fidelity.py [--markdown bench/FIDELITY.md]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

from trace_pipe.pipeline.agentic import plain_rows, sort_key
from trace_pipe.pipeline.io import atomic_output
from trace_pipe.pipeline.readers import read_trace
from trace_pipe.sim.config import EngineArgs
from trace_pipe.sim.fit import FittedTiming, fit_timing, prefill_end_first_tokens
from trace_pipe.sim.percentiles import percentile
from trace_pipe.sim.replay import ReplayOptions, run_replay

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "distserve_alignment"
RUNS = ROOT / "opt-13b-sharegpt"
ENGINE = EngineArgs(block_size=16, num_gpu_blocks=3500, max_num_seqs=256, max_num_batched_tokens=2048,
                    enable_chunked_prefill=False, enable_prefix_caching=False, scheduler="vllm_v0")
# the previous set-up, for comparison: Dynamo passes, TTFT read at the end of the prefill part
DYNAMO_ENGINE = EngineArgs(block_size=16, num_gpu_blocks=3500, max_num_seqs=256, max_num_batched_tokens=2048 + 256,
                           enable_chunked_prefill=False, enable_prefix_caching=False)


def pct(xs: list[float], p: float) -> float:
    return percentile(sorted(xs), p)


def baseline_model() -> tuple[tuple[float, ...], tuple[float, ...]]:
    prof = json.loads((ROOT / "profile_data" / "profiler-a100-80g.vllm.json").read_text())["facebook/opt-13b"]["1"]
    return tuple(prof["prefill"]), tuple(prof["decoding_smallbs"])


def replay_run(path: str, model: FittedTiming, engine: EngineArgs = ENGINE) -> list[tuple]:
    """(recorded request, sim TTFT, sim E2E, admissions) per request. Under the Dynamo scheduler
    the TTFT is read at the end of the prefill part of its first pass (vLLM 0.x emits it there)."""
    trace = read_trace([path])
    recorded = sorted(trace.requests, key=sort_key)  # plain_rows' order
    rows, bs = plain_rows(trace)
    opts = ReplayOptions(num_workers=1, router_mode="round_robin", trace_block_size=bs, engine=engine, timing=model,
                         record=True)
    res = run_replay(rows, [f"{path}: request {r.request_id}" for r in recorded], "mooncake", opts)
    firsts = ([s.first_token_ms for s in res.requests] if engine.scheduler == "vllm_v0"
              else prefill_end_first_tokens(res, model))
    out = []
    for rec, s, f in zip(recorded, res.requests, firsts):
        if s.status != "completed":
            raise SystemExit(f"{path}: request {rec.request_id} did not complete in the replay ({s.status})")
        out.append((rec, f - s.ready_ms, s.last_token_ms - s.ready_ms, s.admissions))
    return out


def ape(sim: float, rec: float) -> float:
    return abs(sim - rec) / rec


def evaluate(model: FittedTiming, paths: list[str], engine: EngineArgs = ENGINE,
             compare: EngineArgs | None = DYNAMO_ENGINE) -> list[dict]:
    (p0, p1, p2), (d0, d1, d2) = baseline_model()
    rows = []
    for path in paths:
        t = time.perf_counter()
        res = replay_run(path, model, engine)
        wall = time.perf_counter() - t
        ttft = [ape(a, r.ttft_ms) for r, a, _, _ in res]
        e2e = [ape(e, r.total_time_ms) for r, _, e, _ in res]
        b_ttft, b_e2e = [], []
        for r, *_ in res:
            n = r.input_length
            bt = p0 + p1 * n + p2 * n * n
            # batch of one: context grows from n to n + output - 1
            be = bt + sum(d0 + d1 * (n + i) + d2 for i in range(1, r.output_tokens))
            b_ttft.append(ape(bt, r.ttft_ms))
            b_e2e.append(ape(be, r.total_time_ms))
        rec_ttft = sorted(r.ttft_ms for r, *_ in res)
        row = {
            "run": os.path.basename(path), "requests": len(res),
            "rec_ttft_p50": percentile(rec_ttft, 0.5),
            "ttft_med": 100 * pct(ttft, 0.5), "ttft_p90": 100 * pct(ttft, 0.9),
            "e2e_med": 100 * pct(e2e, 0.5), "e2e_p90": 100 * pct(e2e, 0.9),
            "base_ttft_med": 100 * pct(b_ttft, 0.5), "base_e2e_med": 100 * pct(b_e2e, 0.5),
            "preempted": sum(a > 1 for *_, a in res), "wall_s": wall}
        if compare is not None:
            old = replay_run(path, model, compare)
            row["old_ttft_med"] = 100 * pct([ape(a, r.ttft_ms) for r, a, _, _ in old], 0.5)
            row["old_e2e_med"] = 100 * pct([ape(e, r.total_time_ms) for r, _, e, _ in old], 0.5)
        rows.append(row)
    return rows


def run_rate(name: str) -> float:
    return float(name.removesuffix(".exp").split("-")[-1])


def markdown(model: FittedTiming, rows: list[dict]) -> str:
    head = ("| run | req/s | requests | recorded TTFT p50 (ms) | TTFT median APE | TTFT p90 APE | E2E median APE "
            "| E2E p90 APE | baseline TTFT median APE | baseline E2E median APE | Dynamo-pass TTFT median APE "
            "| Dynamo-pass E2E median APE |")
    lines = [head, "|" + "|".join("---" for _ in range(12)) + "|"]
    for r in rows:
        fit_mark = " (fit)" if r["run"].endswith("-1.exp") else ""
        lines.append(f"| {r['run']}{fit_mark} | {run_rate(r['run']):g} | {r['requests']} | {r['rec_ttft_p50']:.0f} "
                     f"| {r['ttft_med']:.1f}% | {r['ttft_p90']:.1f}% | {r['e2e_med']:.1f}% | {r['e2e_p90']:.1f}% "
                     f"| {r['base_ttft_med']:.1f}% | {r['base_e2e_med']:.1f}% | {r['old_ttft_med']:.1f}% "
                     f"| {r['old_e2e_med']:.1f}% |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", help="also write the table (markdown) to this file")
    args = ap.parse_args()
    if not RUNS.is_dir():
        print(f"skip: {RUNS} not found", file=sys.stderr)
        return 0
    fit_runs = sorted(glob.glob(str(RUNS / "vllm-*-1.exp")))
    if len(fit_runs) != 1:
        raise SystemExit(f"expected one lowest-rate vLLM run (vllm-*-1.exp), found {fit_runs}")
    t = time.perf_counter()
    model = fit_timing(read_trace(fit_runs))
    fit_s = time.perf_counter() - t
    for line in model.describe():
        print(line)
    print(f"  (fit in {fit_s * 1000:.0f} ms)")
    paths = sorted(glob.glob(str(RUNS / "vllm-*.exp")), key=lambda p: (run_rate(os.path.basename(p)), p))
    rows = evaluate(model, paths)
    hdr = (f"{'run':22s} {'TTFT med':>9s} {'p90':>7s} {'E2E med':>8s} {'p90':>7s} {'base TTFT':>10s} {'base E2E':>9s} "
           f"{'old TTFT':>9s} {'old E2E':>8s} {'preempt':>7s} {'wall':>6s}")
    print(hdr)
    for r in rows:
        print(f"{r['run']:22s} {r['ttft_med']:8.1f}% {r['ttft_p90']:6.1f}% {r['e2e_med']:7.1f}% {r['e2e_p90']:6.1f}% "
              f"{r['base_ttft_med']:9.1f}% {r['base_e2e_med']:8.1f}% {r['old_ttft_med']:8.1f}% {r['old_e2e_med']:7.1f}% "
              f"{r['preempted']:7d} {r['wall_s']:5.2f}s")
    held = [r for r in rows if not r["run"].endswith("-1.exp")]
    print(f"held-out runs under 5%: TTFT {sum(r['ttft_med'] < 5 for r in held)}/{len(held)}, "
          f"E2E {sum(r['e2e_med'] < 5 for r in held)}/{len(held)}")
    if args.markdown:
        with atomic_output(args.markdown) as f:
            f.write((markdown(model, rows) + "\n").encode())
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
