"""The DistServe `.exp` reader on hostile input (#22): memory bounded by what it keeps, huge
token counts a one-line error, malformed lists named by request."""

from __future__ import annotations

import tracemalloc

import pytest

from trace_pipe.pipeline.distserve import read_distserve
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.limits import TOKENS

REC = ("{{'prompt_len': {p}, 'output_len': 170, 'issue_time': {t}, 'first_token_time': {f}, "
       "'complete_time': {c}, 'ttft_ms': 141.09998786449432, 'tpot_ms': 25.8, 'latency_ms': 2305.6}}")
OK = "{'prompt_len': 5, 'output_len': 2, 'issue_time': 1.0, 'first_token_time': 1.1, 'complete_time': 1.2}"


def exp(path, prompts, summary="{\n\t'num_requests': 1\n}\n"):
    items = (REC.format(p=p, t=100.0 + i, f=100.1 + i, c=102.0 + i) for i, p in enumerate(prompts))
    path.write_text("[" + ", ".join(items) + "]\n" + summary)
    return path


def peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_a_small_multiple_of_the_file(tmp_path):
    """A whole-line `ast.literal_eval` peaked at ~85x the file (120x RSS: 19 MB took 2.4 GB); one
    dict at a time the peak is what the requests keep, ~4x."""
    p = exp(tmp_path / "m.exp", [100 + i % 1900 for i in range(5000)])
    size = p.stat().st_size
    trace = None

    def read():
        nonlocal trace
        trace = read_distserve(str(p))

    assert peak_bytes(read) < 8 * size
    assert len(trace.requests) == 5000
    r = trace.requests[1]
    assert (r.request_id, r.input_length, r.output_tokens, r.start_ms, r.end_ms) == ("m#1", 101, 170, 101000, 103000)
    assert r.ttft_ms == pytest.approx(100.0) and r.total_time_ms == pytest.approx(2000.0)
    # hash ids: one per 16 prompt tokens, consecutive and never shared
    assert list(trace.requests[0].hashes) == list(range(7)) and list(r.hashes) == list(range(7, 14))


def test_hash_ids_stay_compact_at_the_token_limit(tmp_path):
    """1,000 requests at the token limit: 4M hash ids each would be 32 MB apiece as an array;
    a range keeps each at a few dozen bytes."""
    p = exp(tmp_path / "t.exp", [TOKENS.maximum] * 1000)
    trace = None

    def read():
        nonlocal trace
        trace = read_distserve(str(p))

    assert peak_bytes(read) < 4_000_000
    assert len(trace.requests[-1].hashes) == TOKENS.maximum // 16
    assert trace.requests[-1].hashes[-1] == 1000 * (TOKENS.maximum // 16) - 1


@pytest.mark.parametrize("field", ["prompt_len", "output_len"])
def test_token_counts_past_the_limit_are_one_line_errors(tmp_path, field):
    p = tmp_path / "big.exp"
    vals = {"prompt_len": 5, "output_len": 2, field: 10 ** 12}
    p.write_text(f"[{{'prompt_len': {vals['prompt_len']}, 'output_len': {vals['output_len']}, 'issue_time': 1.0, "
                 "'first_token_time': 1.1, 'complete_time': 1.2}]\n")
    with pytest.raises(TraceError) as e:
        read_distserve(str(p))
    assert str(e.value) == (f"{p}:1: request 0: field `{field}`: 1,000,000,000,000 is above the limit of "
                            "67,108,864 tokens (tokens in one request)")


@pytest.mark.parametrize("text, message", [
    ("[{'prompt_len': {'a': 1}}]\n", "request 0: expected a flat dict of numbers (no nested braces)"),
    ("[{'prompt_len': 5, 'output_len': 2\n", "request 0: the dict is not closed before the end of line 1"),
    ("[{'a': " + "1" * 70000, "request 0: longer than 65,536 bytes: not a request dict"),
    ("[5]\n", "request 0: expected a dict of numbers, got '5'..."),
    ("[{1, 2}]\n", "request 0: expected a dict, got set"),
    ("[{'a': " + "(" * 10000 + "}]\n", "request 0: not a Python-literal dict (SyntaxError)"),
    ("[]\n", "not a DistServe result: line 1 must be a non-empty list of request dicts"),
    (f"[{OK}] tail\n", "not a DistServe result: line 1 must be a Python-literal list of request dicts: "
                          "text after the closing `]`"),
    (f"[{OK} {OK}]\n", "not a DistServe result: line 1 must be a Python-literal list of request dicts: "
                              "expected `,` or `]` after request 0"),
    ("", "not a DistServe result: line 1 must be a Python-literal list of request dicts"),
])
def test_malformed_lists_are_one_line_errors(tmp_path, text, message):
    p = tmp_path / "bad.exp"
    p.write_text(text)
    with pytest.raises(TraceError) as e:
        read_distserve(str(p))
    assert str(e.value) == f"{p}:1: {message}"


def test_streamed_across_chunk_boundaries(tmp_path, monkeypatch):
    """Dicts split across reads, a trailing comma and the summary lines after line 1."""
    from trace_pipe.pipeline import distserve
    monkeypatch.setattr(distserve, "_CHUNK", 7)
    p = exp(tmp_path / "c.exp", [20, 40, 60])
    p.write_text(p.read_text().replace("]\n", ", ]\n", 1))
    t = read_distserve(str(p))
    assert [r.input_length for r in t.requests] == [20, 40, 60]
    assert [list(r.hashes) for r in t.requests] == [[0, 1], [2, 3, 4], [5, 6, 7, 8]]
