"""`convert --agentic` writes agentic Mooncake v2 as Dynamo 1.6's exporter does
(`request_trace_to_mooncake --agentic`; lowering in ai-dynamo/dynamo lib/data-gen
request_trace/agentic.rs, rows and header in lib/data-gen mooncake.rs, the command in
lib/bench/request_trace_to_mooncake.rs). One test per rule, with the exact expected bytes; the
cases come from Dynamo's own tests there where they exist."""

from __future__ import annotations

import io
from pathlib import Path

import blake3
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_records import read_lines, req, tool, write_jsonl
from trace_pipe.cli.convert_cmd import run_convert
from trace_pipe.pipeline import agentic_v2
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.mooncake import Dependency, dumps, exporter_order
from trace_pipe.pipeline.readers import read_trace
from trace_pipe.proto import synthetic

ROOT = Path(__file__).resolve().parents[1]
WEKA_0277 = ROOT / "fixtures" / "trace_0277.json"


def convert(tmp_path, recs, *args_kw, **kw):
    """(output lines, stdout, stderr) of `convert --agentic` (the default format)."""
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    out, err = io.StringIO(), io.StringIO()
    run_convert([str(src)], mooncake=str(tmp_path / "o.jsonl"), agentic_rows=True, out=out, err=err, **kw)
    return read_lines(tmp_path / "o.jsonl"), out.getvalue(), err.getvalue()


def header(lines, bs=2) -> bytes:
    digest = blake3.blake3(b"[" + b",".join(lines[1:]) + b"]").hexdigest()
    return (b'{"schema":"dynamo.agentic_mooncake","version":2,"block_size":%d,"hash_id_scope":"local",'
            b'"source":{"format":"dynamo_request_trace","digest":"%s"}}' % (bs, digest.encode()))


# Dynamo's `agentic_lowering_builds_completion_sequences` (the tool's time stays in the delay)
SEQ = [req("r1", "root", None, 1000, 1100, [11]), req("r2", "root", None, 1300, 1400, [11, 22]),
       tool("root", "call-1", "ls", 1150, 1250)]


def test_default_is_v2_with_the_exporters_header_key_order_and_not_before_on_every_row(tmp_path):
    lines, out, _ = convert(tmp_path, SEQ)
    assert lines == [
        header(lines),
        b'{"request_id":"r1","play_id":"root","session_id":"root","model":"test-model","input_length":2,'
        b'"output_length":5,"hash_ids":[0],"not_before_ms":0.0}',
        b'{"request_id":"r2","play_id":"root","session_id":"root","model":"test-model","input_length":4,'
        b'"output_length":5,"hash_ids":[0,1],"not_before_ms":300.0,"dependencies":[{"request_id":"r1",'
        b'"trigger":"completion","delay_ms":200.0,"relation":"sequence"}]}',
    ]


def test_digest_is_blake3_of_the_compact_row_array(tmp_path):
    lines, _, _ = convert(tmp_path, SEQ)
    body = b"[" + lines[1] + b"," + lines[2] + b"]"  # serde_json::to_vec(&rows): no spaces, no newlines
    assert orjson.loads(lines[0])["source"]["digest"] == blake3.blake3(body).hexdigest()
    assert blake3.blake3(b"[" + b",\n".join(lines[1:]) + b"]").hexdigest() != blake3.blake3(body).hexdigest()


def test_stdout_is_the_exporters_two_lines_without_a_tool_summary(tmp_path):
    _, out, err = convert(tmp_path, SEQ)  # a terminal tool row is loaded: v1 would print the tool block
    assert out.splitlines() == [f"Wrote 2 Agentic Mooncake rows to {tmp_path / 'o.jsonl'}", "Trace block size: 2"]
    # stderr says the tool rows are not in the output (v1 would attach them as tool_events)
    assert err.splitlines() == ["note: 1 terminal tool spans not written (v2 rows have no tool fields; tool time "
                                "stays in the delays)"]


def test_format_v1_keeps_the_v1_rows_and_summary(tmp_path):
    lines, out, _ = convert(tmp_path, SEQ, fmt="v1")
    assert lines[0].startswith(b'{"request_id":"r1","session_id":"root"') and b"wait_for" in lines[1]
    assert out.splitlines()[:3] == [f"Wrote 2 Agentic Mooncake rows to {tmp_path / 'o.jsonl'}", "Trace block size: 2", ""]


