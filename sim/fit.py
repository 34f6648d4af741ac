"""A mock-worker timing model fitted from a recorded run (`--timing fit`).

Two closed forms, the shape DistServe's simulator profiles (peers.md §2), fitted by weighted
least squares on the recorded requests themselves:

- prefill pass time  P(T) = p0 + p1*T + p2*T^2, T = uncached prompt tokens in the pass;
- decode step time   D(B, C) = d0 + d1*B + d2*C, B = requests decoding, C = their summed context.

What is fitted against what (one request = one point):
- Prefill: Dynamo's `prefill_time_ms` when recorded; otherwise the recorded TTFT minus the wait
  we can infer (the rest of the decode step running when it arrived, half a step on average).
  Requests that arrived while another request was still waiting for its first token are left
  out: their TTFT is mostly someone else's prefill. T = `input_tokens` - `cached_tokens`.
- Decode: (completion - first token) spread over its `output_tokens - 1` steps, after removing
  the prefills of other requests that ran while it was decoding (an engine without chunked
  prefill stalls decoding for them: vLLM 0.x, and the engine's `vllm_v0` scheduler, run them as
  prefill-only steps; the Dynamo scheduler's additive pass charges the same). B and C are
  the recorded concurrency time-averaged over its decode window: every request between its first
  token and completion counts, with a context of prompt + tokens generated so far (interpolated
  linearly). Requests are grouped by recorded decode worker when the trace says which.
- Both fits weight points by 1/y^2 (relative error) for prefill and by steps for decode, and drop
  a negative curvature / per-request term (refit without it) so the model stays monotone.
Two passes: the first prefill fit ignores the decode residual, the decode fit then gives it.
The prefill target (TTFT minus the expected wait for the running step) holds no decode step of
its own: it matches the `vllm_v0` scheduler, which emits the first token at the end of a
prefill-only step. Under the Dynamo scheduler the pass appends a decode step before the first
token; `prefill_end_first_tokens` reads the TTFT at the prefill's end instead.

Decode depends on the batch only through d1; with d1 == 0 the model declares
`needs_requests = False` and the engine memoises it per context size (fast path); otherwise every
pass asks it (correct, slower), because the engine's memo key is the context alone.
"""

from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass, field

import orjson

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.io import atomic_output
from trace_pipe.pipeline.model import Trace

from .percentiles import percentile
from .result import SimResult
from .timing import PassInfo, TimingModel, quantize_ms

SCHEMA = "trace_pipe.fitted_timing"
VERSION = 1
_PREFILL_KEYS = ("intercept_ms", "per_token_ms", "per_token_sq_ms")
_DECODE_KEYS = ("intercept_ms", "per_request_ms", "per_context_token_ms")


