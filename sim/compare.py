"""Recorded vs simulated, per request and summarised (`--compare-json`, the terminal table).

Per request, both sides on one clock (ms from the first recorded start; the simulator's 0 is that
same instant): `start_ms` (recorded start / simulated release), `ttft_ms` (first token - start;
null where the input has no first-token time or the simulation did not get there) and `e2e_ms`
(end - start). Summary statistics over the requests both sides have:
- `start_abs_err_ms`: |simulated start - recorded start|;
- `ttft_ape`, `e2e_ape`: absolute percentage error, 100 * |sim - rec| / rec (rec > 0 only);
- `makespan_err_pct`: signed, 100 * (sim - rec) / rec, of first start to last end;
each as {median, p90, max} (sorted index floor((n - 1) p + 0.5), as the report; null when empty),
with how many values each has (`start_compared`, `ttft_compared`, `e2e_compared`) and how many
requests finished in the simulation (`finished`).
`plays`: the same summary per play (DAG component) with a chain, a single request's included;
context-free requests (no chain) belong to no play.
`distribution`: fidelity at the level of distributions, as DistServe's and Vidur's papers report
it: for TTFT, TPOT ((e2e - ttft) / (output tokens - 1), requests with 2+ tokens) and E2E, the
recorded and simulated p50, p90 and p99 (each side's own percentile over the requests both sides
have) and the signed error 100 * (sim - rec) / rec; and the request and output-token throughput
of each side (completed requests or their output tokens over that side's first start to last
end, per second) with the same signed error. Errors are null where the recorded value is 0.
`error_onset`: the first request, in recorded start order, whose simulated start or end is more
than `onset_ms` off the recorded one (the first the simulation gets noticeably wrong: a start
error is drift inherited through its dependencies, an end error its own queueing or service
time), and the simulated queue depth when it was released: requests released but not yet
admitted to a batch at that instant, on every worker and in the router queue (itself included
when it had to wait). Null fields when no request is that far off.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from trace_pipe.pipeline.model import Request
from trace_pipe.pipeline.timeline import SimulatedRequest

from .percentiles import percentile, percentiles
from .result import SimResult

ONSET_MS = 100.0
DIST_PCTS = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def _stat(vals: list[float]) -> dict:
    if not vals:
        return {"median": None, "p90": None, "max": None}
    s = sorted(vals)
    return {"median": percentile(s, 0.5), "p90": percentile(s, 0.9), "max": s[-1]}


def _ape(sim: float | None, rec: float | None) -> float | None:
    if sim is None or rec is None or rec <= 0:
        return None
    return 100.0 * abs(sim - rec) / rec


def recorded_e2e_ms(r: Request) -> float:
    """A recorded request's service time: its own unrounded `total_time_ms` where it has one (the
    converter's start and end are whole ms, which is up to 1 ms off: 20% on a 5 ms request)."""
    t = r.total_time_ms
    return t if t is not None and t >= 0.0 else float(r.end_ms - r.start_ms)


def recorded_times(r: Request, t0: int) -> dict:
    e2e = recorded_e2e_ms(r)
    ttft = r.ttft_ms
    if ttft is not None and not 0.0 <= ttft <= e2e + 1.0:  # impossible (the reader counted it): unknown
        ttft = None
    return {"start_ms": float(r.start_ms - t0), "ttft_ms": ttft, "e2e_ms": e2e}


def simulated_times(s: SimulatedRequest) -> dict:
    start = s.ready_ms
    ttft = s.first_token_ms - start if s.first_token_ms is not None and start is not None else None
    done = s.status == "completed" and s.end_ms is not None and start is not None
    return {"start_ms": start, "ttft_ms": ttft, "e2e_ms": s.end_ms - start if done else None}


def _summary(items: list[dict]) -> dict:
    starts, ttft, e2e = [], [], []
    rec_lo = rec_hi = sim_lo = sim_hi = None
    complete = True
    finished = 0
    for it in items:
        rec, sim = it["recorded"], it["simulated"]
        if sim["start_ms"] is not None:
            starts.append(abs(sim["start_ms"] - rec["start_ms"]))
        if (v := _ape(sim["ttft_ms"], rec["ttft_ms"])) is not None:
            ttft.append(v)
        if (v := _ape(sim["e2e_ms"], rec["e2e_ms"])) is not None:
            e2e.append(v)
        rs, re_ = rec["start_ms"], rec["start_ms"] + rec["e2e_ms"]
        rec_lo = rs if rec_lo is None else min(rec_lo, rs)
        rec_hi = re_ if rec_hi is None else max(rec_hi, re_)
        if sim["e2e_ms"] is None:
            complete = False
            continue
        finished += 1
        ss, se = sim["start_ms"], sim["start_ms"] + sim["e2e_ms"]
        sim_lo = ss if sim_lo is None else min(sim_lo, ss)
        sim_hi = se if sim_hi is None else max(sim_hi, se)
    mk = None
    if complete and items and rec_hi - rec_lo > 0:
        mk = 100.0 * ((sim_hi - sim_lo) - (rec_hi - rec_lo)) / (rec_hi - rec_lo)
    return {"start_abs_err_ms": _stat(starts), "ttft_ape": _stat(ttft), "e2e_ape": _stat(e2e),
            "makespan_err_pct": mk, "requests": len(items), "start_compared": len(starts),
            "finished": finished, "ttft_compared": len(ttft), "e2e_compared": len(e2e)}


