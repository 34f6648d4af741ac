"""The collector's file sinks: envelopes, gzip members per flush, segment naming and rolling."""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest

from trace_pipe.pipeline.io import iter_lines
from trace_pipe.tools.sink import (GzipSegmentSink, JsonlSink, envelope_prefix, open_sink, segment_path,
                                   segment_prefix)


def _line(i: int, pad: int = 0) -> bytes:
    return envelope_prefix(i) + orjson.dumps({"i": i, "pad": "x" * pad}) + b"}\n"


def _members(path) -> int:
    data = open(path, "rb").read()
    n = 0
    while data:
        d = zlib.decompressobj(wbits=31)
        d.decompress(data)
        assert d.eof, "file ends inside a gzip member"
        data = d.unused_data
        n += 1
    return n


@pytest.mark.parametrize(("output", "prefix"), [
    ("tools.jsonl.gz", "tools"), ("tools.gz", "tools"), ("a/b.jsonl", "a/b"), ("plain", "plain"),
])
def test_segment_prefix_strips_like_dynamo(output, prefix):
    assert segment_prefix(output) == prefix
    assert segment_path(prefix, 7) == f"{prefix}.000007.jsonl.gz"


def test_each_flush_appends_one_complete_gzip_member(tmp_path):
    sink = GzipSegmentSink(tmp_path / "tools.jsonl.gz")
    for batch in range(3):
        for i in range(5):
            sink.add(_line(batch * 5 + i))
        sink.flush()
    sink.flush()  # nothing buffered: no empty member
    sink.close()
    assert sink.paths == [str(tmp_path / "tools.000000.jsonl.gz")]
    assert _members(sink.paths[0]) == 3 == sink.members
    rows = [orjson.loads(raw) for _, raw in iter_lines(sink.paths[0])]
    assert [r["event"]["i"] for r in rows] == list(range(15))
    assert [r["timestamp"] for r in rows] == list(range(15))
    # what Python's gzip module (Dynamo's docs: "gzip.open reads them fine") sees too
    assert gzip.open(sink.paths[0]).read().count(b"\n") == 15


