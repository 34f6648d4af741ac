"""The streamed agentic writer and the hash shortcuts behind it, against the plain definitions:
`write_v1` must give the bytes of `derive` + `Row.to_agentic_v1`, `HashTexts` the array
`array('Q', hashes)` gives (or defer to it); the reader keeps what repeats once (`_ids_text`,
the writer's id text, is checked with the id numbering in test_hash_ids.py)."""

from __future__ import annotations

import io
import json
from array import array
from pathlib import Path

import orjson
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from trace_pipe.pipeline import agentic_v1, readers, schemas
from trace_pipe.pipeline.dynamo_rows import HashTexts, Reparse
from trace_pipe.pipeline.shared_hashes import flat
from trace_pipe.pipeline.mooncake import dumps
from trace_pipe.pipeline.readers import read_trace

ROOT = Path(__file__).resolve().parents[1]
WEKA = ROOT.parent / "shared" / "fixtures" / "kv_cache_tester_traces"


def _streamed(trace, rules: str, **kw) -> bytes:
    out = io.BytesIO()
    derived, fields = agentic_v1.derive_lazy(trace, rules=rules, **kw)
    agentic_v1.write_v1(fields, out.write)
    return out.getvalue(), derived


@pytest.mark.parametrize("rules", ["g2", "g3c"])
def test_streamed_rows_are_derive_rows(rules):
    files = [str(ROOT / "fixtures" / "trace_0277.json")]
    if WEKA.is_dir():
        files += [str(p) for p in sorted(WEKA.glob("*.json"))[:2]]
    trace = read_trace(files)
    want = agentic_v1.derive(trace, rules=rules)
    got, derived = _streamed(trace, rules)
    assert got == b"".join(dumps(r.to_agentic_v1()) for r in want.rows)
    # trace_0277 alone (a fresh machine without ../shared) has 53 rows, 3 of them sub-agent ones
    assert got.count(b"\n") == len(want.rows) >= 53
    assert [(e.src, e.dst, e.relation) for e in derived.edges] == [(e.src, e.dst, e.relation) for e in want.edges]
    assert (derived.tool_spans, derived.attached_tools, derived.block_size) == \
        (want.tool_spans, want.attached_tools, want.block_size)


def test_streamed_edges_can_be_skipped():
    trace = read_trace([str(ROOT / "fixtures" / "trace_0277.json")])
    derived, fields = agentic_v1.derive_lazy(trace, edges=False)
    agentic_v1.write_v1(fields, io.BytesIO().write)
    assert derived.edges == [] and derived.attached_tools == agentic_v1.derive(trace).attached_tools


@pytest.mark.parametrize("agentic_rows, fmt, header", [(True, "v1", 0), (True, None, 1), (False, None, 0)])
def test_each_written_row_is_reported(tmp_path, agentic_rows, fmt, header):
    """`on_row` (the writing progress bar) hears of every row, streamed or not (v2: and a header line)."""
    from trace_pipe.pipeline.convert import write_mooncake

    trace = read_trace([str(ROOT / "fixtures" / "trace_0277.json")])
    calls: list[int] = []
    res = write_mooncake(trace, str(tmp_path / "m.jsonl"), agentic_rows=agentic_rows, fmt=fmt, on_row=calls.append)
    assert res.rows == len(calls) == sum(calls) == len(trace.requests) == 53
    assert (tmp_path / "m.jsonl").read_bytes().count(b"\n") == 53 + header