def compare(recorded: Sequence[Request], res: SimResult, *, onset_ms: float = ONSET_MS) -> dict:
    """`recorded[i]` is the recorded request behind `res.requests[i]` (the replay's rows order)."""
    if len(recorded) != len(res.requests):
        raise ValueError("one recorded request per simulated request")
    t0 = min(r.start_ms for r in recorded)
    order = sorted(range(len(recorded)), key=lambda i: (recorded[i].start_ms, recorded[i].end_ms, i))
    items = []
    by_play: dict[str, list[dict]] = defaultdict(list)
    chained: set[str] = set()
    for i in order:
        s = res.requests[i]
        it = {"request_id": s.request_id, "recorded": recorded_times(recorded[i], t0),
              "simulated": simulated_times(s)}
        items.append(it)
        by_play[s.play].append(it)
        if recorded[i].chain_id is not None:
            chained.add(s.play)
    # every play with a chain, a lone request's included; context-free requests belong to none
    plays = {p: _summary(its) for p, its in by_play.items() if p in chained}
    outs = [(recorded[i].output_tokens, res.requests[i].output_tokens) for i in order]
    return {"requests": items, "summary": _summary(items), "plays": dict(sorted(plays.items())),
            "error_onset": _onset(items, res.requests, onset_ms), "distribution": _distribution(items, outs)}


def _signed(sim: float | None, rec: float | None) -> float | None:
    if sim is None or rec is None or rec == 0:
        return None
    return 100.0 * (sim - rec) / rec


def _tpot(t: dict, out: int | None) -> float | None:
    if out is None or out < 2 or t["ttft_ms"] is None or t["e2e_ms"] is None:
        return None
    return (t["e2e_ms"] - t["ttft_ms"]) / (out - 1)


def _quantiles(pairs: list[tuple[float, float]]) -> dict:
    rec = percentiles((r for r, _ in pairs), (p for _, p in DIST_PCTS))
    sim = percentiles((s for _, s in pairs), (p for _, p in DIST_PCTS))
    out: dict = {"compared": len(pairs)}
    for (label, _), r, s in zip(DIST_PCTS, rec, sim):
        out[label] = {"recorded": r, "simulated": s, "error_pct": _signed(s, r)}
    return out


def _throughput(spans: list[tuple[float, float, int]]) -> tuple[float | None, float | None]:
    """(requests/s, output tokens/s) of completed (start, end, output tokens) spans."""
    if not spans:
        return None, None
    width = (max(e for _, e, _ in spans) - min(s for s, _, _ in spans)) / 1000.0
    if width <= 0:
        return None, None
    return len(spans) / width, sum(o for *_, o in spans) / width


def _distribution(items: list[dict], outs: list[tuple[int | None, int]]) -> dict:
    ttft, tpot, e2e = [], [], []
    rec_spans, sim_spans = [], []
    for it, (rec_out, sim_out) in zip(items, outs):
        rec, sim = it["recorded"], it["simulated"]
        if rec["ttft_ms"] is not None and sim["ttft_ms"] is not None:
            ttft.append((rec["ttft_ms"], sim["ttft_ms"]))
        if sim["e2e_ms"] is not None:
            e2e.append((rec["e2e_ms"], sim["e2e_ms"]))
            sim_spans.append((sim["start_ms"], sim["start_ms"] + sim["e2e_ms"], sim_out))
        a, b = _tpot(rec, rec_out), _tpot(sim, sim_out)
        if a is not None and b is not None:
            tpot.append((a, b))
        rec_spans.append((rec["start_ms"], rec["start_ms"] + rec["e2e_ms"], rec_out or 0))
    (rq, rt), (sq, st) = _throughput(rec_spans), _throughput(sim_spans)
    return {"ttft_ms": _quantiles(ttft), "tpot_ms": _quantiles(tpot), "e2e_ms": _quantiles(e2e),
            "throughput": {"recorded_requests_per_s": rq, "simulated_requests_per_s": sq,
                           "requests_error_pct": _signed(sq, rq),
                           "recorded_output_tokens_per_s": rt, "simulated_output_tokens_per_s": st,
                           "output_tokens_error_pct": _signed(st, rt)}}


