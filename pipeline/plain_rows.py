"""Plain Mooncake rows (dynamo-formats.md §4.3), as Dynamo's `request_trace_to_mooncake` writes them:
one timed row per request, rows in (start, end, request_id) order."""

from __future__ import annotations

from . import completion, hash_ids
from .errors import TraceError
from .model import Trace
from .mooncake import Row
from .request_graph import check_block_size, require_output, requests_of, sort_key


def plain_rows(trace: Trace, *, rules: str = "g2") -> tuple[list[Row], int | None]:
    """Plain Mooncake rows (§4.3): independent timed arrivals, no session, no delay."""
    if trace.mooncake_rows:
        return list(trace.mooncake_rows), trace.block_size
    reqs = requests_of(trace)
    if rules == "g3c" and any(r.chain_id is not None for r in reqs):
        free = [r for r in reqs if r.chain_id is None]
        if free:  # G3c detects the mode from the rows: a mix is neither
            raise TraceError(f"{free[0].source}: field `agent_context`: Dynamo request trace cannot mix requests "
                             f"with and without agent_context")
        raise TraceError("error: agentic request traces require --agentic")
    bs = check_block_size(reqs)
    reqs.sort(key=sort_key)
    t0 = reqs[0].start_ms
    given = completion.token_ids(reqs, bs) if rules == "g3c" else None
    if given is not None:
        return [Row(input_length=r.input_length or 0, output_length=require_output(r), hash_ids=ids,
                    output_token_ids=tuple(out) if out is not None else None, timestamp=float(r.start_ms - t0))
                for r, (ids, out) in zip(reqs, given)], bs
    ids = hash_ids.plan((r.chain_id, r.hashes) for r in reqs).lists()
    rows = [Row(input_length=r.input_length or 0, output_length=require_output(r), hash_ids=h,
                timestamp=float(r.start_ms - t0)) for r, h in zip(reqs, ids)]
    return rows, bs

