"""Azure LLM inference traces (Azure/AzurePublicDataset 2023 and 2024, the Splitwise and
DynamoLLM papers' arrival processes): CSV with the header `TIMESTAMP,ContextTokens,GeneratedTokens`.

They record when each request arrived and its prompt and output lengths: no sessions, no prefix
hashes, no latencies. Mapping to the normalized model, one context-free request per data row
(chain None, `Generation.G3_FREE`, as a Dynamo row without `agent_context`):
- `request_id` = `<file stem>#<data row index>` (0-based);
- `start_ms` = `end_ms` = `TIMESTAMP` (a wall-clock datetime with up to 7 fractional digits, read
  as UTC) in integer Unix ms: nothing about the serving was recorded, as for a Mooncake row;
- `input_length` = `input_tokens` = `ContextTokens`, `output_tokens` = `GeneratedTokens`;
- hash ids are synthesized, one per `BLOCK_SIZE` prompt tokens, fresh for every request: the trace
  has no prefix information, so a replay must not invent cache hits.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .errors import TraceError
from .limits import TOKENS
from .model import Generation, Request, Source, Trace

HEADER = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
#: Tokens per synthesized hash id: the Mooncake default block size, so the converted rows replay
#: with Dynamo's default `--trace-block-size 512`.
BLOCK_SIZE = 512
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def is_azure(path: str) -> bool:
    return path.endswith(".csv")


def read_into(path: str, trace: Trace) -> None:
    """Append the requests of one Azure CSV to `trace` (hash ids stay unique across files);
    raises TraceError naming the line and field of the first bad value."""
    stem = Path(path).name.removesuffix(".csv")
    next_hash = 1 + max((h for r in trace.requests for h in r.hashes), default=-1)
    n = 0
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None or [h.strip() for h in header] != HEADER:
                raise TraceError(f"{path}:1: not an Azure LLM inference trace: expected the header "
                                 f"{','.join(HEADER)}, got {','.join(header or [])!r}")
            for row in rows:
                src = Source(path, rows.line_num)
                if not row:
                    continue
                if len(row) != 3:
                    raise TraceError(f"{src}: expected 3 fields ({','.join(HEADER)}), got {len(row)}")
                start = _unix_ms(row[0], src)
                p = _count(row[1], src, "ContextTokens", 0)
                o = _count(row[2], src, "GeneratedTokens", 1)
                nblk = -(-p // BLOCK_SIZE)
                trace.requests.append(Request(
                    request_id=f"{stem}#{n}", chain_id=None, parent_chain_id=None, start_ms=start, end_ms=start,
                    output_tokens=o, block_size=BLOCK_SIZE, input_length=p,
                    hashes=tuple(range(next_hash, next_hash + nblk)), input_tokens=p, run_id=stem,
                    generation=Generation.G3_FREE, source=src))
                next_hash += nblk
                n += 1
    except OSError as e:
        raise TraceError(f"{path}: cannot read: {e.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise TraceError(f"{path}: not an Azure LLM inference trace (CSV): {e}") from None
    if n == 0:
        raise TraceError(f"{path}: no requests (the Azure trace has a header and no data rows)")
    trace.notes["Azure requests with synthesized unshared hash ids"] += n


def _unix_ms(text: str, src: Source) -> int:
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TraceError(f"{src}: field `TIMESTAMP` must be a datetime like 2023-11-16 18:17:03.9799600, "
                         f"got {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    us = (t - _EPOCH) // _US  # exact integers: a float of Unix seconds would blur the microseconds
    return (us + 500) // 1000 if us >= 0 else -((500 - us) // 1000)  # half away from zero, as Dynamo


def _count(text: str, src: Source, field: str, least: int) -> int:
    try:
        v = int(text.strip())
    except ValueError:
        v = None
    if v is None or v < least:
        raise TraceError(f"{src}: field `{field}` must be an integer >= {least}, got {text!r}")
    return TOKENS.check(v, f"{src}: field `{field}`")
