"""Issue 22, options and process-level behaviour: every option value a hostile but realistic user
types is either used as meant or refused in one line naming the option (and the key), exit 2,
nothing written. Engine and router fields are typed where they are read (a string "false" is not
truthy), sizes and times are held to `pipeline.limits`, `sweep` refuses what `replay` refuses,
a failing sweep configuration is its error row, an internal bug is not dressed up as bad input,
and a failed output names itself and leaves no directories behind."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
from dataclasses import fields
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from trace_pipe.cli import sweep_cmd
from trace_pipe.cli.main import _register, app
from trace_pipe.pipeline import limits
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.sim import sweep
from trace_pipe.sim.config import EngineArgs, RouterConfig
from trace_pipe.sim.replay import ReplayOptions, run_replay

_register()
WEKA = Path(__file__).resolve().parents[1] / "fixtures" / "trace_0277.json"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _trace(tmp_path: Path, n: int = 8) -> str:
    """`n` requests in two groups sharing a 2-block prefix (block size 16)."""
    rows = [{"timestamp": float(i), "input_length": 64, "output_length": 4,
             "hash_ids": [100 * (i % 2) + 1, 100 * (i % 2) + 2, 1000 + i, 2000 + i]} for i in range(n)]
    p = tmp_path / "t.jsonl"
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return str(p)


def _refused(res, line: str, out_dir: Path, before: set[str]) -> None:
    """Exit 2, exactly `line` on stderr, no traceback, and nothing new in `out_dir`."""
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 2, res.output
    assert res.stderr == line + "\n"
    assert set(os.listdir(out_dir)) == before


# -- typed fields ---------------------------------------------------------------------------

def test_false_as_a_string_is_an_error_not_prefix_caching_on(tmp_path):
    """trace_0277: a real `false` turns prefix caching off (reuse 0); the string "false" (or "no")
    used to turn it ON (reuse 0.87, the default's number)."""
    report = tmp_path / "r.json"
    res = invoke("replay", str(WEKA), "--trace-format", "weka", "--extra-engine-args",
                 '{"enable_prefix_caching": false}', "--report-json", str(report))
    assert res.exit_code == 0, res.output
    assert json.loads(report.read_text())["prefix_cache_reused_ratio"] == 0.0
    report.unlink()
    for text in ('"false"', '"no"', '0'):
        for key in ("enable_prefix_caching", "enable_chunked_prefill"):
            res = invoke("replay", str(WEKA), "--trace-format", "weka", "--extra-engine-args",
                         f'{{"{key}": {text}}}', "--report-json", str(report))
            got = "0" if text == "0" else "a string"
            _refused(res, f"error: --extra-engine-args: {key}: expected a boolean, got {got}", tmp_path, set())


def _wrong_values(kind: str) -> list[tuple[object, str]]:
    """Values of the wrong JSON type for a field declared `kind`, with how the error names them."""
    base = kind.split("|")[0].strip()
    return {
        "bool": [("false", "a string"), (0, "0"), (None, "null") if "None" not in kind else ([], "a list")],
        "int": [("64", "a string"), (64.0, "64.0"), (True, "a boolean")],
        "float": [("1", "a string"), (True, "a boolean"), ({}, "an object")],
        "str": [(3, "3"), (False, "a boolean"), (["vllm"], "a list")],
    }[base]


_EXPECTED = {"bool": "a boolean", "int": "an integer", "float": "a number", "str": "a string"}
_ENGINE_FIELDS = [(f.name, str(f.type)) for f in fields(EngineArgs)
                  if f.name not in ("timing_model", "fixed_prefill_ms", "fixed_decode_ms")]
_ROUTER_FIELDS = [(f.name, str(f.type)) for f in fields(RouterConfig)]


@pytest.mark.parametrize("cls, flag, name, kind",
                         [(EngineArgs, "--extra-engine-args", n, k) for n, k in _ENGINE_FIELDS]
                         + [(RouterConfig, "--router-config", n, k) for n, k in _ROUTER_FIELDS])
def test_every_field_is_typed_where_it_is_read(cls, flag, name, kind):
    """Each field of EngineArgs and RouterConfig, in Dynamo's flat and (engine) nested shapes:
    a value of another JSON type is one line naming the option and the key."""
    base = kind.split("|")[0].strip()
    for value, shown in _wrong_values(kind):
        shapes = [{name: value}] + ([{"engine": {name: value}}] if cls is EngineArgs and name != "engine_type" else [])
        for d in shapes:
            with pytest.raises(TraceError) as e:
                cls.from_json(d)
            assert str(e.value) == f"error: {flag}: {name}: expected {_EXPECTED[base]}, got {shown}"


def test_router_strings_are_errors_not_tracebacks(tmp_path):
    """Router weights and the queue threshold as strings, through the CLI (the threshold used to
    reach the router's comparison and raise TypeError mid-run)."""
    trace = _trace(tmp_path)
    out = tmp_path / "o"
    out.mkdir()
    for key in ("overlap_score_weight", "router_queue_threshold", "router_temperature", "prefill_load_scale",
                "decode_active_request_weight"):
        res = invoke("replay", trace, "--router-mode", "kv_router", "--trace-block-size", "16",
                     "--extra-engine-args", '{"block_size": 16}', "--router-config", f'{{"{key}": "2"}}',
                     "--report-json", str(out / "r.json"))
        shown = "overlap_score_weight" if key == "prefill_load_scale" else key
        _refused(res, f"error: --router-config: {shown}: expected a number, got a string", out, set())


# -- limits ---------------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("args, line", [
    (["--num-workers", "1000000"], "error: --num-workers: 1,000,000 is above the limit of 4,096 (workers)"),
    (["--extra-engine-args", '{"num_gpu_blocks": 1000000000000000}'],
     "error: --extra-engine-args: num_gpu_blocks: 1,000,000,000,000,000 is above the limit of 67,108,864 blocks "
     "(KV blocks per worker)"),
    (["--extra-engine-args", '{"engine": {"speedup_ratio": 1e-300}}'],
     "error: --extra-engine-args: speedup_ratio: 1e-300 is below the limit of 1e-06 (speed-up ratio)"),
    (["--extra-engine-args", '{"block_size": 1000000000000}'],
     "error: --extra-engine-args: block_size: 1,000,000,000,000 is above the limit of 1,048,576 tokens "
     "(tokens per KV block)"),
    (["--max-sim-time-seconds", "1e300"],
     "error: --max-sim-time-seconds: 1e+300 is above the limit of 9,223,372,035 s (seconds)"),
    (["--trace-block-size", str(10**18)],
     "error: --trace-block-size: 1,000,000,000,000,000,000 is above the limit of 1,048,576 tokens "
     "(tokens per KV block)"),
    (["--arrival-speedup-ratio", "1e-300"],
     "error: --arrival-speedup-ratio: 1e-300 is below the limit of 1e-06 (speed-up ratio)"),
    (["--extra-engine-args", DEEP],
     "error: --extra-engine-args: JSON nested 100,000 levels deep, above the limit of 256 (JSON nesting depth)"),
    (["--router-config", '{"a": ' * 100_000 + "1" + "}" * 100_000],
     "error: --router-config: JSON nested 100,000 levels deep, above the limit of 256 (JSON nesting depth)"),
])
def test_limits_are_one_line_errors_naming_the_option(tmp_path, args, line):
    trace = _trace(tmp_path)
    out = tmp_path / "o"
    out.mkdir()
    res = invoke("replay", trace, "--trace-block-size", "16", "--extra-engine-args", '{"block_size": 16}',
                 "--report-json", str(out / "r.json"), *args)
    _refused(res, line, out, set())


