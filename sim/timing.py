"""How long an engine pass takes: pluggable timing models behind one small interface.

A model answers two questions per pass, in milliseconds before speedup scaling:
`prefill_ms(tokens, batch, info)` for the prefill part (tokens = Dynamo's mean-based
`k * (sum(isl)//k - sum(prefix)//k)`) and `decode_ms(active_blocks, total_blocks,
logical_tokens, batch, info)` for the decode step. `info` is a `PassInfo` carrying the request
ids in the pass; it is only built when the model sets `needs_requests = True` (a "recorded"
model replaying each request's own service time needs it; the analytic models do not, and the
engine then memoises their answers per argument, which is what keeps a pass O(1)).

The engine turns milliseconds into whole nanoseconds the way Rust's `Duration::from_secs_f64`
does (see `quantize_ns`), so a model only returns floats.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Protocol, Sequence

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.limits import MILLISECONDS


@dataclass(frozen=True, slots=True)
class PassInfo:
    """Per-request detail of one pass, for timing models that need it (`needs_requests`)."""

    worker: int
    prefill_request_ids: tuple[str, ...]
    prefill_tokens: tuple[int, ...]  # tokens each prefill participant computes this pass
    prefill_prefix: tuple[int, ...]  # tokens each participant had computed/cached before
    decode_request_ids: tuple[str, ...]


class TimingModel(Protocol):
    """Durations of the two halves of an engine pass, in ms (unscaled)."""

    #: True when the answer depends on the per-request `PassInfo` (disables memoisation).
    needs_requests: bool
    #: "physical" (active blocks / G, ai-dynamo 1.4.2) or "logical" (sum of context lengths).
    decode_input: str

    def prefill_ms(self, tokens: int, batch: int, info: PassInfo | None) -> float: ...

    def decode_ms(self, active_blocks: int, total_blocks: int, logical_tokens: int, batch: int,
                  info: PassInfo | None) -> float: ...


def _prefill_poly(t: int) -> float:
    # Grouped exactly as 1.4.2 evaluates it; the grouping changes the last bit.
    return 4.209989e-7 * (t * t) + 1.518344e-2 * t + 16.50142


def _decode_poly(u: float) -> float:
    return max(1.0, -25.74 * (u * u) + 54.01 * u + 5.74)


class PolynomialTiming:
    """Dynamo's uncalibrated default (dynamo-replay.md §5.3).

    `decode="physical"` is ai-dynamo 1.4.2: u = physically active KV blocks / num_gpu_blocks,
    counting blocks of requests still in prefill and shared blocks once. `decode="logical"` is the
    post-#12583 variant: u = sum of the decode-ready requests' context lengths / pool tokens,
    clamped at 1.
    """

    needs_requests = False

    def __init__(self, decode: str = "physical", block_size: int = 64) -> None:
        if decode not in ("physical", "logical"):
            raise TraceError(f"error: timing decode variant must be physical or logical, got {decode!r}")
        self.decode_input = decode
        self.block_size = block_size

    def prefill_ms(self, tokens: int, batch: int, info: PassInfo | None) -> float:
        return _prefill_poly(tokens) if tokens > 0 else 0.0

    def decode_ms(self, active_blocks: int, total_blocks: int, logical_tokens: int, batch: int,
                  info: PassInfo | None) -> float:
        if self.decode_input == "physical":
            u = active_blocks / total_blocks
        else:
            u = min(1.0, logical_tokens / (total_blocks * self.block_size))
        return _decode_poly(u)


class FixedTiming:
    """1.6's `timing_model: {type: fixed, prefill_ms, decode_ms}`: a pass with prompt work costs
    `prefill_ms`, a decode step `decode_ms`, whatever the batch (AISimulate's test model)."""

    needs_requests = False
    decode_input = "physical"  # constant: any memo key will do, and the decode-run fast paths stay exact

    def __init__(self, prefill_ms: float, decode_ms: float) -> None:
        self.p = float(prefill_ms)
        self.d = float(decode_ms)

    def prefill_ms(self, tokens: int, batch: int, info: PassInfo | None) -> float:
        return self.p

    def decode_ms(self, active_blocks: int, total_blocks: int, logical_tokens: int, batch: int,
                  info: PassInfo | None) -> float:
        return self.d


class TableTiming:
    """Profile-table timing (Dynamo's "interpolated" model): prefill by 1-D linear interpolation
    (with linear extrapolation) of TTFT over prefill tokens; decode by bilinear interpolation of
    ITL over (active KV tokens, mean context length), floored at 1 ms."""

    needs_requests = False
    decode_input = "physical"

    def __init__(self, prefill_tokens: Sequence[float], prefill_ms: Sequence[float],
                 decode_kv_tokens: Sequence[float], decode_context: Sequence[float],
                 decode_itl_ms: Sequence[Sequence[float]], block_size: int = 64) -> None:
        px = _axis("prefill_tokens", prefill_tokens)
        py = _numbers("prefill_ms", prefill_ms)
        if len(px) < 2 or len(px) != len(py):
            raise TraceError("error: timing table needs >= 2 matching prefill points")
        kx = _axis("decode_kv_tokens", decode_kv_tokens)
        cx = _axis("decode_context", decode_context)
        if not isinstance(decode_itl_ms, (list, tuple)) or len(decode_itl_ms) != len(kx) or not kx or not cx or any(
                not isinstance(r, (list, tuple)) or len(r) != len(cx) for r in decode_itl_ms):
            raise TraceError("error: timing table decode grid must be len(kv_tokens) x len(context)")
        for r in decode_itl_ms:
            _numbers("decode_itl_ms", r)
        self.px = list(prefill_tokens)
        self.py = list(prefill_ms)
        self.kx = list(decode_kv_tokens)
        self.cx = list(decode_context)
        self.grid = [list(r) for r in decode_itl_ms]
        self.block_size = block_size

    @staticmethod
    def _seg(xs: list[float], x: float) -> tuple[int, float]:
        if len(xs) == 1:
            return 0, 0.0
        i = min(max(bisect.bisect_right(xs, x) - 1, 0), len(xs) - 2)
        return i, (x - xs[i]) / (xs[i + 1] - xs[i])

    def prefill_ms(self, tokens: int, batch: int, info: PassInfo | None) -> float:
        if tokens <= 0:
            return 0.0
        i, f = self._seg(self.px, tokens)
        return max(0.0, self.py[i] + f * (self.py[i + 1] - self.py[i]))

    def decode_ms(self, active_blocks: int, total_blocks: int, logical_tokens: int, batch: int,
                  info: PassInfo | None) -> float:
        kv = active_blocks * self.block_size
        ctx = logical_tokens / batch if batch else 0.0
        i, fi = self._seg(self.kx, kv)
        j, fj = self._seg(self.cx, ctx)
        g = self.grid
        i1 = min(i + 1, len(g) - 1)
        j1 = min(j + 1, len(g[0]) - 1)
        a = g[i][j] + fj * (g[i][j1] - g[i][j])
        b = g[i1][j] + fj * (g[i1][j1] - g[i1][j])
        return max(1.0, a + fi * (b - a))


def _numbers(key: str, v: object) -> list[float]:
    """A table row: a list of finite numbers >= 0 (milliseconds or tokens, within the clock's range)."""
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise TraceError(f"error: timing table: `{key}` must be a list of numbers")
    for x in v:
        MILLISECONDS.check(x, f"error: timing table: `{key}`")
    return [float(x) for x in v]


def _axis(key: str, v: object) -> list[float]:
    """An interpolation axis: numbers strictly increasing (equal neighbours would divide by zero)."""
    xs = _numbers(key, v)
    if any(b <= a for a, b in zip(xs, xs[1:])):
        what = "prefill tokens" if key == "prefill_tokens" else f"`{key}`"
        raise TraceError(f"error: timing table {what} must be increasing")
    return xs


def from_secs_f64_ns(secs: float) -> int:
    """Rust `Duration::from_secs_f64(secs)` in nanoseconds: the exact binary value times 1e9,
    rounded to nearest."""
    if not math.isfinite(secs) or secs < 0:
        raise TraceError(f"error: timing model produced an invalid duration {secs!r} s")
    num, den = secs.as_integer_ratio()
    q, r = divmod(num * 1_000_000_000, den)
    if 2 * r > den or (2 * r == den and q & 1):
        q += 1
    return q


def ns_to_secs_f64(ns: int) -> float:
    """Rust `Duration::as_secs_f64`: secs + nanos / 1e9."""
    s, n = divmod(ns, 1_000_000_000)
    return float(s) + float(n) / 1e9


def quantize_ms(ms: float, speedup: float) -> float:
    """A modelled duration in ms, as 1.4.2 turns it into clock ms: nanosecond quantisation, then
    (when speedup is not 0 or 1) `Duration::div_f64(speedup)` which rounds a second time."""
    ns = from_secs_f64_ns(ms / 1000.0)
    if speedup != 0.0 and speedup != 1.0:
        ns = from_secs_f64_ns(ns_to_secs_f64(ns) / speedup)
    return ns_to_secs_f64(ns) * 1000.0


def make_timing(name: str, *, block_size: int, decode: str = "physical",
                table: dict | None = None) -> TimingModel:
    """Build a timing model by CLI name: `poly` (Dynamo's default) or `table` (a JSON profile with
    keys prefill_tokens, prefill_ms, decode_kv_tokens, decode_context, decode_itl_ms)."""
    if name in ("poly", "polynomial"):
        return PolynomialTiming(decode, block_size)
    if name == "table":
        if table is None:
            raise TraceError("error: --timing table needs --timing-table FILE")
        if not isinstance(table, dict):
            raise TraceError("error: timing table: expected a JSON object with keys prefill_tokens, prefill_ms, "
                             "decode_kv_tokens, decode_context, decode_itl_ms")
        try:
            return TableTiming(table["prefill_tokens"], table["prefill_ms"], table["decode_kv_tokens"],
                               table["decode_context"], table["decode_itl_ms"], block_size)
        except KeyError as e:
            raise TraceError(f"error: timing table: missing key {e.args[0]}") from None
    raise TraceError(f"error: unknown timing model {name!r} (poly, table)")
