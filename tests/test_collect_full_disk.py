"""`trace-pipe collect` on a disk that fills up (issue 22), a real one: a 64 kB tmpfs. The file
keeps only whole lines (`.jsonl`) and whole gzip members (`.jsonl.gz`) that `convert` reads in
full; the summary still prints and counts what was not written; one line names the file; exit 1."""

from __future__ import annotations

import re

import orjson
import pytest
from test_collect import _SUMMARY, _publisher_stats, _spawn_publisher, _start_cli
from test_hostile_options import small_disk  # noqa: F401  (the fixture)

from trace_pipe.pipeline.io import iter_lines

_LOST = re.compile(r", not written (\d+) \(the write failed\)")


@pytest.mark.parametrize("name", ["tools.jsonl", "tools.jsonl.gz"])
def test_full_disk_keeps_whole_lines_and_says_so(small_disk, name):  # noqa: F811
    out = small_disk / name
    p, endpoint = _start_cli(["--endpoint", "tcp://127.0.0.1:*", "-o", str(out), "--flush-interval-ms", "20",
                              "--buffer-bytes", "4096", "--max-messages", "20000"])
    # ~400 bytes a row: several times what the disk holds, even gzipped (the ids do not repeat)
    # paced (100 rows per 10 ms): the first flush is smaller than the disk, so some lines land
    pub = _spawn_publisher(endpoint, 20000, "p", pace=0.01)
    try:
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        pub.kill()
        pub.communicate()
    assert p.returncode == 1, err
    path = out if name.endswith(".jsonl") else small_disk / "tools.000000.jsonl.gz"
    summary, error = err.strip().splitlines()[-2:]
    assert _SUMMARY.search(summary), err
    received, written, dropped = map(int, _SUMMARY.search(summary).groups())
    lost = int(_LOST.search(summary).group(1))
    assert summary.endswith(f"; files: {path}")
    assert error == f"error: {path}: No space left on device (collecting stopped; every line before it is " \
                    f"complete on disk)"
    # every line on disk whole (iter_lines raises on a truncated gzip member), and counted
    rows = [orjson.loads(raw) for _, raw in iter_lines(str(path))]
    assert len(rows) == written > 0 and lost > 0 and dropped == 0
    assert received == written + lost
    ids = [r["event"]["tool"]["tool_call_id"] for r in rows]
    assert ids == [f"p-{i}" for i in range(written)]  # a gap-free prefix: nothing lost in between
    if name.endswith(".jsonl"):
        assert path.read_bytes().endswith(b"}\n")


def test_sink_write_error_is_one_line_naming_the_file(small_disk):  # noqa: F811
    """The sink alone: a flush that meets the full disk truncates back to the last whole line and
    raises one line naming the file; later flushes write nothing more."""
    from trace_pipe.tools.sink import JsonlSink, SinkWriteError

    path = small_disk / "t.jsonl"
    sink = JsonlSink(path, buffer_bytes=1 << 30)
    line = b'{"timestamp":0,"event":{"x":"' + b"y" * 1000 + b'"}}\n'
    with pytest.raises(SinkWriteError) as e:
        for _ in range(200):
            sink.add(line)
            if sink.rows % 10 == 0:
                sink.flush()
    assert str(e.value) == f"error: {path}: No space left on device"
    kept = path.read_bytes()
    assert kept and len(kept) % len(line) == 0 and kept == line * (len(kept) // len(line))
    sink.add(line)
    sink.close()
    assert path.read_bytes() == kept and sink.lost == sink.rows - len(kept) // len(line)