def test_the_reader_shares_prefixes_and_repeated_strings(tmp_path):
    """A chain's prompts share one key array; repeated model and tool strings are one object."""
    def row(i, hashes):
        return {"schema": "dynamo.request.trace.v1", "event_type": "request_end", "agent_context": {"session_id": "s"},
                "request": {"request_id": f"r{i}", "model": "m-1", "request_received_ms": 1000 * i, "total_time_ms": 10.0,
                            "output_tokens": 1, "replay": {"trace_block_size": 4, "input_length": 4 * len(hashes),
                                                           "input_sequence_hashes": hashes}}}

    def tool(i):
        return {"schema": "dynamo.request.trace.v1", "event_type": "tool_end", "event_source": "harness",
                "event_time_unix_ms": 1000 * i + 500, "agent_context": {"session_id": "s"},
                "tool": {"tool_call_id": f"c{i}", "tool_class": "bash", "status": "succeeded", "duration_ms": 100.0}}

    base = list(range(1000, 1300))
    lines = [row(0, base), tool(0), row(1, base + [7, 8]), tool(1), row(2, base + [7, 9])]
    p = tmp_path / "t.jsonl"
    p.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in lines))
    t = read_trace([str(p)])
    a, b, c = (r.hashes for r in t.requests)
    assert (list(a), list(b), list(c)) == (base, base + [7, 8], base + [7, 9])
    assert b.key is a.key and c.key is a.key and (list(b.tail), list(c.tail)) == ([7, 8], [7, 9])
    assert t.requests[0].model is t.requests[2].model == "m-1"
    x, y = t.tools
    assert (x.tool_class, x.status, x.event_type, x.event_source) == ("bash", "succeeded", "tool_end", "harness")
    assert all(getattr(x, f) is getattr(y, f) for f in ("tool_class", "status", "event_type", "event_source"))


# hash lists as a Dynamo line holds them: u64 ints mostly, sometimes a value `array('Q')` rejects
_value = st.one_of(st.integers(0, 12), st.just(2**64 - 1), st.sampled_from([-1, 2**64, 3.0, 2.5]), st.booleans())


def _line(hashes, spaced=False) -> bytes:
    # json, not orjson: it writes 2**64 too; spaced: not compact
    return json.dumps({"event": {"event_type": "request_end", "request": {"replay": {"input_sequence_hashes": hashes}}}},
                      separators=(", ", ": ") if spaced else (",", ":")).encode()


def _text(raw: bytes) -> bytes | None:
    """The hash list's text the reader takes from a line, or None where it reads the line whole."""
    rec = readers._text_record(schemas.TEXT_LINE.decode(raw))
    return HashTexts.text(rec) if rec is not None else None


def _ids(texts: HashTexts, raw: bytes, chain):
    """What the reader does with a line: the array, or None where it reads the line whole."""
    text = _text(raw)
    if text is None:
        return None
    try:
        return texts.ids(text, chain)
    except Reparse:
        return None


def _replay(hashes_json: bytes) -> bytes:
    return b'{"event_type":"request_end","request":{"replay":{"input_sequence_hashes":%s}}}' % hashes_json


@given(st.lists(st.tuples(st.sampled_from("xy"), st.lists(_value, max_size=8), st.booleans()), max_size=25))
def test_hash_texts_give_the_array_or_defer(rows):
    texts = HashTexts()
    for chain, hashes, spaced in rows:
        try:
            # what the full parse accepts: array('Q') takes true/false as 1/0, the reader does not
            want = array("Q", hashes) if bool not in map(type, hashes) else None
        except (TypeError, OverflowError):
            want = None
        got = _ids(texts, _line(hashes, spaced), chain)
        if want is None:
            assert got is None
        else:  # compact or spaced, a good list takes the shortcut
            assert got == want and flat(got).typecode == "Q"


