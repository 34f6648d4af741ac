"""Cross-check against Perfetto's own trace processor. No package registry ships
`trace_processor_shell`: these run with TRACE_PIPE_TP_BIN (the variable `trace-pipe check --tp-bin`
reads) or, when it is unset, the binary at ../shared/tools/trace_processor_shell (tp_binary.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from trace_pipe import proto
from trace_pipe.pipeline import agentic_v1, readers
from trace_pipe.proto import synthetic
from trace_pipe.proto.check import check_file
from trace_pipe.proto.packets import frame

from tp_binary import TP_BIN, needs_tp, verify

pytestmark = needs_tp
WEKA = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "kv_cache_tester_traces"


def test_generated_trace_loads_with_matching_counts(tmp_path):
    paths = []
    for gen, rows in synthetic.dynamo_records().items():
        p = tmp_path / f"{gen}.jsonl"
        synthetic.write_jsonl(rows, str(p))
        paths.append(str(p))
    trace = readers.read_trace(paths)
    edges = agentic_v1.derive(trace).edges
    for name in ("o.pftrace", "o.pftrace.gz"):
        out = tmp_path / name
        stats = proto.write_perfetto(trace, edges, out)
        rep = check_file(out, tp_bin=TP_BIN)
        assert rep.ok, rep.lines()
        assert {k: v for k, v in rep.tp.items() if k != "tracks"} == {
            "slices": rep.slices + rep.instants, "flows": len(edges), "counter samples": rep.counter_samples}
        assert rep.tp["tracks"] <= rep.tracks
        got = verify(out, edges=edges, stats=stats)
        assert got["tracks"] == stats.tracks and got["flows"] == len(edges) and got["requests"] == len(trace.requests)


def test_weka_trace_loads_with_matching_counts(tmp_path):
    path = WEKA / "trace_0256.json"
    if not path.exists():
        pytest.skip(f"missing {path}")
    trace = readers.read_trace([str(path)])
    edges = agentic_v1.derive(trace).edges
    out = tmp_path / "w.pftrace"
    stats = proto.write_perfetto(trace, edges, out)
    rep = check_file(out, tp_bin=TP_BIN)
    assert rep.ok, rep.lines()
    assert rep.tp["flows"] == len(edges)
    assert verify(out, edges=edges, stats=stats)["flows"] == len(edges)


def test_trace_processor_stats_are_reported(tmp_path):
    p = pb.TracePacket(timestamp=10)  # no trusted_packet_sequence_id: dropped with an error stat
    p.track_event.type = pb.TrackEvent.TYPE_INSTANT
    p.track_event.name = "x"
    out = tmp_path / "bad.pftrace"
    out.write_bytes(frame(p.SerializeToString()))
    rep = check_file(out, tp_bin=TP_BIN)
    assert any("track_event_missing_sequence_id" in x for x in rep.problems), rep.lines()


def test_load_check_catches_what_the_file_does_not_say(tmp_path):
    """verify_loaded is no rubber stamp: a flow the DAG has no edge for, or a writer that meant
    more slices than trace processor finds, fails it."""
    from tp_binary import verify_loaded

    gen = synthetic.dynamo_records()
    p = tmp_path / "g.jsonl"
    synthetic.write_jsonl(gen["G3b"], str(p))
    trace = readers.read_trace([str(p)])
    edges = agentic_v1.derive(trace).edges
    out = tmp_path / "o.pftrace"
    stats = proto.write_perfetto(trace, edges, out)
    assert verify_loaded(out, edges=edges, stats=stats)["flows"] == len(edges) > 2
    with pytest.raises(AssertionError, match="is no edge of the DAG"):
        verify_loaded(out, edges=edges[1:])
    with pytest.raises(AssertionError, match="the writer meant"):
        verify_loaded(out, stats=type(stats)(**{**{f: getattr(stats, f) for f in stats.__dataclass_fields__},
                                                "slices": stats.slices + 1}))


def test_sweep_finds_traces_by_content(tmp_path):
    """The end-of-test sweep loads what trace-pipe wrote whatever the file is called (`--perfetto
    out`), gzipped or not, protobuf or Chrome JSON, and nothing else (Mooncake rows, hand-made
    packets, a FIFO, which it must not open)."""
    from tp_binary import Sweep, sniff

    p = tmp_path / "g.jsonl"
    synthetic.write_jsonl(synthetic.dynamo_records()["G2"], str(p))
    trace = readers.read_trace([str(p)])
    edges = agentic_v1.derive(trace).edges
    proto.write_perfetto(trace, edges, tmp_path / "out")
    proto.write_perfetto(trace, edges, tmp_path / "out2", gz=True)
    proto.write_chrome_json(trace, edges, tmp_path / "j.json.gz")
    (tmp_path / "bare.pftrace").write_bytes(frame(pb.TracePacket(timestamp=1).SerializeToString()))
    os.mkfifo(tmp_path / "fifo")
    assert {f.name: sniff(f) for f in tmp_path.iterdir() if f.name != "fifo"} == {
        "g.jsonl": None, "out": "perfetto", "out2": "perfetto", "j.json.gz": "chrome-json", "bare.pftrace": None}
    sweep = Sweep()
    sweep.scan(tmp_path)
    assert sweep.loaded == 3
    sweep.scan(tmp_path)  # each file once
    assert sweep.loaded == 3