def _onset(items: list[dict], sims: Sequence[SimulatedRequest], onset_ms: float) -> dict:
    out = {"request_id": None, "queue_depth": None, "threshold_ms": onset_ms}
    for it in items:
        rec, sim = it["recorded"], it["simulated"]
        t = sim["start_ms"]
        if t is None:
            continue
        start_err = t - rec["start_ms"]
        end_err = None if sim["e2e_ms"] is None else (t + sim["e2e_ms"]) - (rec["start_ms"] + rec["e2e_ms"])
        if abs(start_err) <= onset_ms and (end_err is None or abs(end_err) <= onset_ms):
            continue
        depth = sum(1 for s in sims if s.ready_ms is not None and s.ready_ms <= t
                    and (s.first_admit_ms is None or s.first_admit_ms > t))
        out.update(request_id=it["request_id"], queue_depth=depth, recorded_start_ms=rec["start_ms"],
                   simulated_start_ms=t, start_err_ms=start_err, end_err_ms=end_err)
        break
    return out


def annotations(cmp: dict) -> dict[str, tuple[tuple[str, object], ...]]:
    """Per request id, the recorded values and the differences, as debug-annotation pairs for
    the simulated request slice."""
    out = {}
    for it in cmp["requests"]:
        rec, sim = it["recorded"], it["simulated"]
        pairs = [("recorded.start_ms", rec["start_ms"]), ("recorded.ttft_ms", rec["ttft_ms"]),
                 ("recorded.e2e_ms", rec["e2e_ms"])]
        for k in ("start_ms", "ttft_ms", "e2e_ms"):
            if sim[k] is not None and rec[k] is not None:
                pairs.append((f"diff.{k}", sim[k] - rec[k]))
        out[it["request_id"]] = tuple((k, v) for k, v in pairs if v is not None)
    return out


def table(cmp: dict) -> str:
    """The summary as a terminal table."""
    s = cmp["summary"]

    def f(v, unit=""):
        return "n/a" if v is None else f"{v:,.2f}{unit}"

    head = ("Recorded vs simulated", "median", "p90", "max", "n")
    rows = [("Start abs error (ms)", *(f(s["start_abs_err_ms"][k]) for k in ("median", "p90", "max")), str(s["start_compared"])),
            ("TTFT abs % error", *(f(s["ttft_ape"][k], "%") for k in ("median", "p90", "max")), str(s["ttft_compared"])),
            ("E2E abs % error", *(f(s["e2e_ape"][k], "%") for k in ("median", "p90", "max")), str(s["e2e_compared"]))]
    w = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    line = "+" + "+".join("-" * (x + 2) for x in w) + "+"
    fmt = lambda r: "| " + " | ".join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) + " |"  # noqa: E731
    out = [line, fmt(head), line, *map(fmt, rows), line,
           f"Makespan error: {f(s['makespan_err_pct'], '%')}"]
    d = cmp["distribution"]

    def sg(v):
        return "n/a" if v is None else f"{v:+,.2f}%"

    out.append("Simulated vs recorded percentiles (signed error): "
               + "; ".join(f"{name} " + " ".join(f"{lab} {sg(d[key][lab]['error_pct'])}" for lab, _ in DIST_PCTS)
                           for name, key in (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("E2E", "e2e_ms"))))
    tp = d["throughput"]
    out.append(f"Throughput: {f(tp['simulated_requests_per_s'])} req/s simulated, {f(tp['recorded_requests_per_s'])} "
               f"recorded ({sg(tp['requests_error_pct'])})")
    on = cmp["error_onset"]
    if on["request_id"] is not None:
        end = "n/a" if on["end_err_ms"] is None else f"{on['end_err_ms']:+,.2f}"
        out.append(f"Error onset (> {on['threshold_ms']:g} ms): request {on['request_id']}, start "
                   f"{on['start_err_ms']:+,.2f} ms, end {end} ms off; simulated queue depth {on['queue_depth']}")
    elif s["start_compared"] == 0:
        out.append("Error onset: n/a (no request was released in the simulation: nothing compared)")
    elif s["finished"] == 0:
        out.append(f"Error onset: n/a (no request finished in the simulation: no end compared; the "
                   f"{s['start_compared']} simulated starts are within {on['threshold_ms']:g} ms)")
    elif s["finished"] < s["requests"]:
        out.append(f"Error onset: none among the compared requests (every simulated start, and the end of the "
                   f"{s['finished']} of {s['requests']} that finished, within {on['threshold_ms']:g} ms)")
    else:
        out.append(f"Error onset: none (every start and end within {on['threshold_ms']:g} ms)")
    return "\n".join(out)