@pytest.mark.parametrize("args, line", [
    (["--arrival-speedup-ratio", "0"], "error: --arrival-speedup-ratio must be a finite number > 0, got 0"),
    (["--num-workers", "1,5000"], "error: --num-workers: 5,000 is above the limit of 4,096 (workers)"),
])
def test_sweep_refuses_what_replay_refuses(tmp_path, args, line):
    """`sweep --arrival-speedup-ratio 0` wrote a CSV of error rows (exit 1) where replay refused
    the value; both now refuse it before reading the trace, in the same words."""
    trace = _trace(tmp_path)
    out = tmp_path / "o"
    out.mkdir()
    res = invoke("sweep", trace, "--trace-block-size", "16", "--csv", str(out / "s.csv"), *args)
    _refused(res, line, out, set())
    if args[0] == "--arrival-speedup-ratio":
        res = invoke("replay", trace, "--trace-block-size", "16", "--report-json", str(out / "r.json"), *args)
        _refused(res, line, out, set())


def test_kv_pool_memory_follows_the_trace_not_num_gpu_blocks(tmp_path):
    """A worker given 4M KV blocks replays a small trace in a few kB: blocks come into being when
    first used (it held three num_gpu_blocks-long lists, ~200 MB here, 1.6 GB at the limit)."""
    from trace_pipe.pipeline.replay_input import load_input

    inp = load_input([_trace(tmp_path)], "mooncake", 16)
    rows, sources = inp.rows, inp.sources
    small = run_replay(rows, sources, inp.sim_format,
                       ReplayOptions(trace_block_size=16, engine=EngineArgs.from_json({"block_size": 16})))
    tracemalloc.start()
    try:
        big = run_replay(rows, sources, inp.sim_format,
                         ReplayOptions(trace_block_size=16,
                                       engine=EngineArgs.from_json({"block_size": 16, "num_gpu_blocks": 1 << 22})))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    # (pass times differ: Dynamo's timing reads the KV usage fraction, which the pool size changes)
    assert [(r.status, r.cached_tokens) for r in big.requests] == [(r.status, r.cached_tokens) for r in small.requests]
    assert sum(r.cached_tokens for r in big.requests) == 6 * 32


