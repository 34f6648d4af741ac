"""Summary report, per-request JSONL and a terminal table, in the shape of the Dynamo release the
rules name (`DynamoRules.report`): 1.4.2's keys and statistics here (observed notes §7), 1.5.1's
and 1.6.1's in `report_aisim`. Reads only `sim.result` records.

Statistics: exact-value percentiles at sorted index floor((n-1)p + 0.5); population std; ITL is
token-weighted (every gap of every completed request); ITL and per-user-throughput percentiles
come from a DDSketch with relative accuracy 0.001, their mean/min/max/std are exact.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable

from . import report_aisim
from .percentiles import rank
from .result import SimResult

if TYPE_CHECKING:
    from .versions import DynamoRules

PCTS = (("median", 0.5), ("p75", 0.75), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99))
_ALPHA = 0.001
_GAMMA = 1 + 2 * _ALPHA / (1 - _ALPHA)
_LNG = math.log1p(2 * _ALPHA / (1 - _ALPHA))


_rank = rank  # the one percentile rule (sim/percentiles.py)


def _exact_stats(name: str, vals: list[float], suffix: str = "_ms") -> dict:
    out = {}
    if not vals:
        for k in ("mean", "min", "max", "median", "p75", "p90", "p95", "p99", "std"):
            out[f"{k}_{name}{suffix}"] = 0.0
        return out
    n = len(vals)
    s = sorted(vals)
    mean = math.fsum(vals) / n
    out[f"mean_{name}{suffix}"] = mean
    out[f"min_{name}{suffix}"] = s[0]
    out[f"max_{name}{suffix}"] = s[-1]
    for label, p in PCTS:
        out[f"{label}_{name}{suffix}"] = s[_rank(n, p)]
    out[f"std_{name}{suffix}"] = math.sqrt(math.fsum((x - mean) ** 2 for x in vals) / n)
    return out


def _sketch_key(x: float) -> int:
    return math.ceil(math.log(x) / _LNG)


def _sketch_value(k: int) -> float:
    return math.exp(k * _LNG) * 2 / (1 + _GAMMA)


def _weighted_stats(name: str, pairs: list[tuple[float, int]], suffix: str) -> dict:
    """Exact mean/min/max/std over (value, count) pairs; percentiles from the DDSketch."""
    out = {}
    n = sum(c for _, c in pairs)
    if n == 0:
        for k in ("mean", "min", "max", "median", "p75", "p90", "p95", "p99", "std"):
            out[f"{k}_{name}{suffix}"] = 0.0
        return out
    mean = math.fsum(v * c for v, c in pairs) / n
    out[f"mean_{name}{suffix}"] = mean
    out[f"min_{name}{suffix}"] = min(v for v, _ in pairs)
    out[f"max_{name}{suffix}"] = max(v for v, _ in pairs)
    buckets: dict[int, int] = {}
    for v, c in pairs:
        if v > 0:
            k = _sketch_key(v)
            buckets[k] = buckets.get(k, 0) + c
    keys = sorted(buckets)
    total = sum(buckets.values())
    for label, p in PCTS:
        if n == 1:
            # 1.4.2 reports a lone value itself, not its sketch bucket (observed: one ITL gap)
            out[f"{label}_{name}{suffix}"] = next(v for v, c in pairs if c)
            continue
        if not total:
            out[f"{label}_{name}{suffix}"] = 0.0
            continue
        rank = _rank(total, p)
        acc = 0
        for k in keys:
            acc += buckets[k]
            if acc > rank:
                out[f"{label}_{name}{suffix}"] = _sketch_value(k)
                break
    out[f"std_{name}{suffix}"] = math.sqrt(math.fsum(c * (v - mean) ** 2 for v, c in pairs) / n)
    return out


def _shape(rules: DynamoRules | None) -> str:
    return "1.4" if rules is None else rules.report


def summary(res: SimResult, *, sla_ttft_ms: float | None = None, sla_itl_ms: float | None = None,
            sla_e2e_ms: float | None = None, wall_time_ms: float | None = None,
            rules: DynamoRules | None = None, execution_model: str = "mock") -> dict:
    """The `--report-json` object: the summary of the Dynamo release `rules` name (None: 1.4.2),
    keys in its order, plus a `trace_pipe` object with play and session makespans and critical
    paths when the trace has dependencies. `execution_model` is the target model 1.6's
    `agentic_model_projection` names (Dynamo's API requires one for agentic traces)."""
    shape = _shape(rules)
    if shape != "1.4":
        rep = report_aisim.summary(res, shape, sla_ttft_ms=sla_ttft_ms, sla_itl_ms=sla_itl_ms,
                                   sla_e2e_ms=sla_e2e_ms, wall_time_ms=wall_time_ms,
                                   execution_model=execution_model)
        if res.plays:
            rep["trace_pipe"] = _extras(res)
        return rep
    done = [r for r in res.requests if r.status == "completed"]
    wall = res.wall_time_ms if wall_time_ms is None else wall_time_ms
    # A completed 0-output request has no token: it counts in the request and input-token
    # totals and in duration, but not in the latency statistics (as 1.4.2).
    tok = [r for r in done if r.first_token_ms is not None]
    ttft = [r.first_token_ms - r.ready_ms for r in tok]
    e2e = [r.last_token_ms - r.ready_ms for r in tok]
    multi = [r for r in tok if r.output_tokens >= 2]
    ttst = [r.second_token_ms - r.first_token_ms for r in multi]
    tpot = [(r.last_token_ms - r.first_token_ms) / (r.output_tokens - 1) for r in multi]
    tin = sum(r.input_length for r in done)
    tout = sum(r.output_tokens for r in done)
    duration = max((r.end_ms for r in done), default=0.0)
    dur_s = duration / 1000.0
    wall_s = wall / 1000.0

    def per(x: float) -> float:
        return x / dur_s if dur_s > 0 else 0.0

    def per_wall(x: float) -> float:
        return x / wall_s if wall_s > 0 else 0.0

    rep: dict = {
        "num_requests": sum(1 for r in res.requests if r.status != "not_started"),
        "completed_requests": len(done),
        "total_input_tokens": tin,
        "total_output_tokens": tout,
        "processed_tokens": tin + tout,
        "duration_ms": duration,
        "wall_time_ms": wall,
        "request_throughput_rps": per(len(done)),
        "input_throughput_tok_s": per(tin),
        "output_throughput_tok_s": per(tout),
        "total_throughput_tok_s": per(tin + tout),
        "processed_tokens_per_s": per_wall(tin + tout),
        "processed_output_tokens_per_s": per_wall(tout),
        "prefix_cache_reused_ratio": (sum(r.cached_tokens for r in done) / tin) if tin else 0.0,
        "first_admission_prefix_cache_reused_ratio": (sum(r.first_cached_tokens for r in done) / tin) if tin else 0.0,
        "prefill_worker_seconds": dur_s * res.num_prefill_workers if res.num_prefill_workers else 0.0,
        "decode_worker_seconds": dur_s * res.num_workers,
        "prefill_gpus_per_worker": 1 if res.num_prefill_workers else 0,
        "decode_gpus_per_worker": 1,
        "gpu_hours": dur_s * (res.num_prefill_workers + res.num_workers) * 1 / 3600,
    }
    rep.update(_exact_stats("ttft", ttft))
    rep.update(_exact_stats("ttst", ttst))
    rep.update(_exact_stats("tpot", tpot))
    rep.update(_exact_stats("e2e_latency", e2e))
    gaps = list(res.itl_gaps) if multi else []
    rep.update(_weighted_stats("itl", gaps, "_ms"))
    rep.update(_weighted_stats("output_token_throughput_per_user", [(1000.0 / g, c) for g, c in gaps if g > 0], ""))
    if any(x is not None for x in (sla_ttft_ms, sla_itl_ms, sla_e2e_ms)):
        good = []
        for r in done:
            if r.first_token_ms is None:
                # 1.4.2: no first token fails a TTFT or ITL SLA; its e2e is its terminal time
                if sla_ttft_ms is None and sla_itl_ms is None and r.end_ms - r.ready_ms <= sla_e2e_ms:
                    good.append(r)
                continue
            a = r.first_token_ms - r.ready_ms
            b = r.last_token_ms - r.ready_ms
            if sla_ttft_ms is not None and a > sla_ttft_ms:
                continue
            if sla_e2e_ms is not None and b > sla_e2e_ms:
                continue
            if sla_itl_ms is not None and r.output_tokens > 1 and (b - a) / (r.output_tokens - 1) > sla_itl_ms:
                continue
            good.append(r)
        rep["goodput_completed_requests"] = len(good)
        rep["goodput_request_throughput_rps"] = per(len(good))
        rep["goodput_output_throughput_tok_s"] = per(sum(r.output_tokens for r in good))
    if res.plays:
        rep["trace_pipe"] = _extras(res)
    return rep


def _extras(res: SimResult) -> dict:
    plays = [{
        "play": p.play, "requests": len(p.request_ids), "completed": p.completed, "start_ms": p.start_ms,
        "end_ms": p.end_ms, "makespan_ms": p.makespan_ms, "critical_path": list(p.critical_path),
        "critical_path_waits_ms": list(p.critical_waits_ms)} for p in res.plays]
    sessions: dict[str, list] = {}
    for r in res.requests:
        if r.session_id is not None and r.ready_ms is not None:
            sessions.setdefault(r.session_id, []).append(r)
    sess = []
    for sid, rs in sessions.items():
        ends = [r.end_ms for r in rs if r.end_ms is not None]
        start = min(r.ready_ms for r in rs)
        end = max(ends) if ends else start
        sess.append({"session_id": sid, "requests": len(rs), "start_ms": start, "end_ms": end,
                     "makespan_ms": end - start})
    mk = sorted(p["makespan_ms"] for p in plays if p["completed"])
    out = {"plays": plays, "sessions": sess, "total_plays": len(plays),
           "completed_plays": sum(1 for p in plays if p["completed"])}
    if mk:
        out["mean_play_makespan_ms"] = math.fsum(mk) / len(mk)
        for label, p in PCTS:
            out[f"{label}_play_makespan_ms"] = mk[_rank(len(mk), p)]
        out["max_play_makespan_ms"] = mk[-1]
    return out


# ai-dynamo 1.4.2's disaggregated-serving keys, null in aggregated replay (what it writes there)
# and filled from the handoff in a disaggregated one
_PD_KEYS = ("prefill_admit_ms", "source_held_ms", "destination_reserved_ms", "destination_activated_ms",
            "decode_admit_ms", "source_released_ms", "decode_reused_input_tokens", "prefill_route_overlap_tokens",
            "decode_route_overlap_tokens")


def _ms(v: float | None) -> float | None:
    return None if v is None else float(v)  # Dynamo's times are f64: 1.0, never 1


def jsonl_rows(res: SimResult, *, rules: DynamoRules | None = None) -> Iterable[dict]:
    """Per-request rows of the Dynamo release `rules` name (None: 1.4.2). 1.4.2's shape: its
    fields in its order (`request_id` first, as later Dynamo writes the authored id, and `play`
    last are ours), sorted by arrival then trace order (deterministic, unlike Dynamo's random
    UUID tie-break); the uuid is the request id. 1.5/1.6: see `report_aisim.rows`."""
    shape = _shape(rules)
    if shape != "1.4":
        yield from report_aisim.rows(res, shape)
        return
    order = sorted(range(len(res.requests)),
                   key=lambda i: (res.requests[i].ready_ms if res.requests[i].ready_ms is not None else math.inf, i))
    for i in order:
        r = res.requests[i]
        if r.ready_ms is None:
            continue
        ok = r.first_token_ms is not None
        row = {
            "request_id": r.request_id, "session_id": r.session_id, "turn_index": None, "uuid": r.request_id,
            "arrival_time_ms": _ms(r.ready_ms), "first_admit_ms": _ms(r.first_admit_ms),
            "terminal_time_ms": _ms(r.end_ms), "first_token_ms": _ms(r.first_token_ms),
            "last_token_ms": _ms(r.last_token_ms),
            "ttft_ms": r.first_token_ms - r.ready_ms if ok else None,
            "ttst_ms": r.second_token_ms - r.first_token_ms if r.second_token_ms is not None and ok else None,
            "e2e_latency_ms": r.last_token_ms - r.ready_ms if ok and r.last_token_ms is not None else None,
            "itl_ms": ((r.last_token_ms - r.first_token_ms) / (r.output_tokens - 1))
            if ok and r.output_tokens > 1 and r.last_token_ms is not None else None,
            "input_length": r.input_length, "requested_output_length": r.requested_output_length,
            "output_length": r.output_tokens,
            "reused_input_tokens": r.cached_tokens if r.handoff is None else r.handoff.prefill_reused_tokens,
            "prefill_worker_idx": None if r.handoff is None else r.handoff.prefill_worker, "decode_worker_idx": r.worker,
        }
        h = r.handoff
        if h is None:
            for k in _PD_KEYS:
                row[k] = None
        else:
            row.update(zip(_PD_KEYS, (_ms(h.prefill_admit_ms), _ms(h.source_held_ms), _ms(h.destination_reserved_ms),
                                      _ms(h.destination_activated_ms), _ms(h.decode_admit_ms),
                                      _ms(h.source_released_ms), h.decode_reused_tokens, 0,
                                      0 if r.worker is not None else None)))
        row["terminal_status"] = r.status
        row["play"] = r.play
        yield row


def full_report(res: SimResult, rep: dict, *, rules: DynamoRules | None = None, per_request: bool = True) -> dict:
    """The whole report object Dynamo 1.5+'s API returns, {summary, per_request, coverage,
    planner}, around the summary `rep` (as `summary` made it, `trace_pipe` extras included).
    1.4.2 had no such object: its shape gets the same wrapper with 1.4.2's rows."""
    if _shape(rules) != "1.4":
        return report_aisim.full(res, _shape(rules), rep, per_request=per_request)
    pr = list(jsonl_rows(res)) if per_request else None
    return {"summary": rep, "per_request": pr,
            "coverage": {"capture_per_request": per_request, "capture_planner_details": False,
                         "per_request_records": len(pr) if pr is not None else 0},
            "planner": None}


_ROWS = (("Time to First Token (ms)", "ttft", "_ms"), ("Time to Second Token (ms)", "ttst", "_ms"),
         ("Request Latency (ms)", "e2e_latency", "_ms"), ("Inter Token Latency (ms)", "itl", "_ms"),
         ("Output Token Throughput Per User (tokens/sec/user)", "output_token_throughput_per_user", ""))


def table(rep: dict) -> str:
    """The AIPerf-style summary table Dynamo prints, as plain text."""
    head = ("Metric", "avg", "min", "max", "p99", "p90", "p75", "std")
    rows = []
    for label, key, sfx in _ROWS:
        rows.append((label, *(f"{rep[f'{s}_{key}{sfx}']:,.2f}" for s in ("mean", "min", "max", "p99", "p90", "p75", "std"))))
    for label, key in (("Output Token Throughput (tokens/sec)", "output_throughput_tok_s"),
                       ("Request Throughput (requests/sec)", "request_throughput_rps"),
                       ("Request Count (requests)", "completed_requests")):
        rows.append((label, f"{rep[key]:,.2f}", *("N/A",) * 6))
    w = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
    line = "+" + "+".join("-" * (x + 2) for x in w) + "+"
    fmt = lambda r: "| " + " | ".join(str(c).ljust(w[0]) if i == 0 else str(c).rjust(w[i])  # noqa: E731
                                     for i, c in enumerate(r)) + " |"
    out = ["trace-pipe replay | LLM Metrics", line, fmt(head), line, *map(fmt, rows), line,
           f"Wall Time (ms): {rep['wall_time_ms']:.2f}",
           f"Duration (virtual ms): {rep['duration_ms']:.2f}",
           f"Prefix Cache Reused Ratio: {rep['prefix_cache_reused_ratio']:.4g}",
           f"First Admission Prefix Cache Reused Ratio: {rep['first_admission_prefix_cache_reused_ratio']:.4g}"]
    tp = rep.get("trace_pipe")
    if tp and tp.get("total_plays"):
        out.append(f"Plays: {tp['completed_plays']}/{tp['total_plays']} completed"
                   + (f", mean makespan {tp['mean_play_makespan_ms']:.2f} ms" if "mean_play_makespan_ms" in tp else ""))
    return "\n".join(out)