def test_rolls_by_uncompressed_bytes_before_the_line_that_would_overflow(tmp_path):
    lines = [_line(i, pad=60) for i in range(7)]
    size = len(lines[0])
    assert all(len(x) == size for x in lines)
    sink = GzipSegmentSink(tmp_path / "t.jsonl.gz", roll_bytes=2 * size + size // 2)
    for x in lines:
        sink.add(x)
    sink.close()
    assert [p.rsplit("/", 1)[1] for p in sink.paths] == [
        "t.000000.jsonl.gz", "t.000001.jsonl.gz", "t.000002.jsonl.gz", "t.000003.jsonl.gz"]
    per_segment = [[orjson.loads(r)["event"]["i"] for _, r in iter_lines(p)] for p in sink.paths]
    assert per_segment == [[0, 1], [2, 3], [4, 5], [6]]
    for p in sink.paths:
        assert len(gzip.open(p).read()) <= 2 * size + size // 2


def test_a_line_larger_than_the_roll_size_still_gets_a_segment_of_its_own(tmp_path):
    sink = GzipSegmentSink(tmp_path / "t.jsonl.gz", roll_bytes=10)
    for i in range(3):
        sink.add(_line(i, pad=100))
    sink.close()
    assert len(sink.paths) == 3
    assert [len(list(iter_lines(p))) for p in sink.paths] == [1, 1, 1]


def test_roll_by_lines(tmp_path):
    sink = GzipSegmentSink(tmp_path / "t.jsonl.gz", roll_lines=4)
    for i in range(10):
        sink.add(_line(i))
    sink.close()
    assert [len(list(iter_lines(p))) for p in sink.paths] == [4, 4, 2]


def test_starts_at_the_first_segment_index_that_does_not_exist(tmp_path):
    existing = tmp_path / "t.000000.jsonl.gz"
    existing.write_bytes(gzip.compress(b'{"keep":1}\n'))
    (tmp_path / "t.000002.jsonl.gz").write_bytes(b"")
    sink = GzipSegmentSink(tmp_path / "t.jsonl.gz", roll_lines=1)
    for i in range(3):
        sink.add(_line(i))
    sink.close()
    assert [p.rsplit("/", 1)[1] for p in sink.paths] == [
        "t.000001.jsonl.gz", "t.000003.jsonl.gz", "t.000004.jsonl.gz"]
    assert gzip.decompress(existing.read_bytes()) == b'{"keep":1}\n'


def test_buffer_limit_triggers_a_flush(tmp_path):
    sink = GzipSegmentSink(tmp_path / "t.jsonl.gz", buffer_bytes=3 * len(_line(0)))
    for i in range(7):
        sink.add(_line(i))
    assert sink.members == 2  # flushed at 3 and 6 lines, the 7th still buffered
    sink.close()
    assert sink.members == 3


def test_jsonl_is_one_file_appended(tmp_path):
    path = tmp_path / "tools.jsonl"
    path.write_bytes(b'{"timestamp":0,"event":{"old":true}}\n')
    sink = open_sink(path)
    assert isinstance(sink, JsonlSink)
    sink.add(_line(1))
    sink.flush()
    assert path.read_bytes().count(b"\n") == 2  # on disk after a flush, before close
    sink.add(_line(2))
    sink.close()
    assert [orjson.loads(r)["event"] for _, r in iter_lines(str(path))] == [
        {"old": True}, {"i": 1, "pad": ""}, {"i": 2, "pad": ""}]


def test_open_sink_picks_gzip_by_suffix(tmp_path):
    sink = open_sink(tmp_path / "x.jsonl.gz")
    sink.close()
    assert isinstance(sink, GzipSegmentSink)
    assert sink.paths == [str(tmp_path / "x.000000.jsonl.gz")]


def test_open_sink_takes_an_explicit_format_over_the_suffix(tmp_path):
    # Dynamo's DYN_REQUEST_TRACE_FILE_FORMAT: jsonl_gz makes any path a segment prefix, jsonl a literal file
    gz = open_sink(tmp_path / "request-trace.jsonl", fmt="jsonl_gz")
    gz.close()
    assert isinstance(gz, GzipSegmentSink) and gz.paths == [str(tmp_path / "request-trace.000000.jsonl.gz")]
    plain = open_sink(tmp_path / "request-trace", fmt="jsonl")
    plain.close()
    assert isinstance(plain, JsonlSink) and plain.paths == [str(tmp_path / "request-trace")]


def test_stderr_sink_writes_bare_records_beside_the_file(tmp_path):
    import io

    from trace_pipe.tools.sink import StderrSink, TeeSink

    out = io.BytesIO()
    tee = TeeSink([JsonlSink(tmp_path / "t.jsonl"), StderrSink(out)])
    tee.add_many([_line(1), _line(2)], 2 * len(_line(1)))
    tee.add(_line(3))
    tee.close()
    assert out.getvalue() == b"".join(orjson.dumps({"i": i, "pad": ""}) + b"\n" for i in (1, 2, 3))
    assert (tmp_path / "t.jsonl").read_bytes() == _line(1) + _line(2) + _line(3)
    assert tee.rows == 3 and tee.paths == [str(tmp_path / "t.jsonl")]


def test_elapsed_ms_is_an_integer_from_sink_start(tmp_path):
    sink = JsonlSink(tmp_path / "a.jsonl")
    t = sink.elapsed_ms()
    sink.close()
    assert isinstance(t, int) and 0 <= t < 5000


def test_batches_roll_exactly_like_single_lines(tmp_path):
    lines = [_line(100 + i, pad=40) for i in range(50)]  # equal lengths
    size = len(lines[0])
    assert {len(x) for x in lines} == {size}
    one = GzipSegmentSink(tmp_path / "one.jsonl.gz", roll_bytes=7 * size)
    for x in lines:
        one.add(x)
    one.close()
    many = GzipSegmentSink(tmp_path / "many.jsonl.gz", roll_bytes=7 * size)
    for k in range(0, 50, 4):  # batches that do and do not fit the current segment
        batch = lines[k:k + 4]
        many.add_many(batch, sum(map(len, batch)))
    many.close()
    per = lambda s: [[orjson.loads(r)["event"]["i"] for _, r in iter_lines(p)] for p in s.paths]  # noqa: E731
    assert per(one) == per(many)
    assert [len(x) for x in per(many)] == [7] * 7 + [1]
