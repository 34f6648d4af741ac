"""Fidelity on real GPU data: every run of the DistServe alignment data (vLLM aggregated, DistServe
disaggregated) replayed with the timing fitted ONLY on the lowest-rate run of its system, compared
with the measured runs at the level of distributions (signed error of the simulated p50 and p90
TTFT and E2E against the measured ones, as DistServe's and Vidur's papers report fidelity), beside
the baseline: what today's main replays for the same run.

Systems and layouts (from the run names; the files carry no metadata):
- `vllm-N-R`: vLLM 0.2/0.3 on one A100-80GB, aggregated: one mock worker with the `vllm_v0`
  scheduler (prefill-only steps while prompts can be admitted, else decode-only steps; FCFS
  recompute preemption; sim/pass_vllm_v0.py) and the engine args below.
- `distserve-cXYdZW-N-R`: DistServe, disaggregated: one prefill instance with tensor parallelism X
  and pipeline parallelism Y, one decode instance with TP Z and PP W (DistServe's notation): one
  prefill and one decode worker (`sim/disagg.py`, Dynamo's disaggregated replay).
- `distserve-N-R`: DistServe with the layout not named; taken as c21d11, as its lowest-rate run
  says: the prefill fit's per-token cost (0.074 ms) is DistServe's profiled TP2 prefill (0.069
  ms; TP1 is 0.102) and the decode intercept (21.7 ms) its TP1 decode (19.9 ms; TP2 is 13.3),
  profile_data/profiler-a100-80g.distserve.json.

Engine args from the hardware (A100-80GB: 80 GiB of HBM; fp16 OPT-13B: 26 GB of weights; KV 40
layers x 2 x 5120 x 2 B = 0.8 MB per token, 13.1 MB per 16-token block; vLLM and DistServe take
0.9 of the memory): KV blocks of an instance on g GPUs = (g x 0.9 x 80 GiB - 26 GB) / 13.1 MB:
3,914 on one GPU, 9,812 on two (vLLM keeps its 3,500, set before these runs were seen). The
memory is GiB: read as 80e9 bytes it gave 3,509 blocks, at the edge of what a DistServe decode
instance holds at 6 req/s (c21d11-300-6 replayed with a decode step a + b*batch fitted on the run
itself: E2E p50 +11.5% with 3,509 blocks, -0.3% with 3,650 or more; with `--own-decode`'s fit
+3.6% / -3.0%). block_size 16, no chunked prefill, no
prefix caching (neither engine had them, and the synthesized hash ids never match),
max_num_batched_tokens 2048 (vLLM's default for a 2048-token model; the prompts of one prefill
step), max_num_seqs 256.
Disaggregated specifics: the first token comes from the prefill instance (DistServe streams it
there), so the simulated TTFT is the prefill worker's completion (`source_held`), and the prefill
pool runs no decode step for its one-token copy (decode_speedup_ratio 1e6); the KV moves at 300 GB/s
(NVLink 3, one direction) x 0.8 MB per prompt token; the decode side emits the other tokens.
The fit (sim/fit.py `fit_timing`) takes `disaggregated=True` for DistServe runs: no decode step
to wait for before a prefill, no prefill stalls inside decoding.

Saturation: a run is saturated when its measured p90 TTFT or p90 TPOT is more than 3x that of its
system's lowest-rate run (queueing, not service, sets its latency); the 5% target is for the
runs below that.

Baseline ("today's main", 7117eee): vLLM runs as here; DistServe runs through what main could
replay, one aggregated `vllm_v0` worker on one GPU with the timing fitted on the lowest-rate run
(aggregated fit).

`--decode-profile`: DistServe runs take the decode step's growth per request and per context token
from DistServe's own kernel profile of the decode instance (profile_data/profiler-a100-80g.
distserve.json, OPT-13B at the instance's TP, `decoding_smallbs`, divided by its PP as DistServe's
simulator does) and fit only the intercept on the lowest-rate run (sim/fit.py `decode_slopes`).

`--own-decode` (a diagnostic, not a prediction): each run below saturation is also replayed with its decode step
fitted on that run itself (prefill and latency still from the lowest-rate run), which separates
the error of extrapolating the decode step from the lowest rate from the error of the replay's
own dynamics (batching, KV capacity, handoff) under the right step.

Run: .venv/bin/python bench/bench_fidelity.py [--markdown bench/FIDELITY_TABLE.md] [--own-decode]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from trace_pipe.pipeline.io import atomic_output
from trace_pipe.pipeline.plain_rows import plain_rows
from trace_pipe.pipeline.request_graph import sort_key
from trace_pipe.pipeline.readers import read_trace
from trace_pipe.sim.config import Disaggregation, EngineArgs
from trace_pipe.sim.fit import FittedTiming, engine_latency_ms, fit_timing
from trace_pipe.sim.percentiles import percentiles
from trace_pipe.sim.replay import ReplayOptions, run_replay
from trace_pipe.sim.versions import VERSIONS

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "distserve_alignment"
RUNS = ROOT / "opt-13b-sharegpt"
PROFILE = ROOT / "profile_data" / "profiler-a100-80g.distserve.json"
ENGINE = EngineArgs(block_size=16, num_gpu_blocks=3500, max_num_seqs=256, max_num_batched_tokens=2048,
                    enable_chunked_prefill=False, enable_prefix_caching=False, scheduler="vllm_v0")
GPU_BYTES, WEIGHT_BYTES, BYTES_PER_TOKEN = 0.9 * 80 * 2**30, 26e9, 40 * 2 * 5120 * 2
NVLINK_GB_S = 300.0
SATURATION = 3.0
PCTS = (0.5, 0.9)
_NAME = re.compile(r"(?P<system>vllm|distserve(?:-c(?P<ptp>\d)(?P<ppp>\d)d(?P<dtp>\d)(?P<dpp>\d))?)"
                   r"-(?P<n>\d+)-(?P<rate>[\d.]+)\.exp")


@dataclass(frozen=True, slots=True)
class Layout:
    system: str  # the run name's system part: vllm, distserve, distserve-c21d11, ...
    rate: float  # offered requests per second
    prefill: tuple[int, int] | None  # (TP, PP) of the prefill instance; None: aggregated
    decode: tuple[int, int] | None
    named: bool  # the layout is in the run name

    @property
    def disaggregated(self) -> bool:
        return self.prefill is not None

    def describe(self) -> str:
        if not self.disaggregated:
            return "aggregated, 1 GPU"
        (a, b), (c, d) = self.prefill, self.decode
        return f"prefill TP{a} PP{b} + decode TP{c} PP{d}" + ("" if self.named else " (inferred)")


def layout(path: str) -> Layout:
    m = _NAME.fullmatch(os.path.basename(path))
    if m is None:
        raise SystemExit(f"{path}: not a DistServe alignment run name (system-N-rate.exp)")
    g = m.groupdict()
    rate = float(g["rate"])
    if g["system"] == "vllm":
        return Layout("vllm", rate, None, None, True)
    if g["ptp"] is None:  # inferred from the fit against DistServe's profile (module docstring)
        return Layout(g["system"], rate, (2, 1), (1, 1), False)
    return Layout(g["system"], rate, (int(g["ptp"]), int(g["ppp"])), (int(g["dtp"]), int(g["dpp"])), True)


def kv_blocks(gpus: int) -> int:
    return int((gpus * GPU_BYTES - WEIGHT_BYTES) / (16 * BYTES_PER_TOKEN))


def profile_slopes(lay: Layout) -> tuple[float, float]:
    """(ms per decoding request, ms per context token) of the decode instance in DistServe's profile."""
    tp, pp = lay.decode
    _, per_token, per_request = json.loads(PROFILE.read_text())["facebook/opt-13b"][str(tp)]["decoding_smallbs"]
    return per_request / pp, per_token / pp


