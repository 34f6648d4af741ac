"""Compact JSON text exactly as Rust's serde_json writes it, for the BLAKE3 digests Dynamo 1.6
reports (the agentic graph and lifecycle digests hash serde_json bytes, so one differing character
changes the digest).

Differences from `json.dumps(separators=(",", ":"))`: floats use the `ryu` crate's shortest
form (`1.0`, `1e16`, `1e-7`, `0.00001`, where Python writes `1e+16`, `1e-07`, `1e-05`), a float is
always written as a float (`5.0`, never `5`), and non-ASCII text is written as UTF-8.
"""

from __future__ import annotations

import json
import math

_INT = {int}
_str = json.JSONEncoder(ensure_ascii=False).encode  # escapes exactly the characters serde_json escapes


def float_text(x: float) -> str:
    """`x` as serde_json writes an f64: Python's shortest round-trip digits (the same digits
    ryu finds) laid out by ryu's rules (decimal for 1e-5 <= |x| < 1e16, else d.ddde±n)."""
    if not math.isfinite(x):
        raise ValueError(f"serde_json cannot write {x!r}")
    if x == 0.0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    neg = x < 0
    r = repr(abs(x))
    mant, _, exp = r.partition("e")
    ip, _, fp = mant.partition(".")
    digits = (ip + fp).lstrip("0")
    # the decimal point sits after `point` digits of `digits`
    point = (len(ip.lstrip("0")) if ip.strip("0") else -(len(fp) - len(fp.lstrip("0")))) + int(exp or 0)
    digits = digits.rstrip("0")
    n = len(digits)
    if n <= point <= 16:
        s = digits + "0" * (point - n) + ".0"
    elif 0 < point <= 16:
        s = digits[:point] + "." + digits[point:]
    elif -5 < point <= 0:
        s = "0." + "0" * -point + digits
    else:
        s = digits[0] + ("." + digits[1:] if n > 1 else "") + "e" + str(point - 1)
    return "-" + s if neg else s


def dumps(obj) -> str:
    """Compact serde_json text of dicts (in their order), lists, tuples, str, int, float, bool, None."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return float_text(obj)
    if isinstance(obj, str):
        return _str(obj)
    if isinstance(obj, (list, tuple)):
        if set(map(type, obj)) <= _INT:  # plain ints (hash ids): written as str() writes them
            return "[" + ",".join(map(str, obj)) + "]"
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    if isinstance(obj, dict):
        return "{" + ",".join(_str(k) + ":" + dumps(v) for k, v in obj.items()) + "}"
    raise TypeError(f"cannot write {type(obj).__name__} as serde_json")