def test_hash_texts_share_the_prefix_and_refuse_what_they_cannot_trust():
    t = HashTexts()
    a = _ids(t, _replay(b"[1,2,3]"), "c")
    b = _ids(t, _replay(b"[1,2,3,4]"), "c")
    assert (list(a), list(b)) == ([1, 2, 3], [1, 2, 3, 4])
    assert t.ids(b"1,2,3,4", "c") is b  # same list: shared
    assert list(t.ids(b"1,2,5", "c")) == [1, 2, 5]  # the last element changed (a partial block)
    # a float where the last text had the same integer: the text differs, so the tail is parsed
    with pytest.raises(Reparse):
        t.ids(b"1,2,3.0,5", "c")
    # a prefix that is known text, then nothing valid after its comma
    for bad in (b"1,2,", b"1,2, ", b"1,2,,5", b"1,2,5,"):
        with pytest.raises(Reparse):
            t.ids(bad, "c")
    assert list(t.ids(b"", "d")) == [] and list(t.ids(b" 7 , 8", "d")) == [7, 8]
    # not a flat list of numbers at request.replay: the line is read whole
    for raw in (_replay(b"[[1],2]"), _replay(b'[1,"]"]'), _replay(b"null"), _replay(b"7"),  # a list, a string, ...
                b'{"event_type":"request_end","request":{"replay":{}}}',  # no list
                b'{"event_type":"request_end","input_sequence_hashes":[1,2],"request":{"replay":{}}}'):  # elsewhere
        assert _text(raw) is None, raw
    # the value's own text, however the line spells the key or spaces it
    assert _text(b'{"request":{"replay":{"input_sequence_hash\\u0065s": [1, 2]}},"k":[3]}') == b"1, 2"
    assert _text(_replay(b"[1,2]")[:-3] + b',"x":{"input_sequence_hashes":[9]}}}}') == b"1,2"
    # long lines: the list cut out of the line by byte searches, only where it can only be this key's list
    for raw in (b'{"x":{"input_sequence_hashes":[9]},"input_sequence_hashes":[1,2]}',  # the key twice
                b'{"a":"\\u0041","input_sequence_hashes":[1,2]}',  # an escape somewhere
                b'{"input_sequence_hashes":[[1],2]}', b'{"input_sequence_hashes":[1,"]"]}',  # a list, a string
                b'{"input_sequence_hashes": [1,2]}', b'{"input_sequence_hashes":[1,2'):  # spaced, unclosed
        assert t.cut(raw) is None, raw
    assert t.cut(b'{"input_sequence_hashes":[1,2],"k":[3]}') == (b'{"input_sequence_hashes":[],"k":[3]}', b"1,2")


@pytest.mark.parametrize(("hashes", "error"), [
    (b"1,2,3.5", "holds 3.5, not a u64 integer"),
    (b"1,-2", "holds -2, not a u64 integer"),
    (b"1,2,", "invalid JSON"),
    (b"1,2,18446744073709551616", "holds an integer above 2^64-1, not a u64 integer"),
])
def test_a_bad_hash_list_reports_as_the_full_parse_does(tmp_path, hashes, error):
    """The shortcut never makes its own errors: the line is parsed whole and judged as always."""
    from trace_pipe.pipeline.errors import TraceError

    head = (b'{"schema":"dynamo.request.trace.v1","event_type":"request_end","event_time_unix_ms":2,'
            b'"agent_context":{"session_id":"s"},"request":{"request_id":"%s","output_tokens":1,'
            b'"request_received_ms":1,"replay":{"trace_block_size":1,"input_length":%d,"input_sequence_hashes":[%s]}}}\n')
    p = tmp_path / "t.jsonl"
    p.write_bytes(head % (b"a", 2, b"1,2") + head % (b"b", 3, hashes))
    with pytest.raises(TraceError) as e:
        read_trace([str(p)])
    assert f"{p}:2" in str(e.value) and error in str(e.value)


def test_streamed_rows_without_orjson_fragment():
    """Older orjson has no Fragment: the streamed rows carry id lists instead, same bytes."""
    trace = read_trace([str(ROOT / "fixtures" / "trace_0277.json")])
    with_text, _ = _streamed(trace, "g2")
    assert _streamed(trace, "g2", text_ids=False)[0] == with_text


_hash = st.one_of(st.integers(0, 20), st.just(2**64 - 1), st.sampled_from([-1, 2**64, 3.0, True]))


@given(st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.integers(0, 6), st.lists(_hash, max_size=4),
                          st.booleans(), st.booleans()), min_size=1, max_size=12))