def disaggregation(lay: Layout) -> Disaggregation:
    base = dict(block_size=16, max_num_seqs=256, max_num_batched_tokens=2048, enable_chunked_prefill=False,
                enable_prefix_caching=False)
    (a, b), (c, d) = lay.prefill, lay.decode
    pre = EngineArgs(num_gpu_blocks=kv_blocks(a * b), worker_type="prefill", decode_speedup_ratio=1e6,
                     kv_transfer_bandwidth=NVLINK_GB_S, kv_transfer_bytes_per_token=BYTES_PER_TOKEN, **base)
    dec = EngineArgs(num_gpu_blocks=kv_blocks(c * d), worker_type="decode", **base)
    return Disaggregation(1, 1, pre, dec)


def replay(path: str, model: FittedTiming, disagg: Disaggregation | None) -> tuple[list, list[float], list[float]]:
    """(recorded requests, simulated TTFT, simulated E2E), in the replay's row order."""
    trace = read_trace([path])
    recorded = sorted(trace.requests, key=sort_key)  # plain_rows' order
    rows, bs = plain_rows(trace)
    # the disaggregated handoff as 1.6.1 runs it (ReplayOptions' default rules are 1.4.2's, whose
    # prefill copy decodes the whole output before the handoff)
    opts = ReplayOptions(num_workers=1, router_mode="round_robin", trace_block_size=bs, engine=ENGINE, timing=model,
                         disagg=disagg, **({"rules": VERSIONS["1.6"]} if disagg is not None else {}))
    res = run_replay(rows, [f"{path}: request {r.request_id}" for r in recorded], "mooncake", opts)
    ttft, e2e = [], []
    lat = engine_latency_ms(model)  # reaching the engine: every arrival that much later
    for rec, s in zip(recorded, res.requests):
        if s.status != "completed":
            raise SystemExit(f"{path}: request {rec.request_id} did not complete in the replay ({s.status})")
        # disaggregated: the first token leaves the prefill instance (DistServe streams it there)
        first = s.handoff.source_held_ms if disagg is not None else s.first_token_ms
        ttft.append(first - s.ready_ms + lat)
        e2e.append(s.last_token_ms - s.ready_ms + lat)
    return recorded, ttft, e2e


