"""`trace-pipe replay --config run.yaml` (issue 20): the run file of `aisimulate predict --stack
dynamo`. Each documented example (tests/data/run_configs, the README's) gives the same report as
the same replay by flags, and, where ai-dynamo 1.6.1 is installed (TRACE_PIPE_ORACLE16_PYTHON,
default /work/oracle16/bin/python), as 1.6.1's `run_trace_replay` given the file's settings
(mapped here, independently of cli/run_config.py); bad files are one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dynamo_records import FIXTURES
from typer.testing import CliRunner

from trace_pipe.cli import run_config
from trace_pipe.cli import replay_cmd
from trace_pipe.cli.main import _register, app

_register()
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "data" / "run_configs"
CONVERSATION = FIXTURES / "mooncake" / "conversation_trace.jsonl"
WALL = ("wall_time_ms", "processed_tokens_per_s", "processed_output_tokens_per_s")


def invoke(*args: str):
    return CliRunner().invoke(app, ["replay", *args])


def stage(name: str, where: Path) -> Path:
    """The example's traces, where its relative paths point (the working directory `where`)."""
    if name == "weka-agentic":
        (where / "fixtures").mkdir()
        shutil.copy(ROOT / "fixtures" / "trace_0277.json", where / "fixtures")
    elif name == "agentic-v2":
        r = CliRunner().invoke(app, ["convert", str(ROOT / "fixtures" / "trace_0277.json"), "--agentic",
                                     "--mooncake", str(where / "trace_0277.v2.jsonl")])
        assert r.exit_code == 0, r.stderr
    elif name == "mooncake-kv-router":
        if not CONVERSATION.exists():
            pytest.skip("shared/fixtures/mooncake not present")
        with CONVERSATION.open() as f:  # its first 400 requests (about 3 simulated minutes)
            (where / "conversation_trace.jsonl").write_text("".join(next(f) for _ in range(400)))
    return EXAMPLES / f"{name}.yaml"


# the same replays by flags, written out by hand
ENGINE = {"weka-agentic": {"block_size": 64, "num_gpu_blocks": 16384, "timing_model": {"type": "polynomial"}},
          "agentic-v2": {"block_size": 64, "num_gpu_blocks": 16384, "timing_model": {"type": "polynomial"}},
          "mooncake-kv-router": {"block_size": 64, "num_gpu_blocks": 4096, "max_num_seqs": 64,
                                 "max_num_batched_tokens": 4096,
                                 "timing_model": {"type": "fixed", "prefill_ms": 2.0, "decode_ms": 1.0}}}
FLAGS = {
    "weka-agentic": ["fixtures/trace_0277.json", "--trace-format", "weka", "--num-workers", "2",
                     "--arrival-speedup-ratio", "2", "--sla-ttft-ms", "500", "--sla-itl-ms", "50"],
    "agentic-v2": ["trace_0277.v2.jsonl", "--trace-format", "agentic_mooncake", "--num-workers", "2",
                   "--arrival-speedup-ratio", "2", "--sla-ttft-ms", "500", "--sla-itl-ms", "50"],
    "mooncake-kv-router": ["conversation_trace.jsonl", "--trace-block-size", "512", "--num-workers", "4",
                           "--router-mode", "kv_router", "--router-config", '{"overlap_score_credit": 1.0}',
                           "--max-sim-time-seconds", "600", "--sla-e2e-ms", "20000"],
}


def flags(name: str) -> list[str]:
    return [*FLAGS[name], "--extra-engine-args", json.dumps({"engine": ENGINE[name]}),
            "--execution-model", "Qwen/Qwen3-32B-FP8"]


