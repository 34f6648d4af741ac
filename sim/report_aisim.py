"""The report of the Dynamo releases whose replay is AISimulate's (1.5.1 and 1.6.1): summary keys
in their order, per-request rows, and the whole report object. Read from
`crates/core/src/replay/report.rs` in ai-dynamo/aisimulate and checked against both oracles.

What changed from 1.4.2 (`report.py`):
- keys: `num_{ttft,tpot,e2e_latency}_samples`; agentic runs add trajectory counts and latency
  statistics and `agentic_graph`; 1.6 adds `kv_eviction_policy`, `committed_prefill_tokens`,
  `power_w`, `power_coverage`, the lifecycle digest and count, play outcomes and the model
  projection, and `source_models` in `agentic_graph`;
- exact statistics: the mean is a plain left-to-right sum over requests in request_id (then
  uuid) order (bit-exact here for agentic traces); the std sums in the order Rust's in-place
  percentile selection leaves the values, which is not reproduced (last bits only); percentiles
  still the value at round((n-1)p);
- ITL and per-user throughput: unchanged from 1.4.2 but for rounding: every token gap of every
  completed request, percentiles from the same DDSketch (relative accuracy 0.001) at the same
  rank, a lone gap reported itself; mean and std are now streamed (Welford) in request order,
  which trace-pipe's (gap, count) totals reproduce to ~1e-15 relative;
- a zero duration divides by 1e-9 s instead of giving 0; worker seconds run to the last event
  the simulation processed (past the last completion when a time limit cut the run);
- rows: one per request that reached a terminal status (a time limit's unfinished requests have
  none), agentic traces included, sorted by authored request_id (None first), then arrival, then
  uuid; uuids number the graph's nodes (request_id order) from 1, or for Mooncake rows (random
  in Dynamo) the rows in trace order.
"""

from __future__ import annotations

import math
from itertools import compress, repeat
from operator import itemgetter, mul, sub, truediv

from trace_pipe.pipeline.timeline import RouteOverlap, SimulatedRequest

from .agentic_lifecycle import lifecycle
from .result import SimResult

_NO_OVERLAP = RouteOverlap(0, 0, 0)

_POSITIVE = (0.0).__lt__
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_PCTS = (("median", 50.0), ("p75", 75.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0))
_STATS = ("mean", "min", "max", "median", "p75", "p90", "p95", "p99", "std")
_ALPHA = 0.001
_GAMMA = 1 + 2 * _ALPHA / (1 - _ALPHA)
_LNG = math.log1p(2 * _ALPHA / (1 - _ALPHA))
_MID = 2 / (1 + _GAMMA)  # a bucket's value is gamma^k times this (one constant: the last bit agrees)
_PD_KEYS = ("prefill_admit_ms", "source_held_ms", "destination_reserved_ms", "destination_activated_ms",
            "decode_admit_ms", "source_released_ms", "decode_reused_input_tokens", "prefill_route_overlap_tokens",
            "decode_route_overlap_tokens")
#: what `agentic_model_projection` says trace-pipe does with the trace's models (Dynamo's API
#: projects them onto its configured execution model; trace-pipe's one timing model is it)
PROJECTION_POLICY = "project_to_configured_target"


def _rank(n: int, pct: float) -> int:
    # Rust's f64::round (half away from zero) of (n - 1) * pct / 100, evaluated as it does
    return min(int(math.floor((n - 1) * pct / 100.0 + 0.5)), n - 1)


def _seq_sum(vals) -> float:
    s = 0.0
    for v in vals:  # left to right, as Rust's Iterator::sum (not compensated)
        s += v
    return s


def _exact(name: str, vals: list[float], suffix: str = "_ms") -> dict:
    if not vals:
        return {f"{k}_{name}{suffix}": 0.0 for k in _STATS}
    n = len(vals)
    s = sorted(vals)
    mean = _seq_sum(vals) / n
    out = {f"mean_{name}{suffix}": mean, f"min_{name}{suffix}": s[0], f"max_{name}{suffix}": s[-1]}
    for label, p in _PCTS:
        out[f"{label}_{name}{suffix}"] = s[_rank(n, p)]
    out[f"std_{name}{suffix}"] = math.sqrt(_seq_sum((v - mean) * (v - mean) for v in vals) / n)
    return out


