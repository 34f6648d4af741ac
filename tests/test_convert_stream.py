"""The streamed agentic writer and the hash shortcuts behind it, against the plain definitions:
`write_v1` must give the bytes of `derive` + `Row.to_agentic_v1`, `HashTexts` the array
`array('Q', hashes)` gives (or defer to it), `_ids_text` the JSON of `HashMapper.map`."""

from __future__ import annotations

import io
import json
from array import array
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trace_pipe.pipeline import agentic
from trace_pipe.pipeline.dynamo_rows import HashTexts
from trace_pipe.pipeline.mooncake import dumps
from trace_pipe.pipeline.readers import read_trace

ROOT = Path(__file__).resolve().parents[1]
WEKA = ROOT.parent / "shared" / "fixtures" / "kv_cache_tester_traces"


def _streamed(trace, rules: str) -> bytes:
    out = io.BytesIO()
    derived, fields = agentic.derive_lazy(trace, rules=rules)
    agentic.write_v1(fields, out.write)
    return out.getvalue(), derived


@pytest.mark.parametrize("rules", ["g2", "g3c"])
def test_streamed_rows_are_derive_rows(rules):
    files = [str(ROOT / "fixtures" / "trace_0277.json")]
    if WEKA.is_dir():
        files += [str(p) for p in sorted(WEKA.glob("*.json"))[:2]]
    trace = read_trace(files)
    want = agentic.derive(trace, rules=rules)
    got, derived = _streamed(trace, rules)
    assert got == b"".join(dumps(r.to_agentic_v1()) for r in want.rows)
    assert got.count(b"\n") == len(want.rows) > 100
    assert [(e.src, e.dst, e.relation) for e in derived.edges] == [(e.src, e.dst, e.relation) for e in want.edges]
    assert (derived.tool_spans, derived.attached_tools, derived.block_size) == \
        (want.tool_spans, want.attached_tools, want.block_size)


def test_streamed_edges_can_be_skipped():
    trace = read_trace([str(ROOT / "fixtures" / "trace_0277.json")])
    derived, fields = agentic.derive_lazy(trace, edges=False)
    agentic.write_v1(fields, io.BytesIO().write)
    assert derived.edges == [] and derived.attached_tools == agentic.derive(trace).attached_tools


_ids = st.lists(st.integers(0, 9), max_size=10)


@given(st.lists(st.tuples(st.sampled_from("ab"), _ids), max_size=20))
def test_ids_text_is_the_mapper_json(rows):
    mapper = agentic.HashMapper()
    ids_of = agentic.defaultdict(agentic.itertools.count().__next__).__getitem__
    last: dict = {}
    for chain, hashes in rows:
        h = array("Q", hashes)
        text = agentic._ids_text(last.get(chain), h, ids_of)
        last[chain] = (h, text)
        assert text == orjson.dumps(mapper.map(h, chain))


# hash lists as a Dynamo line holds them: u64 ints mostly, sometimes a value `array('Q')` rejects
_value = st.one_of(st.integers(0, 12), st.just(2**64 - 1), st.sampled_from([-1, 2**64, 3.0, 2.5]), st.booleans())


@given(st.lists(st.tuples(st.sampled_from("xy"), st.lists(_value, max_size=8), st.booleans()), max_size=25))
def test_hash_texts_give_the_array_or_defer(rows):
    texts = HashTexts()
    for chain, hashes, spaced in rows:
        # the line as JSON text (json, not orjson: it writes 2**64 too); spaced: not compact
        raw = json.dumps({"request": {"replay": {"input_sequence_hashes": hashes}}},
                         separators=(", ", ": ") if spaced else (",", ":")).encode()
        try:
            want = array("Q", hashes)
        except (TypeError, OverflowError):
            want = None
        got = texts.parse(hashes, raw, chain)
        if want is None:
            assert got is None
        elif got is not None:
            assert got == want and got.typecode == "Q"


def test_hash_texts_share_the_prefix_and_refuse_what_they_cannot_trust():
    t = HashTexts()
    a = t.parse([1, 2, 3], b'{"input_sequence_hashes":[1,2,3]}', "c")
    b = t.parse([1, 2, 3, 4], b'{"input_sequence_hashes":[1,2,3,4]}', "c")
    assert (list(a), list(b)) == ([1, 2, 3], [1, 2, 3, 4])
    assert t.parse([1, 2, 3, 4], b'{"input_sequence_hashes":[1,2,3,4]}', "c") is b  # same list: shared
    # a float where the last text had the same integer: the text differs, so the full check runs
    assert t.parse([1, 2, 3.0, 5], b'{"input_sequence_hashes":[1,2,3.0,5]}', "c") is None
    # the key twice, or spelled with an escape: not trusted
    assert t.parse([1, 2], b'{"x":{"input_sequence_hashes":[9]},"input_sequence_hashes":[1,2]}', "d") is None
    assert t.parse([1, 2], b'{"a":"\\u0041","input_sequence_hashes":[1,2]}', "d") is None


def test_streamed_rows_without_orjson_fragment(monkeypatch):
    """Older orjson has no Fragment: the streamed rows carry id lists instead, same bytes."""
    trace = read_trace([str(ROOT / "fixtures" / "trace_0277.json")])
    with_text, _ = _streamed(trace, "g2")
    monkeypatch.setattr(agentic, "_FRAGMENT", None)
    assert _streamed(trace, "g2")[0] == with_text