@dataclass(frozen=True, slots=True)
class FittedTiming:
    """Implements `sim.timing.TimingModel` with fitted coefficients (ms)."""

    prefill: tuple[float, float, float]  # p0, p1 (per token), p2 (per token^2)
    decode: tuple[float, float, float]  # d0, d1 (per decoding request), d2 (per context token)
    fit_error: dict = field(default_factory=dict, compare=False)
    source: dict = field(default_factory=dict, compare=False)  # what it was fitted on

    decode_input = "logical"

    @property
    def needs_requests(self) -> bool:  # type: ignore[override]
        return self.decode[1] != 0.0

    @property
    def coefficients(self) -> dict:
        return {"prefill": dict(zip(_PREFILL_KEYS, self.prefill)), "decode": dict(zip(_DECODE_KEYS, self.decode))}

    def prefill_ms(self, tokens: int, batch: int, info: PassInfo | None) -> float:
        if tokens <= 0:
            return 0.0
        p0, p1, p2 = self.prefill
        return max(0.0, p0 + p1 * tokens + p2 * tokens * tokens)

    def decode_ms(self, active_blocks: int, total_blocks: int, logical_tokens: int, batch: int,
                  info: PassInfo | None) -> float:
        d0, d1, d2 = self.decode
        return max(1.0, d0 + d1 * batch + d2 * logical_tokens)

    def describe(self) -> list[str]:
        p0, p1, p2 = self.prefill
        d0, d1, d2 = self.decode
        fe = self.fit_error
        out = [f"fitted timing ({self.source.get('requests', '?')} requests"
               + (f" from {self.source['files']}" if self.source.get("files") else "") + ")",
               f"  prefill ms = {p0:.4g} + {p1:.5g}*T + {p2:.4g}*T^2   (T = uncached prompt tokens in the pass)",
               f"  decode  ms = {d0:.4g} + {d1:.4g}*B + {d2:.4g}*C   (B = decoding requests, C = their context tokens)"]
        for part in ("prefill", "decode"):
            e = fe.get(part)
            if e:
                out.append(f"  {part} fit: n={e['n']}  R^2={e['r2']:.3f}  median APE={100 * e['median_ape']:.1f}%  "
                           f"p90 APE={100 * e['p90_ape']:.1f}%")
        return out

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "version": VERSION, **self.coefficients, "fit_error": self.fit_error,
                "source": self.source}

    @classmethod
    def from_json(cls, d: object, where: str = "timing file") -> "FittedTiming":
        if not isinstance(d, dict):
            raise TraceError(f"{where}: expected a JSON object")
        if d.get("schema") != SCHEMA:
            raise TraceError(f"{where}: field `schema`: expected {SCHEMA!r}, got {d.get('schema')!r}")
        if d.get("version") != VERSION:
            raise TraceError(f"{where}: field `version`: expected {VERSION}, got {d.get('version')!r}")

        def coeffs(part: str, keys: tuple[str, ...]) -> tuple[float, float, float]:
            sub = d.get(part)
            if not isinstance(sub, dict):
                raise TraceError(f"{where}: field `{part}`: expected an object with {', '.join(keys)}")
            vals = []
            for k in keys:
                v = sub.get(k)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise TraceError(f"{where}: field `{part}.{k}`: expected a finite number, got {v!r}")
                vals.append(float(v))
            return vals[0], vals[1], vals[2]

        fe = d.get("fit_error", {})
        src = d.get("source", {})
        if not isinstance(fe, dict):
            raise TraceError(f"{where}: field `fit_error`: expected an object")
        if not isinstance(src, dict):
            raise TraceError(f"{where}: field `source`: expected an object")
        return cls(coeffs("prefill", _PREFILL_KEYS), coeffs("decode", _DECODE_KEYS), fe, src)