def test_dependencies_in_enum_order():
    # Dynamo's derived Ord: dispatch < completion; sequence < spawn < join < replay_barrier; then delay
    d = [Dependency("b", "completion", 5.0, "join"), Dependency("a", "completion", 1.0, "replay_barrier"),
         Dependency("a", "completion", 2.0, "sequence"), Dependency("a", "dispatch", 9.0, "spawn"),
         Dependency("a", "completion", 0.0, "spawn"), Dependency("a", "completion", 3.0, "join")]
    assert [(x.request_id, x.trigger, x.relation) for x in exporter_order(d)] == [
        ("a", "dispatch", "spawn"), ("a", "completion", "sequence"), ("a", "completion", "spawn"),
        ("a", "completion", "join"), ("a", "completion", "replay_barrier"), ("b", "completion", "join")]


def test_dependencies_deduplicated_on_id_trigger_relation_first_kept():
    d = [Dependency("a", "completion", 7.0, "sequence"), Dependency("a", "completion", 1.0, "sequence"),
         Dependency("a", "completion", 1.0, "join")]
    assert exporter_order(d) == [Dependency("a", "completion", 7.0, "sequence"), Dependency("a", "completion", 1.0, "join")]


def test_a_rows_edges_sorted_by_request_id(tmp_path):
    # the join's child sorts after the parent's previous call: sequence first here (A3 has it the other way)
    recs = [req("a-1", "root", None, 1000, 1100, [11]), req("z-1", "kid", "root", 1200, 1300, [33]),
            req("a-2", "root", None, 1500, 1600, [11, 22])]
    lines, _, _ = convert(tmp_path, recs)
    assert orjson.loads(lines[3])["dependencies"] == [
        {"request_id": "a-1", "trigger": "completion", "delay_ms": 400.0, "relation": "sequence"},
        {"request_id": "z-1", "trigger": "completion", "delay_ms": 200.0, "relation": "join"}]


@pytest.mark.parametrize("child_start, want", [
    (1200, ("p1", "completion", 100.0, "spawn")),  # after the parent call ended: its completion + the gap
    (1050, ("p1", "dispatch", 50.0, "spawn")),  # while it ran: its dispatch + the offset
    (1000, ("p1", "dispatch", 0.0, "spawn")),  # the same start
])
def test_spawn_trigger_by_whether_the_parent_call_had_ended(tmp_path, child_start, want):
    recs = [req("p1", "root", None, 1000, 1100, [11]), req("c1", "kid", "root", child_start, child_start + 50, [33])]
    lines, _, _ = convert(tmp_path, recs)
    row = next(orjson.loads(x) for x in lines[1:] if b'"c1"' in x)
    assert [tuple(d.values()) for d in row["dependencies"]] == [want]


def test_sequence_and_join_wait_for_completion_delay_clamped_at_zero(tmp_path):
    # an overlapping next call of the chain (started before the last ended) waits 0 after its completion
    recs = [req("r1", "root", None, 1000, 1500, [11]), req("r2", "root", None, 1200, 1300, [11, 22])]
    lines, _, _ = convert(tmp_path, recs)
    assert orjson.loads(lines[2])["dependencies"] == [
        {"request_id": "r1", "trigger": "completion", "delay_ms": 0.0, "relation": "sequence"}]


def test_private_ids_for_a_partial_last_block(tmp_path):
    recs = [req("r1", "root", None, 1000, 1100, [11, 22]), req("r2", "root", None, 1200, 1300, [11, 44, 33])]
    recs[0]["request"]["replay"]["input_length"] = 3  # the second block is partial: a private id
    lines, _, _ = convert(tmp_path, recs)
    want = int.from_bytes(blake3.blake3(b"dynamo-request-trace-private-block\x00r1\x001\x003").digest()[:8], "little")
    assert want == 10686167402425324552  # u64: written exactly, never as a float
    assert orjson.loads(lines[1])["hash_ids"] == [0, want]
    # the partial block's hash still took its compact number (1), as the exporter's mapper does
    assert orjson.loads(lines[2])["hash_ids"] == [0, 2, 3]
    assert agentic_v2.private_block_id("r1", 1, 3) == want


def test_missing_full_block_hashes_become_private_ids():
    # the exporter pads with private ids where the hashes run out (Dynamo's loader never lets it
    # happen; a WEKA play may): one per missing full block, then the partial one
    assert agentic_v2.v2_ids([4, 5], "r", 9, 2) == [4, 5] + [agentic_v2.private_block_id("r", j, 9) for j in (2, 3, 4)]
    assert agentic_v2.v2_ids([4, 5, 6], "r", 4, 2) == [4, 5]  # more hashes than blocks: cut


