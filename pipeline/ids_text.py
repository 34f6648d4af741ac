"""A row's hash ids as their JSON array text, built from the chain's previous row's text: the
shared prefix is a byte slice, so neither it nor its ~350 int objects are touched (copying and
serializing them was a third of the writing). The v1 and v2 writers both stream rows this way."""

from __future__ import annotations

import orjson

# embeds already-serialized JSON (the streamed rows' hash ids); recent orjson only, else id lists
FRAGMENT = getattr(orjson, "Fragment", None)
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def ids_text(prev: tuple | None, k: int, tail) -> bytes:
    """A row's hash ids as their JSON array, from the chain's last row's text (`prev`: its text and
    id count), the number of leading ids the two share (`k`) and the row's own tail (an int64
    array, `hash_ids.IdPlan.tail`): the shared prefix is a byte slice, so neither it nor its ~350
    int objects are touched (copying and serializing them was a third of the writing)."""
    if prev is None or k == 0:
        return orjson.dumps(tail, option=_NUMPY)
    ptext, lp = prev
    if k == lp and not len(tail):
        return ptext
    if k == lp:
        cut = len(ptext) - 1  # "[a,b,c"
    elif k == lp - 1:
        cut = ptext.rfind(b",")  # the usual other case: only the last (partial) block differs
    else:
        ptext = orjson.dumps(orjson.loads(ptext)[:k])
        cut = len(ptext) - 1
    # one copy of the ~3 KB prefix (slicing and `+` copied it three times)
    if not len(tail):
        return b"".join((memoryview(ptext)[:cut], b"]"))
    return b"".join((memoryview(ptext)[:cut], b",", memoryview(orjson.dumps(tail, option=_NUMPY))[1:]))