def test_reading_with_the_cut_equals_reading_whole_lines(tmp_path_factory, rows):
    """Whatever the lines hold, lifting the hash lists out of the parse changes nothing: the same
    records, or the same first error."""
    from trace_pipe.pipeline.errors import TraceError

    lines, last = [], {}
    for i, (chain, keep, new, envelope, spaced) in enumerate(rows):
        hashes = last.get(chain, [])[:keep] + new  # chains repeat a prefix, as Dynamo's do
        last[chain] = hashes
        rec = {"schema": "dynamo.request.trace.v1", "event_type": "request_end", "event_time_unix_ms": 10 + i,
               "request": {"request_id": f"r{i}", "output_tokens": 1, "request_received_ms": i,
                           "replay": {"trace_block_size": 1, "input_length": len(hashes),
                                      "input_sequence_hashes": hashes}}}
        if chain is not None:
            rec["agent_context"] = {"session_id": chain}
        d = {"timestamp": i, "event": rec} if envelope else rec
        lines.append(json.dumps(d, separators=(", ", ": ") if spaced else (",", ":")))
    p = tmp_path_factory.mktemp("cut") / "t.jsonl"
    p.write_text("\n".join(lines) + "\n")

    def read(cut):
        try:
            return [(r.request_id, r.chain_id, list(r.hashes), r.start_ms, r.end_ms) for r in read_trace([str(p)]).requests]
        except TraceError as e:
            return str(e)

    with_text = read(True)
    saved = readers.text_of, readers.CUT_FROM
    try:
        readers.CUT_FROM = 0  # every line's list cut out before the decode where it can be
        with_cut = read(True)
        readers.text_of = lambda rec: None  # every request_end line read whole
        whole = read(False)
    finally:
        readers.text_of, readers.CUT_FROM = saved
    assert with_text == whole and with_cut == whole
    event("an error" if isinstance(whole, str) else "records")


def _g3b(d: dict) -> bytes:
    return orjson.dumps({"schema": "dynamo.request.trace.v1", "event_time_unix_ms": 5, **d})


def _request_end(rid: str, ctx: object) -> bytes:
    return _g3b({"event_type": "request_end", "agent_context": ctx, "request": {
        "request_id": rid, "model": "m", "output_tokens": 1, "request_received_ms": 1,
        "replay": {"trace_block_size": 4, "input_length": 4, "input_sequence_hashes": [7]}}})


def test_a_context_is_read_once_and_never_stands_for_another(tmp_path):
    """The reader reads each distinct agent_context text once: the chain's rows share one
    identity tuple; a tool row with a null context takes its flattened session_id every time;
    a bad context is the typed reader's error wherever it comes."""
    p = tmp_path / "t.jsonl"
    tool = {"event_type": "tool_end", "agent_context": None, "tool": {"tool_call_id": "c", "tool_class": "bash"}}
    p.write_bytes(b"\n".join([
        _request_end("r0", {"session_id": "s1", "k": [1]}), _g3b({**tool, "session_id": "a"}),
        _g3b({**tool, "session_id": "b"}), _request_end("r1", {"session_id": "s1", "k": [1]})]) + b"\n")
    trace = read_trace([str(p)])
    r0, r1 = trace.requests
    assert r0.identity == (("session_id", "s1"), ("k", [1])) and r1.identity is r0.identity
    assert [(t.chain_id, t.identity) for t in trace.tools] == [(c, (("session_id", c),)) for c in "ab"]
    from trace_pipe.pipeline.errors import TraceError
    for ctx, said in ((7, "agent_context"), ({"session_id": 5}, "field `agent_context.session_id` must be a "
                                                                  "non-empty string, got 5 (G3b record)")):
        p.write_bytes(_request_end("r0", {"session_id": "s1"}) + b"\n" + _request_end("r1", ctx) + b"\n")
        with pytest.raises(TraceError) as e:
            read_trace([str(p)])
        assert f"{p}:2" in str(e.value) and said in str(e.value)
