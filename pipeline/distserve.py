"""DistServe "alignment" runs (`shared/fixtures/distserve_alignment/opt-13b-sharegpt/*.exp`): real
vLLM / DistServe GPU runs with each request's measured issue, first-token and completion time.

File shape: line 1 is a Python literal (a list of dicts with single-quoted keys, so it is read
with `ast.literal_eval`, never `eval`); the following lines are a brace-delimited run summary
that is neither JSON nor Python and carries no per-request data, so it is not read.

Mapping to the normalized model, one context-free request per list element (chain None, like
a Dynamo request row without `agent_context`, hence `Generation.G3_FREE`):
- `request_id` = `<file stem>#<index in the list>`; requests are ordered by `issue_time`.
- `start_ms` / `end_ms` = `issue_time` / `complete_time` (a monotonic clock, seconds) in integer ms;
  the unrounded `ttft_ms` (first token - issue), `total_time_ms` (complete - issue) and
  `avg_itl_ms` ((complete - first token) / (output - 1)) are computed from the raw seconds.
- `input_length` = `input_tokens` = `prompt_len`, `output_tokens` = `output_len`.
  `cached_tokens` and `prefill_time_ms` are not recorded (None): TTFT here includes queueing.
- Hash ids are synthesized, one per `BLOCK_SIZE` prompt tokens, fresh for every request, so no
  two requests share a prefix: the ShareGPT prompts are unrelated conversations and the 2024
  vLLM runs had no prefix caching, so a replay must not find cache hits either.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

from .errors import TraceError
from .model import Generation, Request, Source, Trace

#: Tokens per synthesized hash id (vLLM's default KV block size, which these runs used).
BLOCK_SIZE = 16
_MAX_NS = 2 ** 63
_FIELDS = ("prompt_len", "output_len", "issue_time", "first_token_time", "complete_time")


def is_distserve(path: str) -> bool:
    return path.endswith(".exp")


def read_distserve(path: str) -> Trace:
    """One `.exp` file as a Trace (raises TraceError naming file, request and field)."""
    trace = Trace(files=[path])
    read_into(path, trace)
    return trace


def read_into(path: str, trace: Trace) -> None:
    """Append the requests of one `.exp` file to `trace` (hash ids stay unique across files)."""
    src = Source(path, 1)
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except OSError as e:
        raise TraceError(f"{path}: cannot read: {e.strerror}") from None
    try:
        items = ast.literal_eval(first.decode("utf-8").strip())
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as e:
        raise TraceError(f"{src}: not a DistServe result: line 1 must be a Python-literal list of request dicts "
                         f"({type(e).__name__})") from None
    if not isinstance(items, list) or not items:
        raise TraceError(f"{src}: not a DistServe result: line 1 must be a non-empty list of request dicts")
    stem = Path(path).name.removesuffix(".exp")
    next_hash = 1 + max((h for r in trace.requests for h in r.hashes), default=-1)
    parsed = []
    for i, d in enumerate(items):
        if not isinstance(d, dict):
            raise TraceError(f"{src}: request {i}: expected a dict, got {type(d).__name__}")
        vals = []
        for k in _FIELDS:
            v = d.get(k)
            if v is None:
                raise TraceError(f"{src}: request {i}: field `{k}` is missing")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TraceError(f"{src}: request {i}: field `{k}` must be a finite number, got {v!r}")
            if k.endswith("_time") and abs(v) * 1e9 >= _MAX_NS:
                # Perfetto timestamps are 64-bit nanoseconds: such a time cannot be drawn or replayed
                raise TraceError(f"{src}: request {i}: field `{k}` is out of range: {v!r} s is beyond 2^63 ns")
            vals.append(v)
        p, o, t_in, t_first, t_end = vals
        for k, v in (("prompt_len", p), ("output_len", o)):
            if not isinstance(v, int) or v < 1:
                raise TraceError(f"{src}: request {i}: field `{k}` must be an integer >= 1, got {v!r}")
        if not t_in <= t_first <= t_end:
            raise TraceError(f"{src}: request {i}: field `first_token_time`: times must satisfy "
                             f"issue_time <= first_token_time <= complete_time")
        parsed.append((t_in, i, p, o, t_first, t_end))
    parsed.sort()
    for t_in, i, p, o, t_first, t_end in parsed:
        nblk = -(-p // BLOCK_SIZE)
        hashes = tuple(range(next_hash, next_hash + nblk))
        next_hash += nblk
        trace.requests.append(Request(
            request_id=f"{stem}#{i}", chain_id=None, parent_chain_id=None,
            start_ms=_ms(t_in), end_ms=_ms(t_end), output_tokens=o, block_size=BLOCK_SIZE, input_length=p,
            hashes=hashes, input_tokens=p, ttft_ms=(t_first - t_in) * 1000.0,
            total_time_ms=(t_end - t_in) * 1000.0,
            avg_itl_ms=(t_end - t_first) * 1000.0 / (o - 1) if o > 1 else None,
            run_id=stem, generation=Generation.G3_FREE, source=src))
    trace.notes["DistServe requests with synthesized unshared hash ids"] += len(parsed)


def _ms(seconds: float) -> int:
    x = seconds * 1000.0
    return int(math.floor(x + 0.5))