# -- sweep: a failing configuration is its row ------------------------------------------------

@pytest.mark.parametrize("jobs", [1, 2])
def test_a_configuration_that_raises_is_its_error_row(tmp_path, monkeypatch, jobs):
    """A bug in one configuration (here an exception injected into its replay: the pool's workers
    fork from this process, so they see the patch) came back as two tracebacks and lost the
    healthy rows; now it is that configuration's one-line error row and the others are kept."""
    trace = _trace(tmp_path)
    clean = sweep_cmd.run([trace], num_workers="1,2,3", trace_block_size=16, jobs=1, out=io.StringIO(),
                          err=io.StringIO())
    real = sweep.run_replay

    def flaky(rows, sources, fmt, opts, progress=None):
        if opts.num_workers == 2:
            raise RuntimeError("boom\nsecond line")
        return real(rows, sources, fmt, opts, progress)

    monkeypatch.setattr(sweep, "run_replay", flaky)
    csv = tmp_path / "s.csv"
    res = invoke("sweep", trace, "--num-workers", "1,2,3", "--trace-block-size", "16", "--jobs", str(jobs),
                 "--csv", str(csv))
    assert res.exit_code == 0, res.output
    lines = csv.read_text().splitlines()
    assert len(lines) == 4
    assert lines[2] == '2,round_robin,,,,,,,,,,,,,"error: internal error (a bug, please report it): RuntimeError: boom"'
    assert [lines[1], lines[3]] == sweep.to_csv([clean[0], clean[2]]).decode().splitlines()[1:]
    assert "Traceback" not in res.output


