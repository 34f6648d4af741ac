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
  vLLM runs had no prefix caching, so a replay must not find cache hits either. Each request
  keeps them as a `range` (consecutive ids), a few dozen bytes whatever the prompt length.

Reading is streamed: line 1 is read in chunks and evaluated one request dict at a time, so
memory stays at about the size of the requests read (a whole-line `ast.literal_eval` built a
syntax tree of ~120 times the file's size). A request is a flat dict (no braces inside it).
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

from .errors import TraceError
from .limits import TOKENS
from .model import Generation, Request, Source, Trace

#: Tokens per synthesized hash id (vLLM's default KV block size, which these runs used).
BLOCK_SIZE = 16
_MAX_NS = 2 ** 63
_FIELDS = ("prompt_len", "output_len", "issue_time", "first_token_time", "complete_time")
_CHUNK = 1 << 20
_MAX_DICT = 1 << 16  # a request dict is ~200 bytes; beyond this it is not one (and cannot grow unbounded)
_DICT = re.compile(rb"\{[^{}\n]*\}")
_SPACE = re.compile(rb"[ \t\r\f\v]*")
_NOT_A_RESULT = "not a DistServe result: line 1 must be a Python-literal list of request dicts"


def is_distserve(path: str) -> bool:
    return path.endswith(".exp")


def read_distserve(path: str) -> Trace:
    """One `.exp` file as a Trace (raises TraceError naming file, request and field)."""
    trace = Trace(files=[path])
    read_into(path, trace)
    return trace


def _dict_texts(f, src: Source):
    """Each request dict of line 1's list, as its source text, read `_CHUNK` bytes at a time."""
    buf = b""
    pos = 0
    eol = False  # line 1 is all in `buf`

    def more() -> bool:
        nonlocal buf, pos, eol
        if eol:
            return False
        chunk = f.read(_CHUNK)
        cut = chunk.find(b"\n")
        if cut >= 0 or not chunk:
            eol = True
            chunk = chunk[:cut] if cut >= 0 else chunk
        buf = buf[pos:] + chunk
        pos = 0
        return True

    def skip_space() -> bytes:
        nonlocal pos
        while True:
            pos = _SPACE.match(buf, pos).end()
            if pos < len(buf) or not more():
                return buf[pos:pos + 1]

    if skip_space() != b"[":
        raise TraceError(f"{src}: {_NOT_A_RESULT}")
    pos += 1
    i = 0
    while True:
        c = skip_space()
        if c == b"]":
            break
        if c != b"{":
            raise TraceError(f"{src}: {_NOT_A_RESULT}" if c == b"" else
                             f"{src}: request {i}: expected a dict of numbers, got {c.decode('latin-1')!r}...")
        while (m := _DICT.match(buf, pos)) is None:
            if buf.find(b"}", pos) >= 0:  # a `{` before this dict's first `}`
                raise TraceError(f"{src}: request {i}: expected a flat dict of numbers (no nested braces)")
            if len(buf) - pos > _MAX_DICT:
                raise TraceError(f"{src}: request {i}: longer than {_MAX_DICT:,} bytes: not a request dict")
            if not more():
                raise TraceError(f"{src}: request {i}: the dict is not closed before the end of line 1")
        yield i, m.group()
        pos = m.end()
        i += 1
        c = skip_space()
        if c == b",":
            pos += 1
        elif c != b"]":
            raise TraceError(f"{src}: {_NOT_A_RESULT}: expected `,` or `]` after request {i - 1}")
    pos += 1
    if skip_space() != b"":
        raise TraceError(f"{src}: {_NOT_A_RESULT}: text after the closing `]`")


def _request_dict(text: bytes, src: Source, i: int) -> dict:
    try:
        d = ast.literal_eval(text.decode("utf-8"))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as e:
        raise TraceError(f"{src}: request {i}: not a Python-literal dict ({type(e).__name__})") from None
    if not isinstance(d, dict):  # e.g. a set literal
        raise TraceError(f"{src}: request {i}: expected a dict, got {type(d).__name__}")
    return d


def _next_hash(trace: Trace) -> int:
    top = -1
    for r in trace.requests:
        h = r.hashes
        if len(h):
            top = max(top, h[-1] if type(h) is range else max(h))
    return top + 1


def read_into(path: str, trace: Trace) -> None:
    """Append the requests of one `.exp` file to `trace` (hash ids stay unique across files)."""
    src = Source(path, 1)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise TraceError(f"{path}: cannot read: {e.strerror}") from None
    parsed = []
    with f:
        try:
            for i, text in _dict_texts(f, src):
                parsed.append(_checked(_request_dict(text, src, i), src, i))
        except OSError as e:
            raise TraceError(f"{path}: cannot read: {e.strerror}") from None
    if not parsed:
        raise TraceError(f"{src}: not a DistServe result: line 1 must be a non-empty list of request dicts")
    stem = Path(path).name.removesuffix(".exp")
    next_hash = _next_hash(trace)
    parsed.sort()
    for t_in, i, p, o, t_first, t_end in parsed:
        nblk = -(-p // BLOCK_SIZE)
        hashes = range(next_hash, next_hash + nblk)
        next_hash += nblk
        trace.requests.append(Request(
            request_id=f"{stem}#{i}", chain_id=None, parent_chain_id=None,
            start_ms=_ms(t_in), end_ms=_ms(t_end), output_tokens=o, block_size=BLOCK_SIZE, input_length=p,
            hashes=hashes, input_tokens=p, ttft_ms=(t_first - t_in) * 1000.0,
            total_time_ms=(t_end - t_in) * 1000.0,
            avg_itl_ms=(t_end - t_first) * 1000.0 / (o - 1) if o > 1 else None,
            run_id=stem, generation=Generation.G3_FREE, source=src))
    trace.notes["DistServe requests with synthesized unshared hash ids"] += len(parsed)


def _checked(d: dict, src: Source, i: int) -> tuple:
    """(issue, index, prompt, output, first token, complete) of one request dict, checked."""
    vals = []
    for k in _FIELDS:
        v = d.get(k)
        if v is None:
            raise TraceError(f"{src}: request {i}: field `{k}` is missing")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TraceError(f"{src}: request {i}: field `{k}` must be a finite number, got {v!r}"[:300])
        if k.endswith("_time") and abs(v) * 1e9 >= _MAX_NS:
            # Perfetto timestamps are 64-bit nanoseconds: such a time cannot be drawn or replayed
            raise TraceError(f"{src}: request {i}: field `{k}` is out of range: {v!r} s is beyond 2^63 ns")
        vals.append(v)
    p, o, t_in, t_first, t_end = vals
    for k, v in (("prompt_len", p), ("output_len", o)):
        if not isinstance(v, int) or v < 1:
            raise TraceError(f"{src}: request {i}: field `{k}` must be an integer >= 1, got {v!r}")
        TOKENS.check(v, f"{src}: request {i}: field `{k}`")
    if not t_in <= t_first <= t_end:
        raise TraceError(f"{src}: request {i}: field `first_token_time`: times must satisfy "
                         f"issue_time <= first_token_time <= complete_time")
    return t_in, i, p, o, t_first, t_end


def _ms(seconds: float) -> int:
    x = seconds * 1000.0
    return int(math.floor(x + 0.5))
