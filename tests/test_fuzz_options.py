"""Fuzzers for every option parser (issue 22): `--extra-engine-args` and `--router-config` JSON
(flat and 1.6 nested shapes, every known key with values of every JSON type, unknown keys,
invalid JSON), the numeric and named options of `replay`, the list options of `sweep`, and the
sink settings `collect` reads from the environment. Each checks fuzz_contract's contract: exit 0
with its outputs, or exit 2 with one line and nothing written."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from fuzz_contract import check, fuzz_twice, scratch
from hypothesis import strategies as st

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.sim.config import _INERT_DEFAULTS, _LAUNCH_DEFAULTS, EngineArgs, RouterConfig
from trace_pipe.tools import env

from replay_cases import two_group_trace


def _trace(d: Path) -> str:
    return two_group_trace(d)


def _run(args: list[str], outputs: list[str], table: bytes = b"") -> int:
    with scratch() as tmp:
        d = Path(tmp)
        out = d / "out"
        out.mkdir()
        (d / "table.json").write_bytes(table)
        args = [a.replace("{trace}", _trace(d)).replace("{out}", str(out)).replace("{table}", str(d / "table.json"))
                for a in args]
        return check(args, out, outputs)


# -- values ---------------------------------------------------------------------------------

INTS = st.one_of(st.integers(-3, 300), st.integers(-2**70, 2**70),
                 st.sampled_from([0, 1, 2, 4, 16, 64, 2**20, 2**26, 2**26 + 1, 2**31, 2**63, -1]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, 1e-300, 1e-7, 1e-6, 1e6, 1e7, 1e300]))
WORDS = st.sampled_from(["false", "no", "true", "0", "64", "", "vllm", "sglang", "lifo", "fifo", "polynomial", "fixed",
                         "dynamo", "vllm_v0", "aggregated", "native", "full_prompt", "NaN"])
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, WORDS, st.text(max_size=6))
VALUES = st.recursive(SCALARS, lambda c: st.one_of(st.lists(c, max_size=3),
                                                   st.dictionaries(st.one_of(WORDS, st.text(max_size=4)), c,
                                                                   max_size=3)), max_leaves=5)


def _json_text(obj) -> str:
    return json.dumps(obj)  # NaN / Infinity as the stdlib writes them: what a user may paste


ENGINE_KEYS = sorted({f.name for f in fields(EngineArgs)} | set(_INERT_DEFAULTS) | {"backend", "aic_x"})
TIMING = st.one_of(VALUES, st.fixed_dictionaries(
    {"type": st.sampled_from(["polynomial", "fixed", "external", 3])},
    optional={"prefill_ms": st.one_of(FLOATS, INTS, WORDS), "decode_ms": st.one_of(FLOATS, INTS, WORDS),
              "jitter": SCALARS}))
ENGINE = st.dictionaries(st.one_of(st.sampled_from(ENGINE_KEYS), st.text(max_size=6)),
                         st.one_of(VALUES, INTS, FLOATS, WORDS), max_size=4).flatmap(
    lambda d: st.one_of(st.just(d), TIMING.map(lambda t: {**d, "timing_model": t})))
LAUNCH = st.builds(lambda eng, extra: {"engine": eng, **extra}, st.one_of(ENGINE, VALUES),
                   st.dictionaries(st.sampled_from(sorted(_LAUNCH_DEFAULTS) + ["replicas"]), SCALARS, max_size=2))
ENGINE_TEXT = st.one_of(ENGINE.map(_json_text), LAUNCH.map(_json_text), st.text(max_size=30),
                        VALUES.map(_json_text))

ROUTER_KEYS = sorted({f.name for f in fields(RouterConfig)} | {"prefill_load_scale", "use_kv_events",
                                                                "router_replica_sync", "host_cache_hit_weight"})
ROUTER_TEXT = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(ROUTER_KEYS), st.text(max_size=6)),
                    st.one_of(VALUES, FLOATS, INTS), max_size=4).map(_json_text),
    st.text(max_size=30))


def _engine_args(text: str) -> None:
    _run(["replay", "{trace}", "--trace-block-size", "16", "--report-json", "{out}/r.json",
          "--extra-engine-args", text], ["r.json"])


def _router_config(text: str) -> None:
    _run(["replay", "{trace}", "--trace-block-size", "16", "--extra-engine-args", '{"block_size": 16}',
          "--router-mode", "kv_router", "--num-workers", "2", "--report-json", "{out}/r.json",
          "--router-config", text], ["r.json"])


test_engine_args, test_engine_args_long = fuzz_twice(_engine_args, text=ENGINE_TEXT)
test_router_config, test_router_config_long = fuzz_twice(_router_config, text=ROUTER_TEXT)


# -- numeric and named options --------------------------------------------------------------

NUMBER_TEXT = st.one_of(INTS.map(str), FLOATS.map(repr), st.sampled_from(
    ["nan", "inf", "-inf", "1e309", "-0", "0x10", " 3", "1_000", "", "1e-300", "4096", "4097", "1,2"]),
    st.text(max_size=8))
REPLAY_OPTIONS = {
    "--num-workers": NUMBER_TEXT, "--trace-block-size": NUMBER_TEXT, "--arrival-speedup-ratio": NUMBER_TEXT,
    "--max-sim-time-seconds": NUMBER_TEXT, "--onset-ms": NUMBER_TEXT, "--sla-ttft-ms": NUMBER_TEXT,
    "--sla-itl-ms": NUMBER_TEXT, "--sla-e2e-ms": NUMBER_TEXT, "--seed": NUMBER_TEXT,
    "--router-mode": st.one_of(st.sampled_from(["round_robin", "random", "kv_router", "KV_ROUTER", ""]),
                               st.text(max_size=8)),
    "--timing": st.one_of(st.sampled_from(["dynamo", "fit", "recorded", "table", "poly", "file"]), st.text(max_size=6)),
    "--dynamo-version": st.one_of(st.sampled_from(["1.4", "1.5", "1.6", "1.6.1", "2", ""]), st.text(max_size=5)),
    "--decode-timing": st.one_of(st.sampled_from(["physical", "logical"]), st.text(max_size=5)),
    "--format": st.one_of(st.sampled_from(["table", "json"]), st.text(max_size=5)),
    "--trace-format": st.one_of(st.sampled_from(["mooncake", "agentic_mooncake", "dynamo", "weka", "azure",
                                                 "distserve"]), st.text(max_size=5)),
    "--replay-mode": st.one_of(st.just("offline"), st.text(max_size=5)),
}
OPTION_SETS = st.lists(st.sampled_from(sorted(REPLAY_OPTIONS)), min_size=1, max_size=3, unique=True).flatmap(
    lambda names: st.tuples(*[st.tuples(st.just(n), REPLAY_OPTIONS[n]) for n in names]))


def _replay_options(options) -> None:
    args = [f"{name}={value}" for name, value in options]  # `--opt=value`: a value starting with "-" stays one
    _run(["replay", "{trace}", "--report-json", "{out}/r.json", *args], ["r.json"])


def _sweep_lists(workers: str, modes: str) -> None:
    _run(["sweep", "{trace}", "--trace-block-size", "16", "--jobs", "1", "--csv", "{out}/s.csv",
          f"--num-workers={workers}", f"--router-mode={modes}"], ["s.csv"])


LIST_TEXT = st.one_of(st.lists(NUMBER_TEXT, min_size=0, max_size=3).map(",".join), st.text(max_size=10))
MODE_TEXT = st.one_of(st.lists(st.sampled_from(["round_robin", "random", "kv_router", "", " kv_router", "x"]),
                               max_size=3).map(",".join), st.text(max_size=10))

test_replay_options, test_replay_options_long = fuzz_twice(_replay_options, options=OPTION_SETS)
test_sweep_lists, test_sweep_lists_long = fuzz_twice(_sweep_lists, workers=LIST_TEXT, modes=MODE_TEXT)


# -- --timing-table: a JSON profile ---------------------------------------------------------

AXIS = st.one_of(st.lists(st.one_of(st.integers(0, 10**6), FLOATS), max_size=4).map(sorted), VALUES,
                 st.just([0, 1000]), st.just([0, 0]))
TABLE = st.fixed_dictionaries({}, optional={
    "prefill_tokens": AXIS, "prefill_ms": AXIS, "decode_kv_tokens": AXIS, "decode_context": AXIS,
    "decode_itl_ms": st.one_of(st.lists(AXIS, max_size=3), VALUES, st.just([[50.0, 50.0], [50.0, 50.0]]))})
VALID_TABLE = {"prefill_tokens": [0, 1000], "prefill_ms": [100.0, 200.0], "decode_kv_tokens": [0, 10000],
               "decode_context": [0, 10000], "decode_itl_ms": [[50.0, 50.0], [50.0, 50.0]]}


def _timing_table(table) -> None:
    table = {**VALID_TABLE, **table} if isinstance(table, dict) and len(table) < 3 else table
    _run(["replay", "{trace}", "--trace-block-size", "16", "--report-json", "{out}/r.json", "--timing-table",
          "{table}"], ["r.json"], _json_text(table).encode())


test_timing_table, test_timing_table_long = fuzz_twice(_timing_table, table=st.one_of(TABLE, VALUES))


# -- collect's sink settings ------------------------------------------------------------------

def _sink_setting(value: str) -> None:
    """A sink variable is a positive integer or one line naming the variable (a TraceError)."""
    try:
        n = env.sink_int(env.BUFFER_VARS, None, 7, env={env.BUFFER_VARS[0]: value})
    except TraceError as e:
        assert str(e).startswith(f"environment variable {env.BUFFER_VARS[0]}=") and "\n" not in str(e)
    else:
        assert isinstance(n, int) and n > 0 and n == (int(value) if value.strip() else 7)


test_sink_setting, test_sink_setting_long = fuzz_twice(_sink_setting, value=st.one_of(NUMBER_TEXT, st.text()))
