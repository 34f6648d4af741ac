"""The limits that protect the machine from hostile input: one table, one error shape.

Real traces stay orders of magnitude below every limit here. Each exists because a value past it
would not fail but exhaust memory or time instead (one object per worker, per block, per token; a
recursive parse per nesting level; a timestamp past int64 nanoseconds). Every reader, option parser
and writer checks against this table, so the README's "Bad input" table can state each limit once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from trace_pipe.pipeline.errors import TraceError


@dataclass(frozen=True, slots=True)
class Limit:
    what: str  # what the limit bounds, as the error says it
    maximum: int | float
    unit: str = ""

    def check(self, value: int | float, where: str) -> int | float:
        """`value` if it is a finite number within 0..maximum, else a one-line TraceError.

        `where` names the place: an option (`--num-workers`) or `path:line: field request.x`.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TraceError(f"{where}: expected a number, got {_kind(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise TraceError(f"{where}: {value} is not a finite number")
        if value < 0:
            raise TraceError(f"{where}: {value} is negative")
        if value > self.maximum:
            raise TraceError(f"{where}: {_show(value)} is above the limit of {_show(self.maximum)}"
                             f"{' ' + self.unit if self.unit else ''} ({self.what})")
        return value


def _show(v: int | float) -> str:
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e16):
        return f"{int(v):,}"
    return f"{v:g}"


def _kind(v: object) -> str:
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object",
            type(None): "null"}.get(type(v), type(v).__name__)


# Perfetto (and int64 nanoseconds from the unix epoch) end here; the trace processor drops
# timestamps at or above it. Times are checked against it wherever they become nanoseconds.
TS_LIMIT_NS = 1 << 63

# JSON nesting: Dynamo rows nest about 6 deep; the fallback parser recurses per level.
JSON_DEPTH = Limit("JSON nesting depth", 256, "levels")
# Tokens in one request (prompt or output): the longest context windows are ~10M tokens; hash
# lists, prompts and KV blocks are sized from this.
TOKENS = Limit("tokens in one request", 1 << 26, "tokens")
# Workers in one pool: each is an object with its own KV pool and queue.
WORKERS = Limit("workers", 4096)
# KV blocks per worker: a pool holds per-block state.
GPU_BLOCKS = Limit("KV blocks per worker", 1 << 26, "blocks")
# Tokens per KV block (block_size, --trace-block-size): 16..1024 in practice.
BLOCK_SIZE = Limit("tokens per KV block", 1 << 20, "tokens")
# Simulated or recorded seconds: anything that fits in int64 nanoseconds.
SECONDS = Limit("seconds", TS_LIMIT_NS // 10**9 - 1, "s")
MILLISECONDS = Limit("milliseconds", (TS_LIMIT_NS // 10**6) - 1, "ms")
# Arrival speed-up ratios and timing multipliers: outside this range every arrival collapses to
# one instant or spreads past the int64 clock.
SPEEDUP = Limit("speed-up ratio", 1e6)
SPEEDUP_MIN = 1e-6


def check_ratio(value: float, where: str) -> float:
    """A positive ratio within [SPEEDUP_MIN, SPEEDUP.maximum] (speed-up ratios, multipliers)."""
    SPEEDUP.check(value, where)
    if value < SPEEDUP_MIN:
        raise TraceError(f"{where}: {value:g} is below the limit of {SPEEDUP_MIN:g} ({SPEEDUP.what})")
    return value


# a JSON string (skipped whole, escapes included; an unterminated one to the end) or one bracket
_BRACKETS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def json_depth(text: str | bytes) -> int:
    """The deepest nesting of `[` / `{` in JSON text (brackets inside strings skipped), in one
    linear scan: measured before parsing where the parser would recurse (option JSON), or after
    a parser refused a line, to say how deep it was."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    depth = deepest = 0
    for m in _BRACKETS.finditer(raw):
        c = m.group()[0]
        if c == 0x5B or c == 0x7B:  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
        elif c == 0x5D or c == 0x7D:  # ] }
            depth -= 1
    return deepest