def _streamed(name: str, vs: list[float], cs: list[int], suffix: str, keep: list[bool] | None = None) -> dict:
    """Statistics of values `vs` with counts `cs` as Dynamo's streaming distribution gives them.
    (C-level maps over the columns, not a loop over (value, count) pairs: a replay has one pair
    per distinct pass length, up to ~10^6; every value comes from the same float operations in
    the same order as a plain loop's.) `keep`: `vs` > 0, when the caller has it."""
    n = sum(cs)
    if n == 0:
        return {f"{k}_{name}{suffix}": 0.0 for k in _STATS}
    mean = math.fsum(map(mul, vs, cs)) / n
    hi = max(vs)
    out = {f"mean_{name}{suffix}": mean, f"min_{name}{suffix}": min(vs), f"max_{name}{suffix}": hi}
    if keep is None:
        keep = positive(vs)
    if all(keep):
        pos, pcs, zeros = vs, cs, 0
    else:
        pos, pcs = list(compress(vs, keep)), list(compress(cs, keep))
        zeros = n - sum(pcs)
    buckets: dict[int, int] = {}
    get = buckets.get
    for k, c in zip(map(math.ceil, map(truediv, map(math.log, pos), repeat(_LNG))), pcs):
        buckets[k] = get(k, 0) + c
    keys = sorted(buckets)
    for label, p in _PCTS:
        if n == 1:  # a lone value is reported itself, not its bucket (as 1.4.2)
            out[f"{label}_{name}{suffix}"] = hi
            continue
        rank = _rank(n, p)
        acc = zeros
        val = 0.0
        if acc <= rank:
            for k in keys:
                acc += buckets[k]
                if acc > rank:
                    val = math.exp(k * _LNG) * _MID
                    break
        out[f"{label}_{name}{suffix}"] = val
    out[f"std_{name}{suffix}"] = math.sqrt(math.fsum(map(mul, cs, map(pow, map(sub, vs, repeat(mean)), repeat(2)))) / n)
    return out


def positive(vs: list[float]) -> list[bool]:
    """v > 0 for each value (False for NaN): the streamed statistics count the others as zeros."""
    return list(map(_POSITIVE, vs))


def uuid_text(n: int) -> str:
    """`Uuid::from_u128(n)` as Rust prints it."""
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _uuid_numbers(res: SimResult) -> list[int]:
    if res.graph is not None:
        return [node.ordinal + 1 for node in res.graph.nodes]
    return list(range(1, len(res.requests) + 1))


def _request_order(res: SimResult) -> list[int]:
    """Dynamo's order for folding statistics: authored id (agentic only), then uuid."""
    u = _uuid_numbers(res)
    return sorted(range(len(res.requests)), key=u.__getitem__)