def test_background_agent_is_never_joined_and_child_without_parent_is_a_root(tmp_path):
    # Dynamo's `explicit_background_agent_causality_allows_parent_work_until_join`
    claude = {"claude": {"source_request_id": "parent-1", "consumer_request_id": "parent-3",
                         "child_session_id": "child", "execution_mode": "background"}}
    recs = [req("parent-1", "root", None, 1000, 1100, [11]), req("child-1", "child", "root", 1200, 1700, [33]),
            req("parent-2", "root", None, 1300, 1400, [11, 22]), req("parent-3", "root", None, 1850, 1950, [11, 22, 44]),
            tool("root", "agent-call", "Agent", 1100, 1800, **claude)]
    rows = {r["request_id"]: r for r in map(orjson.loads, convert(tmp_path, recs)[0][1:])}
    assert rows["child-1"]["dependencies"] == [
        {"request_id": "parent-1", "trigger": "completion", "delay_ms": 100.0, "relation": "spawn"}]
    assert [d["relation"] for d in rows["parent-3"]["dependencies"]] == ["sequence"]
    # the same child without a parent link: the tool names it, but the exporter reads it as a root
    recs[1] = req("child-1", "child", None, 1200, 1700, [33])
    rows = {r["request_id"]: r for r in map(orjson.loads, convert(tmp_path, recs)[0][1:])}
    assert "dependencies" not in rows["child-1"] and rows["child-1"]["play_id"] == "child"


def test_claude_source_outside_the_parent_session_is_an_error(tmp_path):
    claude = {"claude": {"source_request_id": "other-1", "consumer_request_id": None,
                         "child_session_id": "child", "execution_mode": "blocking"}}
    recs = [req("parent-1", "root", None, 1000, 1100, [11]), req("other-1", "other", None, 1000, 1100, [12]),
            req("child-1", "child", "root", 1200, 1300, [33]), tool("other", "agent-call", "Agent", 1100, 1200, **claude)]
    with pytest.raises(TraceError) as e:
        convert(tmp_path, recs)
    assert str(e.value) == (f"{tmp_path / 'in.jsonl'}:4: field `tool.claude.source_request_id`: tool agent-call source "
                            f"request other-1 is not in parent session root")


def test_mode_errors_are_the_exporters(tmp_path):
    free = [req("r1", None, None, 1000, 1100, [11])]
    with pytest.raises(TraceError) as e:
        convert(tmp_path, free)
    assert str(e.value) == "error: --agentic requires request traces with agent_context"
    mixed = [req("r1", "root", None, 1000, 1100, [11]), req("r2", None, None, 1200, 1300, [11])]
    with pytest.raises(TraceError) as e:
        convert(tmp_path, mixed)
    assert str(e.value) == (f"{tmp_path / 'in.jsonl'}:2: field `agent_context`: Dynamo request trace cannot mix "
                            f"requests with and without agent_context")
    with pytest.raises(TraceError) as e:  # plain rows of an agentic trace, under the exporter's (G3c) rules
        src = write_jsonl(tmp_path / "in.jsonl", SEQ)
        run_convert([str(src)], mooncake=str(tmp_path / "o.jsonl"), g3c_rules=True, out=io.StringIO(), err=io.StringIO())
    assert str(e.value) == "error: agentic request traces require --agentic"


def test_missing_model(tmp_path):
    # (a missing output length is the loader's error, before the lowering: test_bad_input)
    with pytest.raises(TraceError) as e:
        convert(tmp_path, [req("r1", "root", None, 1000, 1100, [11], model=None)])
    assert str(e.value) == f"{tmp_path / 'in.jsonl'}:1: field `request.model`: request r1 is missing model"


def test_unknown_parent_session_is_an_error(tmp_path):
    with pytest.raises(TraceError) as e:
        convert(tmp_path, [req("r1", "kid", "ghost", 1000, 1100, [11])])
    assert str(e.value) == (f"{tmp_path / 'in.jsonl'}:1: field `agent_context.parent_session_id`: agent session kid "
                            f"references unknown parent session ghost")