def signed(sim: float, rec: float) -> float:
    e = 100.0 * (sim - rec) / rec
    return 0.0 if abs(e) < 0.05 else e  # no "-0.0%" in the table


def tpots(recorded) -> list[float]:
    return [(r.total_time_ms - r.ttft_ms) / (r.output_tokens - 1) for r in recorded if r.output_tokens > 1]


def run_key(path: str) -> tuple:
    lay = layout(path)
    return (lay.system != "vllm", lay.system, lay.rate, os.path.basename(path))


def evaluate(paths: list[str], own_decode: bool = False,
             decode_profile: bool = False) -> tuple[list[dict], dict[str, list[str]]]:
    """One row per run; the fit per system (its lowest-rate run; the first of equal rates).
    `own_decode`: also the E2E errors with the run's own decode fit (row key `e2e_own`);
    `decode_profile`: DistServe's decode slopes from its profile (module docstring)."""
    by_system: dict[str, list[str]] = {}
    for p in sorted(paths, key=run_key):
        by_system.setdefault(layout(p).system, []).append(p)
    rows = []
    fits = {}
    for system, runs in by_system.items():
        fit_path = runs[0]
        lay0 = layout(fit_path)
        fit_trace = read_trace([fit_path])
        slopes = profile_slopes(lay0) if decode_profile and lay0.disaggregated else None
        model = fit_timing(fit_trace, disaggregated=lay0.disaggregated, split_latency=True, decode_slopes=slopes)
        base_model = fit_timing(fit_trace)
        fits[system] = [os.path.basename(fit_path), *model.describe(),
                        f"  engine latency {engine_latency_ms(model):.2f} ms (taken out of the prefill intercept)"]
        ref = percentiles([r.ttft_ms for r in fit_trace.requests], (0.9,))[0], percentiles(tpots(fit_trace.requests), (0.9,))[0]
        for path in runs:
            lay = layout(path)
            t = time.perf_counter()
            try:
                recorded, ttft, e2e = replay(path, model, disaggregation(lay) if lay.disaggregated else None)
                error = None
            except Exception as e:  # a dead end of Dynamo's disaggregated replay, reported in the row
                recorded, ttft, e2e, error = read_trace([path]).requests, None, None, str(e)
            wall = time.perf_counter() - t
            _, b_ttft, b_e2e = replay(path, base_model, None)
            rec_ttft = percentiles([r.ttft_ms for r in recorded], PCTS)
            rec_e2e = percentiles([r.total_time_ms for r in recorded], PCTS)
            rec_tpot90 = percentiles(tpots(recorded), (0.9,))[0]
            saturated = rec_ttft[1] > SATURATION * ref[0] or rec_tpot90 > SATURATION * ref[1]
            # a saturated run's decode windows hold its queueing: its own fit is no step time
            own = None
            if own_decode and not saturated:
                step = fit_timing(read_trace([path]), disaggregated=lay.disaggregated, split_latency=True).decode
                try:
                    _, _, o_e2e = replay(path, dataclasses.replace(model, decode=step),
                                         disaggregation(lay) if lay.disaggregated else None)
                    own = [signed(s, r) for s, r in zip(percentiles(o_e2e, PCTS),
                                                        percentiles([r.total_time_ms for r in recorded], PCTS))]
                except Exception:  # a dead end, as above
                    own = None
            row = {"run": os.path.basename(path), "system": system, "layout": lay.describe(), "rate": lay.rate,
                   "requests": len(recorded), "fit": path == fit_path,
                   "saturated": saturated,
                   "error": error, "wall_s": wall, "e2e_own": own}
            for name, rec, sim, base in (("ttft", rec_ttft, ttft, b_ttft), ("e2e", rec_e2e, e2e, b_e2e)):
                sim_p = percentiles(sim, PCTS) if sim is not None else [None, None]
                base_p = percentiles(base, PCTS)
                for label, r, s, b in zip(("p50", "p90"), rec, sim_p, base_p):
                    row[f"{name}_{label}"] = (r, s, None if s is None else signed(s, r), signed(b, r))
            rows.append(row)
    return rows, fits


