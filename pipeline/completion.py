"""G3c-late `output_token_ids` (dynamo-formats.md §4.3): a request_end row may carry
`completion_sequence_hashes`, block hashes over prompt + output. From them Dynamo's converter
gives each row the compact block id of every output token, so a continuation prompt (the next
call of the chain, whose input contains this output) reuses the blocks the output filled; and a
prompt ending mid-block has its last block replaced by the completion block that finishes it.

Compact ids: every input hash is mapped first (walking the rows in output order), then each row's
completion blocks in row and position order, so outputs never shift the input ids."""

from __future__ import annotations

from array import array

from . import hash_ids
from .errors import TraceError
from .shared_hashes import flat
from .model import Request


def check(r: Request, bs: int) -> None:
    """G3c's loader rule: one completion hash per block of prompt + output, and the full input
    blocks' completion hashes equal the input hashes."""
    comp = r.completion_hashes
    il, ot = r.input_length or 0, r.output_tokens or 0
    need = -(-(il + ot) // bs)
    field = f"invalid request_end at {r.source}: field `request.replay.completion_sequence_hashes`"
    if len(comp) != need:
        raise TraceError(f"{field}: input_length {il} plus output_tokens {ot} with trace_block_size {bs} requires "
                         f"exactly {need} completion hashes, got {len(comp)}")
    full = il // bs
    if list(comp[:full]) != list(flat(r.hashes)[:full]):
        raise TraceError(f"{field}: the first {full} completion hashes (the full input blocks) must equal "
                         f"input_sequence_hashes")


def token_ids(order: list[Request], bs: int | None) -> list[tuple[list[int], list[int] | None]] | None:
    """Per row of `order` (already in output order): (hash_ids, output_token_ids or None), or None
    when no row has completion hashes (then ids are assigned as usual, row by row)."""
    if bs is None or not any(r.completion_hashes is not None for r in order):
        return None
    # every input hash, then each output token's completion block: numbered by first appearance
    values = array("Q")
    bounds = [0]
    for r in order:
        values.extend(array("Q", flat(r.hashes)))
        bounds.append(len(values))
    tokens_at = []
    for r in order:
        comp = r.completion_hashes
        if comp is None:
            tokens_at.append(None)
            continue
        check(r, bs)
        il, ot = r.input_length or 0, r.output_tokens or 0
        tokens_at.append(len(values))
        values.extend(array("Q", [comp[p // bs] for p in range(il, il + ot)]))
    ids = hash_ids.first_appearance(values)
    out: list[tuple[list[int], list[int] | None]] = []
    for i, r in enumerate(order):
        row_ids = ids[bounds[i]:bounds[i + 1]].tolist()
        at = tokens_at[i]
        if at is None:
            out.append((row_ids, None))
            continue
        ot = r.output_tokens or 0
        tokens = ids[at:at + ot].tolist()
        if (r.input_length or 0) % bs and ot > 0 and row_ids:
            row_ids[-1] = tokens[0]  # the completion block that finishes the partial last input block
        out.append((row_ids, tokens))
    return out