def summary(res: SimResult, shape: str, *, sla_ttft_ms: float | None = None, sla_itl_ms: float | None = None,
            sla_e2e_ms: float | None = None, wall_time_ms: float | None = None,
            execution_model: str = "mock") -> dict:
    """The summary dict in the key order of Dynamo `shape` ("1.5" or "1.6")."""
    v16 = shape == "1.6"
    recs = res.requests
    order = _request_order(res)
    done = [recs[i] for i in order if recs[i].status == "completed" and recs[i].first_admit_ms is not None
            and recs[i].end_ms is not None]
    wall = res.wall_time_ms if wall_time_ms is None else wall_time_ms
    tok = [r for r in done if r.first_token_ms is not None and r.last_token_ms is not None]
    ttft = [max(r.first_token_ms - r.ready_ms, 0.0) for r in tok]
    e2e = [max(r.last_token_ms - r.ready_ms, 0.0) for r in tok]
    ttst = [_ttst(r) for r in tok if r.output_tokens >= 2 and r.second_token_ms is not None]
    tpot = [max(r.last_token_ms - r.first_token_ms, 0.0) / (r.output_tokens - 1) for r in tok if r.output_tokens >= 2]
    tin = sum(r.input_length for r in done)
    tout = sum(r.output_tokens for r in done)
    duration = max((max(r.end_ms, 0.0) for r in done), default=0.0)
    dur_s = max(duration / 1000.0, 1e-9)
    clock_s = _clock_end(res, duration) / 1000.0
    worker_s = res.num_workers * clock_s
    prefill_s = res.num_prefill_workers * clock_s
    wall_s = wall / 1000.0

    rep: dict = {}
    if v16:
        rep["kv_eviction_policy"] = "lru"
        rep["committed_prefill_tokens"] = sum(_prefilled(r) for r in recs)
    rep.update({
        "num_requests": sum(1 for r in recs if r.ready_ms is not None),
        "completed_requests": len(done),
        "total_input_tokens": tin,
        "total_output_tokens": tout,
        "duration_ms": duration,
        "wall_time_ms": wall,
        "request_throughput_rps": len(done) / dur_s,
        "input_throughput_tok_s": tin / dur_s,
        "output_throughput_tok_s": tout / dur_s,
        "total_throughput_tok_s": (tin + tout) / dur_s,
        "prefill_worker_seconds": prefill_s,
        "decode_worker_seconds": worker_s,
        "prefill_gpus_per_worker": 1 if res.num_prefill_workers else 0,
        "decode_gpus_per_worker": 1,
        "gpu_hours": (prefill_s + worker_s) / 3600.0,
    })
    if any(x is not None for x in (sla_ttft_ms, sla_itl_ms, sla_e2e_ms)):
        good, good_out = _goodput(done, sla_ttft_ms, sla_itl_ms, sla_e2e_ms)
        rep["goodput_completed_requests"] = good
        rep["goodput_request_throughput_rps"] = good / dur_s
        rep["goodput_output_throughput_tok_s"] = good_out / dur_s
    if v16:
        rep["power_w"] = None  # no power model in the mock engine (Dynamo writes null too)
        rep["power_coverage"] = None
    rep.update({
        "processed_tokens": tin + tout,
        "processed_tokens_per_s": (tin + tout) / wall_s if wall_s > 0 else 0.0,
        "processed_output_tokens_per_s": tout / wall_s if wall_s > 0 else 0.0,
        "prefix_cache_reused_ratio": sum(r.cached_tokens for r in done) / tin if tin else 0.0,
        "first_admission_prefix_cache_reused_ratio": sum(r.first_cached_tokens for r in done) / tin if tin else 0.0,
        "num_ttft_samples": len(ttft),
        "num_tpot_samples": len(tpot),
        "num_e2e_latency_samples": len(e2e),
    })
    rep.update(_exact("ttft", ttft))
    rep.update(_exact("ttst", ttst))
    rep.update(_exact("tpot", tpot))
    gaps = res.itl_gaps if tpot else ()
    vs = list(map(_FIRST, gaps))
    cs = list(map(_SECOND, gaps))
    keep = positive(vs)
    rep.update(_streamed("itl", vs, cs, "_ms", keep))
    g = res.graph
    if g is not None:
        life = lifecycle(g, recs)
        traj = [o.trajectory_ms for o in life.outcomes if o.trajectory_ms is not None]
        rep["total_trajectories"] = len(g.plays)
        rep["completed_trajectories"] = len(traj)
        rep["incomplete_trajectories"] = len(g.plays) - len(traj)
        rep.update(_exact("trajectory_e2e_latency", traj))
        rep["p50_trajectory_e2e_latency_ms"] = rep["median_trajectory_e2e_latency_ms"]
        ident = {"source": None if g.source is None else {"format": g.source[0], "digest": g.source[1]},
                 "graph_digest": g.graph_digest, "block_size": g.block_size, "node_count": len(g.nodes),
                 "play_count": len(g.plays)}
        if v16:
            ident["source_models"] = list(g.source_models)
        rep["agentic_graph"] = ident
        if v16:
            rep["agentic_lifecycle_event_count"] = life.event_count
            rep["agentic_lifecycle_digest"] = life.digest
            rep["agentic_play_outcomes"] = [o.to_json() for o in life.outcomes]
    rep.update(_exact("e2e_latency", e2e))
    # per-user throughput: 1000 / gap for each positive gap, with its count
    rep.update(_streamed("output_token_throughput_per_user", list(map(truediv, repeat(1000.0), compress(vs, keep))),
                         list(compress(cs, keep)), ""))
    if v16 and g is not None:
        rep["agentic_model_projection"] = {"policy": PROJECTION_POLICY, "source_models": list(g.source_models),
                                           "target_model": execution_model}
    return rep


def _ttst(r: SimulatedRequest) -> float:
    # (the engine may stamp a second-token time on a request that emitted one token: only
    # requests with two tokens have one)
    return max(r.second_token_ms - r.first_token_ms, 0.0)