def _cell(v: tuple) -> tuple[str, str, str]:
    r, s, e, b = v
    sim = "dead end" if s is None else f"{s:,.0f}"
    err = "—" if e is None else f"{e:+.1f}%"
    return f"{r:,.0f} / {sim}", err, f"{b:+.1f}%"


def markdown(rows: list[dict]) -> str:
    head = ["run", "layout", "req/s", "saturated"]
    for m in ("TTFT p50", "TTFT p90", "E2E p50", "E2E p90"):
        head += [f"{m} measured / simulated (ms)", "error", "baseline error"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["run"] + (" (fit)" if r["fit"] else ""), r["layout"], f"{r['rate']:g}",
                 "yes" if r["saturated"] else "no"]
        for k in ("ttft_p50", "ttft_p90", "e2e_p50", "e2e_p90"):
            cells += _cell(r[k])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> list[str]:
    out = []
    for system in dict.fromkeys(r["system"] for r in rows):
        held = [r for r in rows if r["system"] == system and not r["fit"] and not r["saturated"]]
        ok = [r for r in held if r["error"] is None and all(abs(r[k][2]) <= 5.0 for k in
                                                             ("ttft_p50", "ttft_p90", "e2e_p50", "e2e_p90"))]
        each = ", ".join(f"{label} {sum(r['error'] is None and abs(r[k][2]) <= 5.0 for r in held)}"
                         for k, label in (("ttft_p50", "TTFT p50"), ("ttft_p90", "TTFT p90"), ("e2e_p50", "E2E p50"),
                                          ("e2e_p90", "E2E p90")))
        out.append(f"{system}: {len(ok)}/{len(held)} held-out runs below saturation within 5% on p50 and p90 TTFT "
                   f"and E2E" + (f" ({', '.join(r['run'] for r in ok)})" if ok else "") + f"; by measure: {each}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", help="also write the table (markdown) to this file")
    ap.add_argument("--system", action="append", help="only these systems (vllm, distserve, distserve-c21d11, ...)")
    ap.add_argument("--decode-profile", action="store_true",
                    help="DistServe runs: decode slopes from DistServe's profile, only the intercept fitted")
    ap.add_argument("--own-decode", action="store_true",
                    help="diagnostic: also replay each run with its decode step fitted on itself (E2E p50/p90 errors)")
    args = ap.parse_args()
    if not RUNS.is_dir():
        print(f"skip: {RUNS} not found", file=sys.stderr)
        return 0
    paths = [p for p in glob.glob(str(RUNS / "*.exp")) if args.system is None or layout(p).system in args.system]
    rows, fits = evaluate(paths, args.own_decode, args.decode_profile)
    for system, lines in fits.items():
        print(f"{system}: fitted on {lines[0]}")
        for line in lines[2:]:
            print(line)
    print(f"{'run':32s} {'sat':>3s} " + " ".join(f"{k:>16s}" for k in ("TTFT p50", "TTFT p90", "E2E p50", "E2E p90"))
          + "   (error, baseline error)")
    for r in rows:
        cells = " ".join(f"{_cell(r[k])[1]:>7s} {_cell(r[k])[2]:>8s}" for k in ("ttft_p50", "ttft_p90", "e2e_p50", "e2e_p90"))
        own = ("  own decode E2E " + ("—" if r["e2e_own"] is None else
                                      " ".join(f"{e:+.1f}%" for e in r["e2e_own"]))) if args.own_decode else ""
        print(f"{r['run']:32s} {'yes' if r['saturated'] else 'no':>3s} {cells}  {r['wall_s']:.2f}s{own}"
              + (f"  {r['error']}" if r["error"] else ""))
    for line in summary(rows):
        print(line)
    if args.markdown:
        with atomic_output(args.markdown) as f:
            f.write((markdown(rows) + "\n").encode())
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