def test_g3c_rules_flag_says_it_changes_nothing_for_v2(tmp_path):
    plain, _, _ = convert(tmp_path, SEQ)
    again, _, err = convert(tmp_path, SEQ, g3c_rules=True)
    assert again == plain and "note: --g3c-rules has no effect on v2 rows" in err


def _streamed(trace, **kw) -> bytes:
    out = io.BytesIO()
    derived, fields = agentic_v2.derive_v2_lazy(trace, **kw)
    agentic_v2.write_v2(derived, fields, out.write)
    return out.getvalue(), derived


def _inputs(tmp_path):
    gen = []
    for g, rows in synthetic.dynamo_records(("G2", "G3b"), runs=2).items():
        p = tmp_path / f"{g}.jsonl"
        synthetic.write_jsonl(rows, str(p))
        gen.append(str(p))
    return {"weka": [str(WEKA_0277)], "generated": gen}


@pytest.mark.parametrize("which", ["weka", "generated"])
def test_streamed_v2_is_derive_v2(tmp_path, which):
    """`write_v2` (text ids, spooled rows) gives the bytes of `derive_v2` + `Row.to_agentic_v2`,
    with orjson's Fragment or without it."""
    trace = read_trace(_inputs(tmp_path)[which])
    want = agentic_v2.derive_v2(trace)
    got, derived = _streamed(trace)
    assert got == dumps(want.header) + b"".join(dumps(r.to_agentic_v2()) for r in want.rows)
    assert derived.header == want.header and len(want.rows) == len(trace.requests)
    assert [(e.src, e.dst, e.relation) for e in derived.edges] == [
        (d.request_id, r.request_id, d.relation) for r in want.rows for d in r.dependencies]
    assert _streamed(trace, text_ids=False)[0] == got


def test_repeated_prompts_with_partial_tails_share_text_correctly(tmp_path):
    # the text shortcut's awkward cases: a call repeating the last one's partial block (the same
    # hash at that position), a shorter call, a call adding blocks after a partial one
    bs = 4
    def r(i, hashes, n_in):
        x = req(f"r{i}", "root", None, 1000 + 100 * i, 1050 + 100 * i, hashes, bs=bs)
        x["request"]["replay"]["input_length"] = n_in
        return x
    recs = [r(0, [1, 2, 3], 10), r(1, [1, 2, 3], 10), r(2, [1, 2, 3], 9), r(3, [1, 2], 6), r(4, [1, 2, 7, 8], 14),
            r(5, [1, 2, 7, 8, 9], 20), r(6, [1], 4), r(7, [1, 2, 7, 8, 9], 17)]
    trace = read_trace([str(write_jsonl(tmp_path / "in.jsonl", recs))])
    want = agentic_v2.derive_v2(trace)
    assert _streamed(trace)[0] == dumps(want.header) + b"".join(dumps(x.to_agentic_v2()) for x in want.rows)
    priv = agentic_v2.private_block_id
    assert [list(x.hash_ids) for x in want.rows] == [
        [0, 1, priv("r0", 2, 10)], [0, 1, priv("r1", 2, 10)], [0, 1, priv("r2", 2, 9)], [0, priv("r3", 1, 6)],
        [0, 1, 3, priv("r4", 3, 14)], [0, 1, 3, 4, 5], [0], [0, 1, 3, 4, priv("r7", 4, 17)]]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 5), st.lists(st.integers(1, 6), max_size=4),
                          st.integers(0, 3)), min_size=1, max_size=14))
def test_streamed_ids_equal_the_lists_for_any_prefix_sharing(tmp_path_factory, spec):
    """Chains whose prompts keep a prefix of the last one and add blocks, with any partial last
    block: the text shortcut gives the ids `v2_ids` gives."""
    bs, last, recs = 4, {}, []
    for i, (chain, keep, new, short) in enumerate(spec):
        hashes = (last.get(chain, [])[:keep] + new) or [9]
        last[chain] = hashes
        x = req(f"r{i}", chain, None, 1000 + 10 * i, 1005 + 10 * i, hashes, bs=bs)
        x["request"]["replay"]["input_length"] = bs * len(hashes) - short  # a partial last block when short > 0
        recs.append(x)
    trace = read_trace([str(write_jsonl(tmp_path_factory.mktemp("ids") / "in.jsonl", recs))])
    want = agentic_v2.derive_v2(trace)
    assert _streamed(trace)[0] == dumps(want.header) + b"".join(dumps(x.to_agentic_v2()) for x in want.rows)