def _prefilled(r: SimulatedRequest) -> int:
    """Prompt tokens its finished prefill passes computed (without an engine count: what its
    first admission left to compute, once its prompt is done; exact without preemption)."""
    if r.prefill_tokens is not None:
        return r.prefill_tokens
    if r.first_admit_ms is None or (r.first_token_ms is None and r.status != "completed"):
        return 0
    return r.input_length - r.first_cached_tokens


def _clock_end(res: SimResult, duration: float) -> float:
    """The simulated clock's last value: the last terminal (a rejection's too), or when a time
    limit cut the run, the last event before it that the records show."""
    if res.stopped_at_ms is None:
        return max((r.end_ms for r in res.requests if r.end_ms is not None), default=duration)
    t = duration
    for r in res.requests:
        for v in (r.ready_ms, r.first_admit_ms, r.first_token_ms, r.last_token_ms, r.end_ms):
            if v is not None and t < v <= res.stopped_at_ms:
                t = v
    return t


def _goodput(done: list[SimulatedRequest], ttft_b, itl_b, e2e_b) -> tuple[int, int]:
    good = out = 0
    for r in done:
        if r.first_token_ms is None or r.last_token_ms is None:
            # no token: good only under an e2e-only SLA, by its terminal time
            if ttft_b is None and itl_b is None and e2e_b is not None and max(r.end_ms - r.ready_ms, 0.0) <= e2e_b:
                good += 1
            continue
        a = max(r.first_token_ms - r.ready_ms, 0.0)
        b = max(r.last_token_ms - r.ready_ms, 0.0)
        if e2e_b is not None and b > e2e_b:
            continue
        if ttft_b is not None and a > ttft_b:
            continue
        if itl_b is not None and r.output_tokens > 1 and (b - a) / (r.output_tokens - 1) > itl_b:
            continue
        good += 1
        out += r.output_tokens
    return good, out


def rows(res: SimResult, shape: str) -> list[dict]:
    """Per-request rows in Dynamo `shape`'s keys and order."""
    recs = res.requests
    g = res.graph
    u = _uuid_numbers(res)
    sessions = None if g is not None else _mooncake_sessions(recs)
    out = []
    for i, r in enumerate(recs):
        if r.status not in ("completed", "rejected") or r.end_ms is None or r.ready_ms is None:
            continue
        row: dict = {}
        if g is not None:
            node = g.nodes[i]
            row["request_id"] = r.request_id
            row["play_id"] = node.play_id
            row["session_id"] = node.session_id
            row["turn_index"] = None if shape == "1.6" else 0
            if shape == "1.6":
                ag = {"request_id": r.request_id, "play_id": node.play_id, "conversation_id": node.session_id}
                if node.root_id is not None:
                    ag["root_id"] = node.root_id
                if node.parent_id is not None:
                    ag["parent_id"] = node.parent_id
                row["agentic"] = ag
        else:
            row["session_id"], row["turn_index"] = sessions[i]
        ok = r.first_token_ms is not None
        last = r.last_token_ms
        row.update({
            "uuid": uuid_text(u[i]),
            "arrival_time_ms": float(r.ready_ms),
            "dispatched_at_ms": float(r.ready_ms) if g is not None else None,
            "first_admit_ms": r.first_admit_ms,
            "terminal_time_ms": float(r.end_ms),
            "first_token_ms": r.first_token_ms,
            "last_token_ms": last,
            "ttft_ms": max(r.first_token_ms - r.ready_ms, 0.0) if ok else None,
            "ttst_ms": _ttst(r) if ok and r.output_tokens >= 2 and r.second_token_ms is not None else None,
            "e2e_latency_ms": max(last - r.ready_ms, 0.0) if last is not None else None,
            "itl_ms": max(last - r.first_token_ms, 0.0) / (r.output_tokens - 1)
            if ok and last is not None and r.output_tokens > 1 else None,
            "input_length": r.input_length,
            "requested_output_length": r.requested_output_length,
            "output_length": r.output_tokens,
            "reused_input_tokens": r.cached_tokens if r.handoff is None else r.handoff.prefill_reused_tokens,
            "prefill_worker_idx": None if r.handoff is None else r.handoff.prefill_worker,
            "decode_worker_idx": r.worker,
        })
        adm = r.admission_history or (((r.first_admit_ms, r.first_cached_tokens),) if r.first_admit_ms is not None
                                      else ())
        h = r.handoff
        if h is None:
            for k in _PD_KEYS:
                row[k] = None
            row["routing_history"] = [] if r.worker is None else [_route(r, overlap=r.route)]
            pools = [("agg", adm)]
        else:
            row.update(zip(_PD_KEYS, (h.prefill_admit_ms, h.source_held_ms, h.destination_reserved_ms,
                                      h.destination_activated_ms, h.decode_admit_ms, h.source_released_ms,
                                      h.decode_reused_tokens, 0 if r.route is None else r.route.tokens,
                                      0 if r.worker is not None else None)))
            # `route` is the prefill pool's placement; the decode pool's KV router (1.6.1)
            # credits no overlap, so its reports zeros
            row["routing_history"] = [_route(r, "prefill", h.prefill_worker, overlap=r.route)] + (
                [] if r.worker is None else [_route(r, "decode", r.worker, queued=False,
                                                    overlap=None if r.route is None else _NO_OVERLAP)])
            pools = [("prefill", adm), ("decode", h.decode_admissions)]
        hist = []
        for pool, xs in pools:
            for k, (t, n) in enumerate(xs):
                hist.append({"admission_ordinal": len(hist), "pool_admission_ordinal": k, "pool": pool,
                             "at_ms": float(t), "reused_input_tokens": n, "is_readmission": k > 0})
        row["admission_history"] = hist
        row["admission_count"] = len(hist)
        row["readmission_count"] = sum(1 for x in hist if x["is_readmission"])
        row["pressure_record_ordinals"] = []
        row["terminal_status"] = r.status
        out.append((r.request_id if g is not None else "", r.ready_ms, u[i], row))
    out.sort(key=lambda x: x[:3])
    return [x[3] for x in out]