def test_a_configuration_that_raises_on_ray_is_its_error_row(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
    from trace_pipe.pipeline.replay_input import load_input
    from trace_pipe.sim import sweep_ray

    inp = load_input([_trace(tmp_path)], "mooncake", 16)
    spec = sweep.SweepSpec(inp.sim_format, inp.block_size, EngineArgs.from_json({"block_size": 16}),
                           RouterConfig.from_json(None), None)
    points = sweep.grid([1, 2], ["round_robin"])
    local = sweep.run_sweep(inp.rows, inp.sources, spec, points, jobs=1)
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    # loopback only, no usage statistics (as tests/test_sweep_ray.py)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        res = sweep_ray.run_sweep_ray(inp.rows, inp.sources, spec, points, point_fn=_raises_for_two_workers)
    finally:
        ray.shutdown()
    assert res[0] == local[0]
    assert res[1] == {"num_workers": 2, "router_mode": "round_robin",
                      "error": "error: internal error (a bug, please report it): ZeroDivisionError: integer division or modulo by zero"}


def _raises_for_two_workers(rows, sources, spec, p):
    if p.num_workers == 2:
        return 1 // 0
    return sweep.run_point(rows, sources, spec, p)


# -- bugs are bugs; notes never precede the error -------------------------------------------

def test_an_internal_value_error_is_a_bug_not_bad_input(tmp_path, monkeypatch):
    """`user_errors` turned any ValueError into "error: ..." and exit 2, hiding a bug as bad
    input; only TraceError (and what the system refuses, OSError) is the user's."""
    from trace_pipe.sim import report

    def broken(*a, **k):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(report, "summary", broken)
    res = invoke("replay", _trace(tmp_path), "--trace-block-size", "16", "--report-json", str(tmp_path / "r.json"))
    assert isinstance(res.exception, ValueError) and res.exit_code == 1
    assert "error: an internal invariant broke" not in res.stderr


def test_replay_error_is_the_one_line_on_stderr(tmp_path):
    """WEKA input prints reader notes; an error after reading (a bad engine field) used to come
    after them, so stderr was three lines; the notes now print only once the run succeeded."""
    out = tmp_path / "o"
    out.mkdir()
    res = invoke("replay", str(WEKA), "--trace-format", "weka", "--extra-engine-args", '{"max_num_seqs": "8"}',
                 "--report-json", str(out / "r.json"))
    _refused(res, "error: --extra-engine-args: max_num_seqs: expected an integer, got a string", out, set())
    res = invoke("replay", str(WEKA), "--trace-format", "weka", "--report-json", str(out / "r.json"))
    assert res.exit_code == 0 and res.stderr.startswith("note: ")
    res = invoke("sweep", str(WEKA), "--trace-format", "weka", "--timing", "recorded", "--csv", str(out / "s.csv"))
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: --timing recorded")


def test_perfetto_past_the_int64_clock_names_the_option(tmp_path):
    """Arrivals 9e9 ms apart at a 1e-6 speed-up end past int64 nanoseconds: the encoder raised a
    ValueError naming no file; now the option is named with the limit, and nothing is written."""
    t = tmp_path / "t.jsonl"
    t.write_bytes(b'{"timestamp": 0, "input_length": 16, "output_length": 2, "hash_ids": [1]}\n'
                  b'{"timestamp": 9000000000, "input_length": 16, "output_length": 2, "hash_ids": [2]}\n')
    out = tmp_path / "o"
    out.mkdir()
    res = invoke("replay", str(t), "--trace-block-size", "16", "--arrival-speedup-ratio", "0.000001",
                 "--perfetto", str(out / "p.pftrace"), "--report-json", str(out / "r.json"))
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert res.stderr.startswith(f"error: --perfetto {out / 'p.pftrace'}: the simulated run's end: ")
    assert res.stderr.endswith(" is above the limit of 9,223,372,036,853 ms (milliseconds)\n")
    assert os.listdir(out) == []


# -- failed outputs -------------------------------------------------------------------------

def test_a_failed_output_leaves_no_directories_it_created(tmp_path):
    """The report is written (into directories made for it) before the Perfetto trace fails:
    neither the report, nor its temp file, nor new/deeper/ is left behind."""
    t = tmp_path / "t.jsonl"
    t.write_bytes(b'{"timestamp": 0, "input_length": 16, "output_length": 2, "hash_ids": [1]}\n'
                  b'{"timestamp": 9000000000, "input_length": 16, "output_length": 2, "hash_ids": [2]}\n')
    res = invoke("replay", str(t), "--trace-block-size", "16", "--arrival-speedup-ratio", "0.000001",
                 "--report-json", str(tmp_path / "new" / "deeper" / "r.json"),
                 "--perfetto", str(tmp_path / "new" / "p.pftrace"))
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert sorted(os.listdir(tmp_path)) == ["t.jsonl"]


@pytest.fixture
def small_disk(tmp_path):
    """A 64 kB tmpfs (a real full disk); skipped where mounting is not allowed (not root)."""
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_a_full_disk_names_the_output_and_leaves_nothing(tmp_path, small_disk):
    """A Perfetto trace larger than the disk: the error names the output (it said only "No space
    left on device"), exit 2, and neither the temp file nor the directories it created remain."""
    rows = [{"timestamp": float(i), "input_length": 64, "output_length": 16, "hash_ids": [i, 10**6 + i]}
            for i in range(600)]
    t = tmp_path / "t.jsonl"
    t.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    target = small_disk / "new" / "sub" / "x.pftrace"
    res = invoke("replay", str(t), "--trace-block-size", "32", "--perfetto", str(target),
                 "--report-json", str(tmp_path / "r.json"))
    assert res.exit_code == 2, res.output
    assert res.stderr == f"error: {target}: No space left on device\n"
    assert os.listdir(small_disk) == [] and not (tmp_path / "r.json").exists()


def test_run_file_nested_past_the_limit_is_one_line(tmp_path):
    """A run file (or a --set value) nested 5,000 deep: PyYAML's composer recursed into a
    RecursionError traceback; the depth is now counted on the parser's events first."""
    cfg = tmp_path / "deep.yaml"
    cfg.write_text("traffic: " + "[" * 5000 + "]" * 5000 + "\n")
    out = tmp_path / "o"
    out.mkdir()
    res = invoke("replay", "--config", str(cfg), "--report-json", str(out / "r.json"))
    _refused(res, f"error: --config {cfg}: nested more than 256 levels deep (JSON nesting depth)", out, set())
    cfg.write_text(f"traffic: {{source: {{paths: [{_trace(tmp_path)}], format: mooncake}}}}\n")
    res = invoke("replay", "--config", str(cfg), "--set", "traffic.load.speedup=" + "[" * 5000 + "]" * 5000,
                 "--report-json", str(out / "r.json"))
    _refused(res, "error: --set traffic.load.speedup: nested more than 256 levels deep (JSON nesting depth)", out,
             set())


@pytest.mark.parametrize("command", ["replay", "sweep"])
def test_timing_file_is_not_a_timing_name(tmp_path, command):
    """Found by the option fuzzer: `--timing file` (the internal name of a loaded fit) reached
    the fit loader with no file and raised TypeError."""
    out = tmp_path / "o"
    out.mkdir()
    dest = ["--report-json", str(out / "r.json")] if command == "replay" else ["--csv", str(out / "s.csv")]
    res = invoke(command, _trace(tmp_path), "--trace-block-size", "16", "--timing", "file", *dest)
    _refused(res, "error: --timing must be one of dynamo, fit, recorded, table, got 'file'", out, set())
