"""§6.3 M5-M7: G3c-late `output_token_ids` from `completion_sequence_hashes` (with --g3c-rules),
in plain and agentic v1 rows, and the G3c loader checks on those hashes."""

from __future__ import annotations

import io

import pytest

from dynamo_records import read_jsonl, req, write_jsonl
from trace_pipe.cli.convert_cmd import run_convert
from trace_pipe.pipeline.errors import TraceError

BS = 2


def rec(rid, chain, parent, start, end, hashes, output, completion=None, input_length=None):
    r = req(rid, chain, parent, start, end, hashes, output_tokens=output)
    if input_length is not None:
        r["request"]["replay"]["input_length"] = input_length
    if completion is not None:
        r["request"]["replay"]["completion_sequence_hashes"] = completion
    return r


def rows(tmp_path, recs, *, agentic=True, g3c=True):
    src = write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "o.jsonl"
    run_convert([str(src)], mooncake=str(out), agentic_rows=agentic, fmt="v1", g3c_rules=g3c, out=io.StringIO(),
                err=io.StringIO())
    return read_jsonl(out)


def expand(ids):
    return [i for i in ids for _ in range(BS)]


@pytest.mark.parametrize("agentic", [True, False])
def test_m5_exact_continuation(tmp_path, agentic):
    chain, kid = ("root", "root") if agentic else (None, None)
    parent = rec("parent", chain, None, 1000, 1100, [11], 2, [11, 22])
    child = rec("child", kid, None, 1200, 1300, [11, 22], 1, [11, 22, 33])
    p, c = rows(tmp_path, [parent, child], agentic=agentic)
    keys = ["input_length", "output_length", "output_token_ids", "hash_ids", "timestamp"]  # §4.3 / §4.4 order
    if agentic:
        keys = ["request_id", "session_id"] + keys
    assert list(p)[:len(keys)] == keys
    # input hashes first (11 -> 0, 22 -> 1), then completion blocks (33 -> 2)
    assert (p["hash_ids"], p["output_token_ids"], c["hash_ids"], c["output_token_ids"]) == ([0], [1, 1], [0, 1], [2])
    assert expand(p["hash_ids"]) + p["output_token_ids"] == expand(c["hash_ids"])


def test_m6_partial_input_block(tmp_path):
    parent = rec("parent", "root", None, 1000, 1100, [11, 12], 1, [11, 22], input_length=3)
    child = rec("child", "root", None, 1200, 1300, [11, 22], 1)
    p, c = rows(tmp_path, [parent, child])
    assert (p["hash_ids"], p["output_token_ids"], c["hash_ids"]) == ([0, 2], [2], [0, 2])
    assert "output_token_ids" not in c


def test_m7_legacy_rows_and_default_rules_have_none(tmp_path):
    assert all("output_token_ids" not in r for r in rows(tmp_path, [rec("a", "root", None, 1000, 1100, [11], 2)]))
    with_completion = [rec("a", "root", None, 1000, 1100, [11], 2, [11, 22])]
    assert all("output_token_ids" not in r for r in rows(tmp_path, with_completion, g3c=False))  # G2-G3b rules


def test_g3c_checks_the_completion_hashes(tmp_path):
    with pytest.raises(TraceError, match=r"in\.jsonl:1: field `request\.replay\.completion_sequence_hashes`: "
                                         r"input_length 2 plus output_tokens 2 with trace_block_size 2 requires "
                                         r"exactly 2 completion hashes, got 3"):
        rows(tmp_path, [rec("a", "root", None, 1000, 1100, [11], 2, [11, 22, 33])])
    with pytest.raises(TraceError, match="the first 1 completion hashes \\(the full input blocks\\) must equal "
                                         "input_sequence_hashes"):
        rows(tmp_path, [rec("a", "root", None, 1000, 1100, [11], 2, [12, 22])])
