"""Engine arguments in 1.6's canonical launch-config shape (`{"engine": {...}}`), `backend`, and the
`fixed` timing model, against numbers ai-dynamo 1.6.1 reported for the same trace and arguments."""

from __future__ import annotations

import json

import orjson
import pytest
from typer.testing import CliRunner

from trace_pipe.cli.main import app
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.sim.config import EngineArgs

ROWS = [{"timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]},
        {"timestamp": 0.5, "input_length": 12, "output_length": 4, "hash_ids": [1, 3, 4]},
        {"timestamp": 30, "input_length": 4, "output_length": 1, "hash_ids": [9]}]

# ai-dynamo 1.6.1, round_robin x1, trace block 4, engine
# {"engine": {"block_size": 4, "timing_model": {"type": "fixed", "prefill_ms": 2.0, "decode_ms": 1.0}, ...}}:
# (arrival, first admit, first token, ttst, last token, reused) per row
FIXED_ORACLE = {
    1.0: ([(0.0, 0.0, 2.0, 3.0, 6.0, 0), (0.5, 2.0, 5.0, 1.0, 8.0, 4), (30.0, 30.0, 32.0, None, 32.0, 0)], 32.0),
    2.0: ([(0.0, 0.0, 1.0, 1.5, 3.0, 0), (0.5, 1.0, 2.5, 0.5, 4.0, 4), (30.0, 30.0, 31.0, None, 31.0, 0)], 31.0),
}


def _replay(tmp_path, engine: dict, *extra: str) -> tuple[dict, list[tuple]]:
    t = tmp_path / "t.jsonl"
    t.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ROWS))
    rep, jl = tmp_path / "r.json", tmp_path / "r.jsonl"
    res = CliRunner().invoke(app, ["replay", str(t), "--trace-block-size", "4", "--extra-engine-args",
                                   json.dumps(engine), "--report-json", str(rep), "--report-jsonl", str(jl), *extra])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in jl.read_text().splitlines()]
    return json.loads(rep.read_text()), [(r["arrival_time_ms"], r["first_admit_ms"], r["first_token_ms"], r["ttst_ms"],
                                          r["last_token_ms"], r["reused_input_tokens"]) for r in rows]


@pytest.mark.parametrize("speedup", [1.0, 2.0])
def test_fixed_timing_model_as_1_6_1(tmp_path, speedup):
    rows, duration = FIXED_ORACLE[speedup]
    rep, got = _replay(tmp_path, {"engine": {"block_size": 4, "speedup_ratio": speedup, "backend": "vllm",
                                             "timing_model": {"type": "fixed", "prefill_ms": 2.0, "decode_ms": 1.0}},
                                  "dp_size": 1})
    assert got == rows
    assert rep["duration_ms"] == duration


def test_nested_and_flat_engine_args_are_one_engine(tmp_path):
    flat = EngineArgs.from_json({"block_size": 4, "num_gpu_blocks": 100, "preemption_mode": "fifo"})
    nested = EngineArgs.from_json({"engine": {"block_size": 4, "num_gpu_blocks": 100, "preemption_mode": "fifo",
                                              "backend": "vllm", "timing_model": {"type": "polynomial"},
                                              "prefill_schedule_interval": 1, "sglang": {"schedule_policy": "fifo"}},
                                   "dp_size": 1, "tensor_parallel_size": 1, "dynamo": {"bootstrap_port": None}})
    assert nested == flat
    a, rows_a = _replay(tmp_path, {"block_size": 4})
    b, rows_b = _replay(tmp_path, {"engine": {"block_size": 4}})
    assert rows_a == rows_b and a["duration_ms"] == b["duration_ms"]


@pytest.mark.parametrize("engine, message", [
    ({"engine": {"backend": "sglang"}}, "error: --extra-engine-args: backend 'sglang' is not supported yet (vllm only)"),
    ({"engine": {"engine_type": "vllm"}},
     "error: --extra-engine-args: unknown field `engine.engine_type` (1.6 calls it `backend`)"),
    ({"engine": {"timing_model": {"type": "external"}}},
     "error: --extra-engine-args: timing_model type 'external' is not supported by trace-pipe replay (polynomial, "
     "fixed; or trace-pipe's --timing)"),
    ({"engine": {"timing_model": {"type": "fixed", "prefill_ms": "2", "decode_ms": 1}}},
     "error: --extra-engine-args: `timing_model.prefill_ms` must be a finite number >= 0"),
    ({"engine": {"timing_model": {"type": "fixed", "prefill_ms": 2, "decode_ms": 1, "jitter": 1}}},
     "error: --extra-engine-args: unknown field `timing_model.jitter`"),
    ({"engine": {}, "dp_size": 2},
     "error: --extra-engine-args: `dp_size` is not supported by trace-pipe replay (one aggregated vLLM engine per "
     "worker)"),
    ({"engine": {}, "replicas": 2}, "error: --extra-engine-args: unknown field `replicas`"),
    ({"engine": 4}, "error: --extra-engine-args: `engine` must be an object"),
])
def test_bad_launch_config_is_one_line(engine, message):
    with pytest.raises(TraceError) as e:
        EngineArgs.from_json(engine)
    assert str(e.value) == message


def test_fixed_timing_model_and_another_timing_is_a_choice(tmp_path):
    t = tmp_path / "t.jsonl"
    t.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ROWS))
    res = CliRunner().invoke(app, ["replay", str(t), "--trace-block-size", "4", "--timing-table", str(t),
                                   "--extra-engine-args", '{"engine": {"timing_model": {"type": "fixed", '
                                   '"prefill_ms": 1, "decode_ms": 1}}}', "--report-json", str(tmp_path / "r.json")])
    assert res.exit_code == 2
    assert "error: --timing table and the engine's timing_model fixed: choose one" in res.output
    assert not (tmp_path / "r.json").exists()