def _route(r: SimulatedRequest, pool: str = "agg", worker: int | None = None, queued: bool | None = None,
           overlap: RouteOverlap | None = None) -> dict:
    """A router placement: the one of an aggregated request, or one per pool of a disaggregated
    one (`worker` in that pool)."""
    if worker is None:
        worker = r.worker
    if queued is None:
        queued = r.dispatch_ms is not None and r.dispatch_ms > r.ready_ms
    o = overlap
    return {"pool": pool, "outcome": "queued" if queued else "immediate",
            "queue_entered_at_ms": float(r.ready_ms) if queued else None,
            "released_at_ms": float(r.dispatch_ms) if queued else None,
            "queue_wait_ms": r.dispatch_ms - r.ready_ms if queued else 0.0,
            "logical_worker_id": worker, "scheduler_id": worker, "dp_rank": 0,
            "reported_overlap_tokens": 0 if o is None else o.tokens,
            "selected_overlap_blocks": None if o is None else o.selected_blocks,
            "best_available_overlap_blocks": None if o is None else o.best_blocks,
            "overlap_regret_blocks": None if o is None or o.best_blocks is None else o.best_blocks - o.selected_blocks,
            "placement_replica_id": None}


def _mooncake_sessions(recs: tuple[SimulatedRequest, ...]) -> list[tuple[str | None, int | None]]:
    """(session_id, turn_index) per row as Dynamo labels Mooncake requests: none when every
    session is a single request; otherwise the row's session (or "request_<line>") and its turn."""
    names = [r.session_id if r.session_id is not None else f"request_{r.source.rsplit(':', 1)[-1]}" for r in recs]
    counts: dict[str, int] = {}
    for s in names:
        counts[s] = counts.get(s, 0) + 1
    if all(c == 1 for c in counts.values()):
        return [(None, None)] * len(recs)
    seen: dict[str, int] = {}
    out = []
    for s in names:
        out.append((s, seen.get(s, 0)))
        seen[s] = seen.get(s, 0) + 1
    return out


def full(res: SimResult, shape: str, summary_dict: dict, *, per_request: bool = True) -> dict:
    """The whole report object Dynamo's API returns: {summary, per_request, coverage, planner}."""
    pr = rows(res, shape) if per_request else None
    return {"summary": summary_dict, "per_request": pr,
            "coverage": {"capture_per_request": per_request, "capture_planner_details": False,
                         "per_request_records": len(pr) if pr is not None else 0},
            "planner": None}