def outputs(d: Path) -> tuple[dict, list[dict]]:
    rep = json.loads((d / "prediction.json").read_text())
    for k in WALL:
        rep["summary"].pop(k)
    return rep, [json.loads(x) for x in (d / "requests.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", ["weka-agentic", "agentic-v2", "mooncake-kv-router"])
def test_example_config_equals_the_same_replay_by_flags(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    cfg = stage(name, tmp_path)
    a = invoke("--config", str(cfg), "--output-dir", "by-config", "--capture-per-request")
    assert a.exit_code == 0, a.stderr
    b = invoke(*flags(name), "--output-dir", "by-flags", "--capture-per-request")
    assert b.exit_code == 0, b.stderr
    ra, rows_a = outputs(tmp_path / "by-config")
    rb, rows_b = outputs(tmp_path / "by-flags")
    assert ra == rb and rows_a == rows_b
    s = ra["summary"]
    assert s["completed_requests"] > 0 and len(rows_a) == s["num_requests"] == ra["coverage"]["per_request_records"]
    assert list(ra) == ["coverage", "per_request", "planner", "summary"]  # keys sorted, as aisimulate writes
    assert a.stdout.endswith("Saved full report to: by-config/prediction.json\n")
    assert sorted(os.listdir(tmp_path / "by-config")) == ["prediction.json", "requests.jsonl"]
    if name == "agentic-v2":
        assert s["agentic_model_projection"]["target_model"] == "Qwen/Qwen3-32B-FP8"
    if name == "mooncake-kv-router":
        # the SLA counts goodput; these 400 requests end before the 600 s stop: a 60 s one cuts them
        assert 0 < s["goodput_completed_requests"] <= s["completed_requests"] == 400
        c = invoke("-c", str(cfg), "--set", "traffic.stop.max_virtual_time_seconds=60", "--output-dir", "c60")
        f = invoke(*flags(name), "--max-sim-time-seconds", "60", "--output-dir", "f60")
        assert c.exit_code == f.exit_code == 0, (c.stderr, f.stderr)
        r60 = json.loads((tmp_path / "c60" / "prediction.json").read_text())["summary"]
        assert 0 < r60["completed_requests"] < 400
        assert r60["completed_requests"] == json.loads((tmp_path / "f60" / "prediction.json").read_text())[
            "summary"]["completed_requests"]


# -- the same files through 1.6.1's run_trace_replay -------------------------------------------------

def oracle16() -> str | None:
    """The 1.6.1 oracle's Python, or None (the one rule: bench/parity_replay.oracle_python)."""
    from oracle_cases import oracle16_python

    return oracle16_python()


_RUNNER = r"""
import json, sys
from dynamo.replay import run_trace_replay
for kw in json.loads(sys.argv[1]):
    files = kw.pop("trace_files")
    print(json.dumps(run_trace_replay(files, **kw).to_dict()))
"""


def oracle_kwargs(cfg: dict, cwd: Path) -> dict:
    """A run file as the arguments Dynamo's runner (dynamo/replay/simulation.py) gives
    `run_trace_replay` for an aggregated trace replay: the worker's settings as a launch config."""
    src, load = cfg["traffic"]["source"], cfg["traffic"]["load"]
    stop = cfg["traffic"].get("stop") or {}
    w = cfg["engine"]["workers"]["aggregated"]
    kv, sched = w["kv_cache"], w.get("scheduler", {})
    engine = {"block_size": kv.get("block_size", 64), "num_gpu_blocks": kv["capacity"]["blocks"],
              "max_num_seqs": sched.get("max_sequences", 256),
              "max_num_batched_tokens": sched.get("max_batched_tokens", 8192),
              "enable_prefix_caching": kv.get("prefix_caching", True), "timing_model": dict(w["timing"])}
    router = cfg.get("router") or {}
    kw = {"trace_files": [str(cwd / p) for p in src["paths"]], "trace_format": src.get("format", "mooncake"),
          "trace_block_size": src.get("block_size"), "router_mode": router.get("policy", "round_robin"),
          "num_workers": w.get("parallelism", {}).get("replicas", 1), "extra_engine_args": {"engine": engine},
          "arrival_speedup_ratio": load.get("speedup", 1.0), "execution_model": cfg["engine"]["model"],
          "capture_per_request": True}
    if "max_virtual_time_seconds" in stop:
        kw["max_sim_time_ms"] = stop["max_virtual_time_seconds"] * 1000.0
    if kw["router_mode"] == "kv_router":
        kw["router_config"] = {"overlap_score_credit": router.get("overlap_score_credit", 1.0),
                               "router_temperature": router.get("temperature", 0.0)}
    for k, v in ((cfg.get("evaluation") or {}).get("sla") or {}).items():
        kw[f"sla_{k}"] = v
    return kw


def assert_same_report(ours: dict, theirs: dict, row_skip: tuple[str, ...] = ()) -> None:
    s, o = ours["summary"], theirs["summary"]  # prediction.json's keys are sorted, as aisimulate writes it
    assert sorted(k for k in s if k not in WALL and k != "trace_pipe") == sorted(k for k in o if k not in WALL)
    for k in o:
        if k not in WALL:
            # means and deviations summed in another order can differ in the last bits (README)
            assert s[k] == (pytest.approx(o[k], rel=1e-12) if isinstance(o[k], float) else o[k]), k
    def rows(report: dict) -> list[dict]:
        out = [{k: v for k, v in r.items() if k not in row_skip} for r in report["per_request"]]
        # without a uuid (random for Mooncake rows) Dynamo's row order is not defined: compare as sets
        return sorted(out, key=lambda r: json.dumps(r, sort_keys=True)) if "uuid" in row_skip else out
    assert rows(ours) == rows(theirs)
    assert ours["coverage"] == theirs["coverage"] and ours["planner"] == theirs["planner"] is None


@pytest.mark.skipif(oracle16() is None, reason="ai-dynamo 1.6.1 not installed (TRACE_PIPE_ORACLE16_PYTHON or "
                                               "/work/oracle16)")
def test_example_configs_equal_1_6_1_given_the_files_settings(tmp_path, monkeypatch):
    """agentic-v2 as written; mooncake-kv-router on round robin (1.6.1's KV router breaks ties at
    random), its rows but their uuids (random in Dynamo for Mooncake rows). weka-agentic has no
    1.6.1 counterpart: 1.6.1 refuses trace_0277 (models absent from its header) and reads WEKA
    sub-agents by its own lowering."""
    monkeypatch.chdir(tmp_path)
    cases = {"agentic-v2": [], "mooncake-kv-router": ["--set", "router={policy: round_robin}"]}
    jobs, ours = [], []
    for name, extra in cases.items():
        cfg_path = stage(name, tmp_path)
        cfg = yaml.safe_load(cfg_path.read_text())
        if extra:
            cfg["router"] = {"policy": "round_robin"}
        jobs.append(oracle_kwargs(cfg, tmp_path))
        r = invoke("--config", str(cfg_path), *extra, "--output-dir", name, "--capture-per-request")
        assert r.exit_code == 0, r.stderr
        ours.append(json.loads((tmp_path / name / "prediction.json").read_text()))
    p = subprocess.run([oracle16(), "-c", _RUNNER, json.dumps(jobs)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    theirs = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert_same_report(ours[0], theirs[0])
    assert ours[1]["summary"]["completed_requests"] > 300
    assert_same_report(ours[1], theirs[1], row_skip=("uuid",))


# -- what the file cannot say, one line each, exit 2, nothing written --------------------------------

def weka_config(tmp_path: Path, text: str | None = None) -> Path:
    """The weka example with the trace path absolute (and `text` instead, when given)."""
    cfg = tmp_path / "run.yaml"
    body = (EXAMPLES / "weka-agentic.yaml").read_text().replace("fixtures/trace_0277.json",
                                                                 str(ROOT / "fixtures" / "trace_0277.json"))
    cfg.write_text(body if text is None else text)
    return cfg


def refused(tmp_path: Path, monkeypatch, *args: str) -> str:
    """Run in an empty working directory with --output-dir out: exit 2, one stderr line, no stdout,
    and nothing written (no out/, no default report)."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    before = sorted(os.listdir(work))
    monkeypatch.chdir(work)
    r = invoke(*args, "--output-dir", "out")
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert r.stdout == "" and r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert sorted(os.listdir(work)) == before
    return r.stderr.strip()


def test_unknown_key_names_file_line_and_key(tmp_path, monkeypatch):
    cfg = weka_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("  load: {", "  lod: {"))
    line = 1 + cfg.read_text().splitlines().index("  lod: {type: trace_timestamps, speedup: 2.0}")
    assert refused(tmp_path, monkeypatch, "--config", str(cfg)) == f"error: {cfg}:{line}: traffic.lod: unknown key"
    cfg.write_text(cfg.read_text().replace("  lod: {", "  load: {").replace("prefix_caching: true",
                                                                            "prefix_caching: true, swap: 1"))
    assert refused(tmp_path, monkeypatch, "-c", str(cfg)).endswith(
        ": engine.workers.aggregated.kv_cache.swap: unknown key")
    cfg.write_text(cfg.read_text().replace(", swap: 1", "") + "optimizer: {max_trials: 4}\n")
    assert "optimizer: a recommendation section" in refused(tmp_path, monkeypatch, "-c", str(cfg))


@pytest.mark.parametrize("key,value,msg", [
    ("engine.workers.aggregated.kv_cache.block_size", "abc", 'must be a positive integer, got "abc"'),
    ("engine.workers.aggregated.parallelism.replicas", "true", "must be a positive integer, got true"),
    ("traffic.load.speedup", "0", "must be a finite number > 0, got 0"),
    ("traffic.source.paths", "x.json", 'must be a nonempty list of nonempty paths, got "x.json"'),
    ("router.policy", "random", 'must be one of round_robin, kv_router, got "random"'),
    ("evaluation.sla", "[1]", "must be a mapping, got [1]"),
])
def test_wrong_types(tmp_path, monkeypatch, key, value, msg):
    cfg = weka_config(tmp_path)
    err = refused(tmp_path, monkeypatch, "-c", str(cfg), "--set", f"{key}={value}")
    assert err == f"error: {cfg} (--set {key}={value}): {key}: {msg}"


def test_a_wrong_type_in_the_file_names_its_line(tmp_path, monkeypatch):
    cfg = weka_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("max_sequences: 256", "max_sequences: lots"))
    line = next(i + 1 for i, t in enumerate(cfg.read_text().splitlines()) if "scheduler:" in t)
    assert refused(tmp_path, monkeypatch, "-c", str(cfg)) == \
        f'error: {cfg}:{line}: engine.workers.aggregated.scheduler.max_sequences: must be a positive integer, got "lots"'


def test_missing_trace_file(tmp_path, monkeypatch):
    cfg = weka_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(str(ROOT / "fixtures" / "trace_0277.json"), "nowhere/trace.json"))
    line = next(i + 1 for i, t in enumerate(cfg.read_text().splitlines()) if "paths:" in t)
    assert refused(tmp_path, monkeypatch, "-c", str(cfg)) == \
        (f"error: {cfg}:{line}: traffic.source.paths: nowhere/trace.json does not exist (relative paths are taken "
         f"from the working directory)")


def test_set_on_a_key_the_schema_does_not_have(tmp_path, monkeypatch):
    cfg = weka_config(tmp_path)
    assert refused(tmp_path, monkeypatch, "-c", str(cfg), "--set", "engine.workers.aggregated.scheduler.max_tokens=8") \
        == f"error: --set engine.workers.aggregated.scheduler.max_tokens=8: engine.workers.aggregated.scheduler." \
           f"max_tokens is not a key of the run file schema ({cfg})"
    assert "sequence indexes are not supported" in refused(tmp_path, monkeypatch, "-c", str(cfg), "--set",
                                                           "traffic.source.paths.0=x")
    assert refused(tmp_path, monkeypatch, "-c", str(cfg), "--set", "router.policy") == \
        "error: --set router.policy: expected PATH=YAML_VALUE"
    assert refused(tmp_path, monkeypatch, "--set", "router.policy=kv_router", str(ROOT / "fixtures" / "trace_0277.json"),
                   "--trace-format", "weka") == "error: --set overrides a run file: give --config"


def test_existing_output_dir(tmp_path, monkeypatch):
    cfg = weka_config(tmp_path)
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "out" / "prediction.json").write_text("earlier\n")
    assert refused(tmp_path, monkeypatch, "-c", str(cfg)) == \
        "error: --output-dir out: not empty; pass --overwrite to replace prediction.json and requests.jsonl there"
    assert (work / "out" / "prediction.json").read_text() == "earlier\n"
    (work / "file").write_text("x")
    r = invoke("-c", str(cfg), "--output-dir", "file")
    assert r.exit_code == 2 and r.stderr == "error: --output-dir file: exists and is not a directory\n"


@pytest.mark.parametrize("key,value,msg", [
    ("engine.mode", "disaggregated", "disaggregated workers are not supported in a run file yet (aggregated "
                                     "workers only): replay them with the flags --num-prefill-workers / "
                                     "--num-decode-workers instead"),
    ("engine.workers.prefill", "{parallelism: {replicas: 1}}", "disaggregated workers are not supported"),
    ("traffic.source", "{type: synthetic, input_tokens: 1024, output_tokens: 128}", "synthetic traffic is not "
                                                                                       "supported"),
    ("traffic.load", "{type: concurrency, concurrency: 8}", "load type concurrency is not supported"),
    ("engine.workers.aggregated.timing.type", "default", "timing type default (AIConfigurator's forward-pass model)"),
    ("engine.workers.aggregated.kv_cache.capacity", "{type: default, memory_fraction: 0.9}",
     "capacity type default (blocks estimated"),
    ("engine.backend", "sglang", "only the vllm backend"),
    ("engine.context_length", "2048", "a context length (Dynamo's max_model_len"),
    ("engine.workers.aggregated.parallelism.tensor", "2", "tensor parallelism is not supported"),
    ("planner", "{policy: enabled, max_num_gpus: 4}", "the Planner is not supported"),
    ("router.prefill_load_scale", "2.0", "a prefill load scale other than 1.0 is not supported"),
    ("router.overlap_score_credit", "0.5", "round_robin takes no KV-router settings"),
    ("traffic.stop.requests", "10", "stops at the trace's end or max_virtual_time_seconds only"),
    ("execution", "{resources: {}}", "host resource budgets"),
])
def test_what_trace_pipe_cannot_do_is_refused_by_key(tmp_path, monkeypatch, key, value, msg):
    cfg = weka_config(tmp_path)
    err = refused(tmp_path, monkeypatch, "-c", str(cfg), "--set", f"{key}={value}")
    assert err.startswith(f"error: {cfg} (--set {key}={value}): {key}") and msg in err, err


def test_a_key_given_twice_and_bad_yaml(tmp_path, monkeypatch):
    cfg = weka_config(tmp_path)
    cfg.write_text(cfg.read_text() + "router: {policy: kv_router}\n")
    assert refused(tmp_path, monkeypatch, "-c", str(cfg)).endswith(": router: given twice")
    cfg.write_text("traffic: [\n")
    assert refused(tmp_path, monkeypatch, "-c", str(cfg)).startswith(f"error: {cfg}:2: invalid YAML")
    cfg.write_text("- a\n")
    assert "a run file is one YAML mapping" in refused(tmp_path, monkeypatch, "-c", str(cfg))


# -- flags and the file together, outputs ------------------------------------------------------------

def test_flags_typed_win_over_the_file(tmp_path, monkeypatch):
    """--num-workers 1 beats replicas: 2; an --extra-engine-args key beats the file's, the file's
    other engine keys stay; a positional trace replaces the file's paths; --set beats the file."""
    monkeypatch.chdir(tmp_path)
    cfg = stage("agentic-v2", tmp_path)
    shutil.copy(tmp_path / "trace_0277.v2.jsonl", tmp_path / "other.jsonl")
    a = invoke("-c", str(cfg), "other.jsonl", "--num-workers", "1", "--extra-engine-args", '{"block_size": 32}',
               "--set", "traffic.load.speedup=1.5", "--output-dir", "a")
    assert a.exit_code == 0, a.stderr
    engine = dict(ENGINE["agentic-v2"], block_size=32)
    b = invoke("other.jsonl", "--trace-format", "agentic_mooncake", "--arrival-speedup-ratio", "1.5",
               "--sla-ttft-ms", "500", "--sla-itl-ms", "50", "--extra-engine-args", json.dumps({"engine": engine}),
               "--execution-model", "Qwen/Qwen3-32B-FP8", "--output-dir", "b")
    assert b.exit_code == 0, b.stderr
    ra, rb = (json.loads((tmp_path / d / "prediction.json").read_text()) for d in "ab")
    for r in (ra, rb):
        for k in WALL:
            r["summary"].pop(k)
    assert ra == rb and ra["per_request"] is None
    c = invoke("-c", str(cfg), "--output-dir", "c")  # the file alone: two workers, block 64, speedup 2
    assert c.exit_code == 0, c.stderr
    rc = json.loads((tmp_path / "c" / "prediction.json").read_text())["summary"]
    assert rc["duration_ms"] != ra["summary"]["duration_ms"]


def test_merge_keeps_engine_shapes():
    base = {"extra_engine_args": {"engine": {"backend": "vllm", "block_size": 64, "num_gpu_blocks": 8}},
            "router_config": {"overlap_score_credit": 1.0}, "num_workers": 2}
    m = run_config.merge(base, {"extra_engine_args": '{"engine_type": "vllm", "max_num_seqs": 4}',
                                "router_config": '{"router_queue_threshold": 2.0}', "num_workers": 3})
    assert json.loads(m["extra_engine_args"]) == {"engine": {"backend": "vllm", "block_size": 64, "num_gpu_blocks": 8,
                                                             "max_num_seqs": 4}}
    assert json.loads(m["router_config"]) == {"overlap_score_credit": 1.0, "router_queue_threshold": 2.0}
    assert m["num_workers"] == 3
    m = run_config.merge(base, {"extra_engine_args": '{"engine": {"block_size": 16}, "dp_size": 1}'})
    assert json.loads(m["extra_engine_args"]) == {"engine": {"backend": "vllm", "block_size": 16, "num_gpu_blocks": 8},
                                                  "dp_size": 1}


def test_format_json_overwrite_and_stale_requests(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = weka_config(tmp_path)
    r = invoke("-c", str(cfg), "--output-dir", "out", "--capture-per-request", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.count("\n") == 1  # the summary alone, one compact JSON object
    summary = json.loads(r.stdout)
    assert summary == json.loads((tmp_path / "out" / "prediction.json").read_text())["summary"]
    assert "Saved full report to: out/prediction.json" in r.stderr  # what else the run says: stderr
    (tmp_path / "out" / "notes.txt").write_text("mine\n")
    r = invoke("-c", str(cfg), "--output-dir", "out", "--overwrite")
    assert r.exit_code == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["notes.txt", "prediction.json"]  # requests.jsonl was stale
    assert json.loads((tmp_path / "out" / "prediction.json").read_text())["per_request"] is None
    assert not [p for p in os.listdir(tmp_path) if p.startswith("trace_pipe_replay_report_")]
    r = invoke("-c", str(cfg), "--capture-per-request")
    assert r.exit_code == 2 and "--capture-per-request writes requests.jsonl in --output-dir" in r.stderr
    r = invoke("-c", str(cfg), "--format", "yaml", "--output-dir", "o2")
    assert r.exit_code == 2 and r.stderr == "error: --format must be table or json, got 'yaml'\n"


def test_perfetto_and_compare_json_with_a_config(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the example's trace path is relative to the repository
    a = invoke("-c", str(EXAMPLES / "weka-agentic.yaml"), "--perfetto", str(tmp_path / "a.pftrace"),
               "--compare-json", str(tmp_path / "a.json"), "--report-json", str(tmp_path / "a.r.json"))
    assert a.exit_code == 0, a.stderr
    b = invoke(*flags("weka-agentic"), "--perfetto", str(tmp_path / "b.pftrace"), "--compare-json",
               str(tmp_path / "b.json"), "--report-json", str(tmp_path / "b.r.json"))
    assert b.exit_code == 0, b.stderr
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.pftrace").read_bytes() == (tmp_path / "b.pftrace").read_bytes()
    ra, rb = (json.loads((tmp_path / f"{x}.r.json").read_text()) for x in "ab")
    assert {k: v for k, v in ra.items() if k not in WALL} == {k: v for k, v in rb.items() if k not in WALL}
    assert "Recorded vs simulated" in a.stdout


def test_interrupt_exits_130_with_nothing_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = weka_config(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(replay_cmd, "run_replay", interrupted)
    r = invoke("-c", str(cfg), "--output-dir", "out")
    assert r.exit_code == 130 and r.stderr == "interrupted\n"  # reader notes print only after success
    assert os.listdir(tmp_path) == ["run.yaml"]