def save_timing_file(model: FittedTiming, path: str | os.PathLike) -> None:
    with atomic_output(path) as f:
        f.write(orjson.dumps(model.to_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


def load_timing_file(path: str | os.PathLike) -> FittedTiming:
    try:
        raw = open(path, "rb").read()
    except OSError as e:
        raise TraceError(f"{path}: cannot read timing file: {e.strerror}") from None
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise TraceError(f"{path}: invalid JSON: {e}") from None
    return FittedTiming.from_json(d, str(path))


# -- the fit ---------------------------------------------------------------------------------

@dataclass(slots=True)
class _Obs:
    """One recorded request, times in ms on the trace's clock."""

    issue: float
    first: float
    end: float
    uncached: int
    context0: int  # prompt tokens (context when decoding starts)
    out: int
    group: object
    prefill_rec: float | None  # Dynamo's prefill_time_ms
    source: str


def _observations(trace: Trace) -> tuple[list[_Obs], dict[str, int]]:
    obs = []
    skipped: dict[str, int] = {}
    for r in trace.requests:
        prompt = r.input_tokens if r.input_tokens is not None else r.input_length
        if r.ttft_ms is None or prompt is None or r.output_tokens is None:
            key = "without ttft_ms, prompt length or output_tokens"
            skipped[key] = skipped.get(key, 0) + 1
            continue
        cached = r.cached_tokens or 0
        issue = float(r.start_ms)
        end = issue + r.total_time_ms if r.total_time_ms is not None else float(r.end_ms)
        first = issue + r.ttft_ms
        if r.avg_itl_ms is not None and r.output_tokens > 1 and r.total_time_ms is None:
            end = first + r.avg_itl_ms * (r.output_tokens - 1)
        if not issue <= first <= end + 1e-6:
            skipped["with inconsistent times"] = skipped.get("with inconsistent times", 0) + 1
            continue
        w = r.worker
        group = (w.decode_worker_id, w.decode_dp_rank) if w is not None and w.decode_worker_id is not None else None
        obs.append(_Obs(issue, first, max(first, end), max(0, prompt - cached), prompt, r.output_tokens, group,
                        r.prefill_time_ms, str(r.source) if r.source else r.request_id))
    return obs, skipped


class _Load:
    """Recorded decode load of one worker group as integrable functions of time: the number of
    requests decoding, n(t), and their summed context, c(t) (piecewise linear)."""

    def __init__(self, obs: list[_Obs]) -> None:
        # each decode window contributes n += 1 and c += a + r*t on [first, end)
        ev: dict[float, list[float]] = {}
        for o in obs:
            if o.end <= o.first:
                continue
            rate = (o.out - 1) / (o.end - o.first) if o.out > 1 else 0.0
            a = o.context0 + 1 - rate * o.first
            for t, s in ((o.first, 1.0), (o.end, -1.0)):
                e = ev.setdefault(t, [0.0, 0.0, 0.0])
                e[0] += s
                e[1] += s * a
                e[2] += s * rate
        self.ts = sorted(ev)
        n = ca = cr = 0.0
        self.state = []  # (n, c_intercept, c_slope) on [ts[k], ts[k+1])
        self.cum_n = [0.0]
        self.cum_c = [0.0]
        for k, t in enumerate(self.ts):
            dn, da, dr = ev[t]
            n += dn
            ca += da
            cr += dr
            self.state.append((n, ca, cr))
            if k + 1 < len(self.ts):
                t1 = self.ts[k + 1]
                self.cum_n.append(self.cum_n[-1] + n * (t1 - t))
                self.cum_c.append(self.cum_c[-1] + ca * (t1 - t) + cr * (t1 * t1 - t * t) / 2)

    def _integral(self, t: float) -> tuple[float, float]:
        k = bisect.bisect_right(self.ts, t) - 1
        if k < 0:
            return 0.0, 0.0
        if k >= len(self.cum_n):
            k = len(self.cum_n) - 1
        t0 = self.ts[k]
        n, ca, cr = self.state[k]
        return self.cum_n[k] + n * (t - t0), self.cum_c[k] + ca * (t - t0) + cr * (t * t - t0 * t0) / 2

    def mean(self, lo: float, hi: float) -> tuple[float, float]:
        """Time-averaged (n, c) over [lo, hi)."""
        if hi <= lo:
            k = bisect.bisect_right(self.ts, lo) - 1
            if k < 0:
                return 0.0, 0.0
            n, ca, cr = self.state[k]
            return n, ca + cr * lo
        n0, c0 = self._integral(lo)
        n1, c1 = self._integral(hi)
        return (n1 - n0) / (hi - lo), (c1 - c0) / (hi - lo)

    def at(self, t: float) -> tuple[float, float]:
        return self.mean(t, t)


def _wls(xs: list[tuple[float, ...]], ys: list[float], ws: list[float]) -> list[float]:
    """Weighted least squares by the normal equations (a handful of columns: plain Python)."""
    m = len(xs[0])
    a = [[0.0] * m for _ in range(m)]
    b = [0.0] * m
    for x, y, w in zip(xs, ys, ws):
        for i in range(m):
            wx = w * x[i]
            b[i] += wx * y
            for j in range(m):
                a[i][j] += wx * x[j]
    # Gauss-Jordan with partial pivoting
    for c in range(m):
        p = max(range(c, m), key=lambda r: abs(a[r][c]))
        if abs(a[p][c]) < 1e-300:
            raise TraceError("error: timing fit: the recorded requests do not determine the model "
                             "(all prompts or all batch sizes alike?)")
        a[c], a[p] = a[p], a[c]
        b[c], b[p] = b[p], b[c]
        for r in range(m):
            if r != c and a[r][c] != 0.0:
                f = a[r][c] / a[c][c]
                for j in range(c, m):
                    a[r][j] -= f * a[c][j]
                b[r] -= f * b[c]
    return [b[i] / a[i][i] for i in range(m)]


def _fit_nonneg(xs: list[tuple[float, ...]], ys: list[float], ws: list[float], optional: list[int]) -> list[float]:
    """WLS, then drop (zero) the optional columns whose coefficient came out negative, refit."""
    cols = list(range(len(xs[0])))
    while True:
        sub = [tuple(x[i] for i in cols) for x in xs]
        beta = _wls(sub, ys, ws)
        full = [0.0] * len(xs[0])
        for i, b in zip(cols, beta):
            full[i] = b
        bad = [i for i in cols if i in optional and full[i] < 0]
        if not bad:
            return full
        cols.remove(bad[0])


def _errors(pred: list[float], ys: list[float]) -> dict:
    n = len(ys)
    mean = math.fsum(ys) / n
    ss_tot = math.fsum((y - mean) ** 2 for y in ys)
    ss_res = math.fsum((y - p) ** 2 for y, p in zip(ys, pred))
    apes = sorted(abs(p - y) / abs(y) for y, p in zip(ys, pred) if y != 0)
    return {"n": n, "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0,
            "median_ape": percentile(apes, 0.5) if apes else 0.0,
            "p90_ape": percentile(apes, 0.9) if apes else 0.0,
            "mean_abs_ms": math.fsum(abs(y - p) for y, p in zip(ys, pred)) / n}


DECODE_TERMS = ("auto", "batch+context", "context", "batch")


def _corr(a: list[float], b: list[float]) -> float:
    n = len(a)
    ma, mb = math.fsum(a) / n, math.fsum(b) / n
    va = math.fsum((x - ma) ** 2 for x in a)
    vb = math.fsum((y - mb) ** 2 for y in b)
    # a constant column (to rounding: a time-weighted batch size of 1 everywhere comes out as
    # 0.9999999999999998 here and there) has nothing to split either
    if va <= 1e-9 * n * max(1.0, ma * ma) or vb <= 1e-9 * n * max(1.0, mb * mb):
        return 1.0
    return math.fsum((x - ma) * (y - mb) for x, y in zip(a, b)) / math.sqrt(va * vb)


def fit_timing(trace: Trace, *, decode_terms: str = "auto", min_points: int = 5,
               disaggregated: bool = False, split_latency: bool = False,
               decode_slopes: tuple[float, float] | None = None) -> FittedTiming:
    """Fit prefill and decode timing from a trace's recorded per-request times.

    `decode_terms` picks the decode columns besides the intercept. "auto" keeps both unless the
    recorded batch size and context are nearly collinear (|r| > 0.9, as in any run where prompts
    are drawn from one distribution), where their split is not identifiable and extrapolates
    badly; it then keeps context alone (a decode step is memory bound: its cost grows with the KV
    it reads).

    `disaggregated`: the run served prefill and decode on separate workers (DistServe): a prompt
    never waits for a decode step to end, and decoding never stalls for another request's prefill,
    so neither is subtracted (the prefill target is the uncontended TTFT itself, the decode
    target the plain time per output token).

    `split_latency`: part of a measured TTFT is latency the engine is not busy for (the request
    reaching it, the token reaching the client); the fit's intercept holds it, so a replay that
    charges the whole intercept as engine time over-states how long each prompt holds the engine,
    and with it the queueing at higher rates. It is measured on the same run: when a request
    arrives while another still waits for its first token, the gap between their first tokens is
    its prefill alone (the shared latency cancels), so the median of (fitted prefill - gap) over
    those pairs is the latency (`engine_latency_ms`; 0 unless at least 5 pairs and three quarters of
    them show it, at most the intercept). The
    intercept is lowered by it, and a replay adds it to every request's TTFT and E2E (the same as
    each arrival reaching the engine that much later). `sim.fit.engine_latency_ms` reads it.

    `decode_slopes` = (per decoding request, per context token): the decode step's growth taken as
    given (a kernel profile of the same engine and GPU, e.g. DistServe's own), only the intercept
    fitted (the step-weighted mean of the rest). A run at one rate spans a narrow band of batch
    sizes in which batch and context move together, so its own slope is the least certain part of
    the fit and the one every higher rate extrapolates; `decode_terms` is then not used."""
    if decode_terms not in DECODE_TERMS:
        raise TraceError(f"error: decode_terms must be one of {', '.join(DECODE_TERMS)}, got {decode_terms!r}")
    obs, skipped = _observations(trace)
    if len(obs) < min_points:
        raise TraceError(f"error: --timing fit needs recorded per-request times (ttft_ms and completion) for at least "
                         f"{min_points} requests; this trace has {len(obs)}")
    groups: dict[object, list[_Obs]] = {}
    for o in obs:
        groups.setdefault(o.group, []).append(o)
    loads = {g: _Load(v) for g, v in groups.items()}

    # Contention: another request of the group was waiting for its first token when this one arrived.
    contended = set()
    for g, v in groups.items():
        order = sorted(range(len(v)), key=lambda i: (v[i].issue, v[i].first))
        latest_first = -math.inf
        for i in order:
            o = v[i]
            if latest_first > o.issue:
                contended.add(id(o))
            latest_first = max(latest_first, o.first)

    decode = (0.0, 0.0, 0.0)
    prefill = (0.0, 0.0, 0.0)
    perr = derr = None
    for _round in range(2):
        # prefill
        px, py, pw = [], [], []
        for o in obs:
            if o.prefill_rec is not None:
                y = o.prefill_rec
            else:
                if id(o) in contended:
                    continue
                n, c = loads[o.group].at(o.issue)
                y = o.first - o.issue
                if n > 0 and _round and not disaggregated:
                    y -= 0.5 * max(1.0, decode[0] + decode[1] * n + decode[2] * c)
            if y <= 0 or o.uncached <= 0:
                continue
            t = float(o.uncached)
            px.append((1.0, t, t * t))
            py.append(y)
            pw.append(1.0 / (y * y))
        if len(py) < min_points:
            raise TraceError(f"error: --timing fit: only {len(py)} requests have a usable prefill time "
                             f"(need {min_points})")
        beta = _fit_nonneg(px, py, pw, optional=[2])
        prefill = (beta[0], beta[1], beta[2])
        pmodel = FittedTiming(prefill, decode)
        perr = _errors([pmodel.prefill_ms(int(x[1]), 1, None) for x in px], py)

        # decode
        dx, dy, dw = [], [], []
        for g, v in groups.items():
            firsts = sorted((o.first, o.uncached) for o in v)
            fts = [f for f, _ in firsts]
            cum = [0.0]
            for _, u in firsts:
                cum.append(cum[-1] + pmodel.prefill_ms(u, 1, None))
            load = loads[g]
            for o in v:
                steps = o.out - 1
                if steps < 1 or o.end <= o.first:
                    continue
                lo = bisect.bisect_right(fts, o.first)
                hi = bisect.bisect_left(fts, o.end)
                stall = cum[hi] - cum[lo] if hi > lo and not disaggregated else 0.0
                y = (o.end - o.first - stall) / steps
                if y <= 0:
                    continue
                n, c = load.mean(o.first, o.end)
                dx.append((1.0, n, c))
                dy.append(y)
                dw.append(float(steps))
        if len(dy) < min_points:
            raise TraceError(f"error: --timing fit: only {len(dy)} requests have a usable decode time "
                             f"(need {min_points})")
        if decode_slopes is not None:
            terms = "given slopes"
            b1, b2 = decode_slopes
            rest = [y - b1 * x[1] - b2 * x[2] for x, y in zip(dx, dy)]
            decode = (math.fsum(r * w for r, w in zip(rest, dw)) / math.fsum(dw), float(b1), float(b2))
        else:
            terms = decode_terms
            if terms == "auto":
                terms = "context" if abs(_corr([x[1] for x in dx], [x[2] for x in dx])) > 0.9 else "batch+context"
            keep = {"batch+context": (0, 1, 2), "context": (0, 2), "batch": (0, 1)}[terms]
            sub = [tuple(x[i] for i in keep) for x in dx]
            beta_k = _fit_nonneg(sub, dy, dw, optional=list(range(1, len(keep))))
            beta = [0.0, 0.0, 0.0]
            for i, b in zip(keep, beta_k):
                beta[i] = b
            decode = (beta[0], beta[1], beta[2])
        dmodel = FittedTiming(prefill, decode)
        derr = _errors([dmodel.decode_ms(0, 1, int(x[2]), int(round(x[1])), None) for x in dx], dy)

    if split_latency:
        lat = _engine_latency(obs, FittedTiming(prefill, decode), min_points)
        prefill = (prefill[0] - lat, prefill[1], prefill[2])
    fe = {"prefill": perr, "decode": derr, "decode_terms": terms, "disaggregated": disaggregated, "skipped": skipped,
          "contended_requests_excluded": sum(1 for o in obs if id(o) in contended and o.prefill_rec is None)}
    src = {"requests": len(trace.requests), "files": [os.path.basename(f) for f in trace.files]}
    if split_latency:
        fe["engine_latency_ms"] = lat
    return FittedTiming(prefill, decode, fe, src)


def engine_latency_ms(model: TimingModel) -> float:
    """The latency a `split_latency` fit took out of the prefill intercept (0 for any other model):
    add it to each simulated TTFT and E2E."""
    fe = getattr(model, "fit_error", None)
    return float(fe.get("engine_latency_ms", 0.0)) if isinstance(fe, dict) else 0.0


def _engine_latency(obs: list[_Obs], model: FittedTiming, min_points: int) -> float:
    """Median of (fitted prefill - gap between first tokens) over requests that arrived while the
    latest earlier first token was still to come and got theirs strictly after it."""
    diffs = []
    last = None
    for o in sorted(obs, key=lambda o: (o.issue, o.first)):
        if last is not None and o.issue < last.first and o.first > last.first + 1.0:
            diffs.append(model.prefill_ms(o.uncached, 1, None) - (o.first - last.first))
        if last is None or o.first > last.first:
            last = o
    diffs.sort()
    # only a latency most pairs show: with the lower quartile at or below 0 it is not told apart
    # from the spread of the prefill fit itself (vllm-100-1.exp: 14 pairs, quartiles -0.1 and 5.9 ms)
    if len(diffs) < min_points or percentile(diffs, 0.25) <= 0.0:
        return 0.0
    return min(percentile(diffs, 0.5), model.prefill[0])


def prefill_end_first_tokens(res: SimResult, model: TimingModel) -> list[float | None]:
    """Each request's first-token time read at the end of the prefill part of its first pass.

    Engines without mixed batches (vLLM 0.x) sample the first token at the end of a prefill-only
    step; the Dynamo scheduler appends a decode step to the pass and emits it at the pass end.
    (The `vllm_v0` scheduler runs prefill-only steps and needs no such read-out.) Running requests are stalled by prefill + decode either way, so this read-out is the
    only difference. Recomputes the pass's prefill time from its participants the way the engine
    does (k * (sum(isl) // k - sum(prefix) // k) tokens, ns-quantised); None when a request never
    prefilled."""
    passes: dict[tuple, list] = {}
    for r in res.requests:
        for c in r.prefill_chunks:
            passes.setdefault((r.worker, c.start_ms, c.end_ms), []).append((r, c))
    out: list[float | None] = []
    speed = 1.0
    for r in res.requests:
        if not r.prefill_chunks or r.first_token_ms is None:
            out.append(None)
            continue
        done = 0  # prompt tokens computed before the chunk that completed the prompt
        for c in r.prefill_chunks:
            if done + c.tokens >= r.input_length:
                break
            done += c.tokens
        parts = passes[(r.worker, c.start_ms, c.end_ms)]
        k = len(parts)
        s_isl = s_pre = 0
        for rr, cc in parts:
            pre = _prefix_before(rr, cc)
            s_isl += min(pre + cc.tokens, rr.input_length)
            s_pre += pre
        t = k * (s_isl // k - s_pre // k)
        out.append(min(r.first_token_ms, c.start_ms + quantize_ms(model.prefill_ms(t, k, None), speed)))
    return out


def _prefix_before(r, chunk) -> int:
    """Prompt tokens `r` had computed before `chunk` (earlier chunks since its last admission;
    prefix-cache hits are not in the record, so this assumes none, as in runs without caching)."""
    pre = 0
    for c in r.prefill_chunks:
        if c is chunk:
            return pre
        pre = pre + c.tokens if pre + c.tokens < r.input_length else 0  # a re-admission restarts
    return pre
