"""`trace-pipe replay --config run.yaml`: the run file of `aisimulate predict --stack dynamo` (Dynamo
1.5+'s offline replay; sections `traffic`, `engine`, `router`, `planner`, `evaluation`), read into
the same `run(...)` arguments the replay flags give, so a file and a command line take one path.

The schema is AISimulate's prediction schema with the Dynamo stack's `router` and `planner`
sections (AISimulate's user guide §9-15 and `aisimulate/config/{traffic,engine}.py`, Dynamo's
`dynamo/router/simulation/config.py`). Every key the schema has is known here: one trace-pipe can
honour maps onto a replay option; one it cannot (synthetic traffic, disaggregated workers, the
Planner, AIConfigurator's timing and memory models, ...) is a one-line error naming the key and the
file, never dropped. A key the schema does not have is an error too, as in AISimulate. The file
cannot name a Dynamo release (AISimulate keeps the stack out of the YAML): `--dynamo-version` does.
Relative trace paths are taken from the working directory, as `aisimulate predict` takes them."""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.limits import JSON_DEPTH
from trace_pipe.pipeline.replay_input import FORMATS

from .common import json_object_arg

# -- leaf checks: each returns what is wrong with a value, or None (strict, as AISimulate's
#    pydantic models are: a bool is not a number, a string is not a number) --------------------


def _show(v: object) -> str:
    return json.dumps(v, default=str)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pos_int(v):
    return None if isinstance(v, int) and not isinstance(v, bool) and v > 0 else "must be a positive integer"


def _nonneg_int(v):
    return None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else "must be an integer >= 0"


def _pos_num(v):
    return None if _is_num(v) and v > 0 else "must be a finite number > 0"


def _nonneg_num(v):
    return None if _is_num(v) and v >= 0 else "must be a finite number >= 0"


def _fraction(v):
    return None if _is_num(v) and 0 < v <= 1 else "must be a number in (0, 1]"


def _boolean(v):
    return None if isinstance(v, bool) else "must be true or false"


def _text(v):
    return None if isinstance(v, str) and v else "must be a nonempty string"


def _opt_text(v):
    return None if v is None or isinstance(v, str) else "must be a string or null"


def _paths(v):
    ok = isinstance(v, list) and v and all(isinstance(p, str) and p for p in v)
    return None if ok else "must be a nonempty list of nonempty paths"


def _one_of(*choices: str):
    def check(v):
        return None if isinstance(v, str) and v in choices else f"must be one of {', '.join(choices)}"
    return check


def _or_literal(check, literal: str):
    def either(v):
        return None if v == literal else (None if check(v) is None else f"{check(v)} or {literal!r}")
    return either


def _anything(v):
    return None


@dataclass(frozen=True, slots=True)
class Leaf:
    """A schema key holding a value: `check` says whether the value is valid in AISimulate's
    schema, `unsupported` (value -> reason or None) whether trace-pipe can honour it."""
    check: Callable[[object], str | None] = _anything
    unsupported: Callable[[object], str | None] | None = None


def _only(good: object, why: str) -> Callable[[object], str | None]:
    return lambda v: None if v == good else why


def _never(why: str) -> Callable[[object], str | None]:
    return lambda v: why


_DISAGG = ("disaggregated workers are not supported in a run file yet (aggregated workers only): replay "
           "them with the flags --num-prefill-workers / --num-decode-workers instead")
_SYNTH = "synthetic traffic is not supported by trace-pipe replay: it replays traces (traffic.source.type: trace)"
_PLANNER = "the Planner is not supported by trace-pipe replay (planner.policy: disabled only)"
_ONE = "{} is not supported by trace-pipe replay (a worker is one GPU's mock engine: only 1)"


def _synthetic_leaf(check) -> Leaf:
    return Leaf(check, _never(_SYNTH))


_PARALLEL = {k: Leaf(_pos_int, None if k == "replicas" else _only(1, _ONE.format(f"{k} parallelism")))
             for k in ("replicas", "tensor", "pipeline", "attention_data", "moe_tensor", "moe_expert")}

_WORKER = {
    "parallelism": _PARALLEL,
    "scheduler": {
        "max_batched_tokens": Leaf(_pos_int),
        "max_sequences": Leaf(_pos_int),
        "prefill_schedule_interval": Leaf(_pos_int, _only(1, "a prefill schedule interval other than 1 (vLLM "
                                                             "attention-DP throttling) is not supported by "
                                                             "trace-pipe replay")),
    },
    "kv_cache": {
        "block_size": Leaf(_pos_int),
        "prefix_caching": Leaf(_boolean),
        "bytes_per_token": Leaf(_or_literal(_pos_int, "auto"),
                                _only("auto", "KV bytes per token feed host offload and power models, which "
                                              "trace-pipe replay does not have (auto only)")),
        "capacity": {
            "type": Leaf(_one_of("default", "fixed")),
            "memory_fraction": Leaf(_fraction),
            "blocks": Leaf(_pos_int),
            "cuda_graph_reserved_bytes": Leaf(_nonneg_int),
        },
        "host_offload": Leaf(_anything, _never("KV host offload (G2) is not supported by trace-pipe replay")),
        "g3_offload": Leaf(_anything, _never("G3 offload is not supported by trace-pipe replay")),
    },
    "timing": {
        "type": Leaf(_one_of("default", "fixed", "polynomial")),
        "prefill_ms": Leaf(_nonneg_num),
        "decode_ms": Leaf(_nonneg_num),
        "forward_model": Leaf(_one_of("op_level", "fpm")),
    },
    "startup_seconds": Leaf(_nonneg_num, _only(0, "worker startup time is not supported by trace-pipe replay "
                                                   "(0 only)")),
    "hardware": Leaf(_text),  # a P/D role's SKU override; aggregated workers reject it (below)
}

_PLANNER_KNOBS = (
    "scaling_policy", "fpm_sampling", "load_sensitivity", "target", "enable_throughput_scaling",
    "enable_load_scaling", "throughput_adjustment_interval_seconds", "load_adjustment_interval_seconds",
    "max_num_fpm_samples", "fpm_sample_bucket_size", "load_scaling_down_sensitivity", "load_min_observations",
    "load_predictor", "load_predictor_log1p", "prophet_window_size", "kalman_q_level", "kalman_q_trend",
    "kalman_r", "kalman_min_points", "max_num_gpus", "min_num_gpus", "min_workers", "prefill_min_workers",
    "decode_min_workers")

SCHEMA: dict = {
    "traffic": {
        "source": {
            "type": Leaf(_one_of("synthetic", "synthetic-session", "trace"),
                         lambda v: None if v == "trace" else _SYNTH),
            "paths": Leaf(_paths),
            "format": Leaf(_one_of("mooncake", "mooncake-delta", "agentic_mooncake", "applied_compute_agentic",
                                   *(f for f in FORMATS if f not in ("mooncake", "agentic_mooncake"))),
                           lambda v: f"trace format {v} is not supported by trace-pipe replay (formats: "
                                     f"{', '.join(FORMATS)})" if v not in FORMATS else None),
            "block_size": Leaf(_pos_int),
            "nested_timestamp_basis": Leaf(
                _one_of("auto", "absolute", "relative"),
                _only("auto", "an explicit WEKA timestamp basis is not supported by trace-pipe replay, which "
                              "reads each sub-agent's timestamps as absolute or relative by itself (auto only)")),
            "input_tokens": _synthetic_leaf(_pos_int),
            "output_tokens": _synthetic_leaf(_pos_int),
            "images": _synthetic_leaf(_anything),
            "new_input_tokens_per_turn": _synthetic_leaf(_pos_int),
            "output_tokens_per_turn": _synthetic_leaf(_pos_int),
            "session": _synthetic_leaf(_anything),
        },
        "load": {
            "type": Leaf(_one_of("concurrency", "poisson", "constant_rate", "trace_timestamps"),
                         lambda v: None if v == "trace_timestamps" else
                         f"load type {v} is not supported by trace-pipe replay, which replays the trace's own "
                         f"timing (type: trace_timestamps)"),
            "speedup": Leaf(_pos_num),
            "agentic_lanes": Leaf(_pos_int, _never("agentic lanes are not supported by trace-pipe replay (plays "
                                                   "start at their recorded times)")),
            "concurrency": Leaf(_pos_int),
            "requests_per_second": Leaf(_pos_num),
            "sessions_per_second": Leaf(_pos_num),
            "seed": Leaf(_nonneg_int),
        },
        "stop": {
            "max_virtual_time_seconds": Leaf(_pos_num),
            **{k: Leaf(_pos_num if "per_load_unit" in k else _pos_int,
                       _never("a trace replay stops at the trace's end or max_virtual_time_seconds only"))
               for k in ("requests", "requests_per_load_unit", "sessions", "sessions_per_load_unit")},
        },
    },
    "engine": {
        "mode": Leaf(_one_of("aggregated", "disaggregated", "afd"), _only("aggregated", _DISAGG)),
        "model": Leaf(_text),
        "hardware": Leaf(_text),
        "backend": Leaf(_one_of("vllm", "sglang", "trtllm"),
                        _only("vllm", "only the vllm backend's mock engine is supported by trace-pipe replay")),
        "backend_version": Leaf(_opt_text),
        "context_length": Leaf(_or_literal(_pos_int, "max"),
                               _only("max", "a context length (Dynamo's max_model_len, which rejects longer "
                                            "requests) is not supported by trace-pipe replay (max only)")),
        "speculation": Leaf(_anything, _never("speculative decoding is not supported by trace-pipe replay")),
        "kv_transfer": Leaf(_anything, _never(_DISAGG)),
        "afd": Leaf(_anything, _never(_DISAGG)),
        "workers": {
            "aggregated": _WORKER,
            "prefill": Leaf(_anything, _never(_DISAGG)),
            "decode": Leaf(_anything, _never(_DISAGG)),
            "encoder": Leaf(_anything, _never("encoder workers are not supported by trace-pipe replay")),
        },
    },
    "router": {
        "policy": Leaf(_one_of("round_robin", "kv_router")),
        "prefill_load_model": {
            "type": Leaf(_one_of("none", "ais", "aic"),
                         _only("none", "a prefill load model is not supported by trace-pipe replay (none only)")),
        },
        "overlap_score_credit": Leaf(_nonneg_num),
        "prefill_load_scale": Leaf(_nonneg_num, _only(1.0, "a prefill load scale other than 1.0 is not supported "
                                                           "by trace-pipe replay")),
        "temperature": Leaf(_nonneg_num, _only(0.0, "a router temperature above 0 is not supported by trace-pipe "
                                                     "replay")),
    },
    "planner": {
        "policy": Leaf(_one_of("disabled", "enabled"), _only("disabled", _PLANNER)),
        **{k: Leaf(_anything, _never(_PLANNER)) for k in _PLANNER_KNOBS},
    },
    "evaluation": {
        "sla": {"ttft_ms": Leaf(_pos_num), "itl_ms": Leaf(_pos_num), "e2e_ms": Leaf(_pos_num)},
    },
    "execution": Leaf(_anything, _never("host resource budgets are not supported by trace-pipe replay")),
}
_RECOMMEND_ONLY = ("optimization", "optimizer")


# -- the file --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RunFile:
    """A read run file: `args` are the `replay_cmd.run` keyword arguments it gives (the names the
    replay flags fill; `paths` for the trace arguments)."""
    path: str
    args: dict


class _Where:
    """Names a key in an error: the file and line it came from, or the --set that put it there."""

    def __init__(self, path: str, lines: dict[tuple, int], sets: dict[tuple, str]) -> None:
        self.path, self.lines, self.sets = path, lines, sets

    def __call__(self, key: tuple, msg: str) -> TraceError:
        for n in range(len(key), 0, -1):
            if key[:n] in self.sets:
                return TraceError(f"error: {self.path} (--set {self.sets[key[:n]]}): {'.'.join(key)}: {msg}")
        line = next((self.lines[key[:n]] for n in range(len(key), 0, -1) if key[:n] in self.lines), None)
        at = f"{self.path}:{line}" if line is not None else self.path
        return TraceError(f"error: {at}: {'.'.join(key) if key else 'the file'}: {msg}")


def read(path: str, sets: list[str] = (), *, check_paths: bool = True) -> RunFile:
    """Read, override (`--set a.b=VALUE`, values in YAML) and check a run file; a TraceError
    naming the file and key on anything wrong or unsupported. `check_paths`: the trace paths must
    exist (off when the command line names the traces instead)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise TraceError(f"error: --config {path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise TraceError(f"error: --config {path}: not UTF-8 text") from None
    try:
        _check_depth(text, f"error: --config {path}")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark is not None else path
        raise TraceError(f"error: {at}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise TraceError(f"error: {path}: a run file is one YAML mapping (traffic, engine, router, planner, "
                         f"evaluation)")
    lines: dict[tuple, int] = {}
    _key_lines(node, (), lines, path)
    applied: dict[tuple, str] = {}
    for assignment in sets:
        key = _apply_set(data, assignment, path)
        applied[key] = assignment
    where = _Where(path, lines, applied)
    _check(data, SCHEMA, (), where)
    args = _args(data, where)
    if check_paths:
        for p in args["paths"]:
            if not (os.path.exists(os.path.expanduser(p)) or (glob.has_magic(p) and glob.glob(p))):
                raise where(("traffic", "source", "paths"), f"{p} does not exist (relative paths are taken from "
                                                            f"the working directory)")
    return RunFile(path, args)


def _key_lines(node, key: tuple, out: dict, path: str) -> None:
    """Each mapping key's 1-based line; a key given twice is an error (YAML would keep the last)."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                continue
            sub = key + (k.value,)
            if sub in out:
                raise TraceError(f"error: {path}:{k.start_mark.line + 1}: {'.'.join(sub)}: given twice")
            out[sub] = k.start_mark.line + 1
            _key_lines(v, sub, out, path)


def _schema_at(key: tuple):
    """The schema node a key path names (a dict, a Leaf), or None when the schema has no such key.
    Below an opaque leaf (a whole section trace-pipe refuses) any path is the schema's."""
    node = SCHEMA
    for part in key:
        if isinstance(node, Leaf):
            return node
        if part not in node:
            return None
        node = node[part]
    return node


def _apply_set(data: dict, assignment: str, path: str) -> tuple:
    """AISimulate's `--set PATH=YAML_VALUE`: a dotted path the schema has (it may be missing from
    the file), no sequence indexes, the value parsed as YAML."""
    if "=" not in assignment:
        raise TraceError(f"error: --set {assignment}: expected PATH=YAML_VALUE")
    raw, value = assignment.split("=", 1)
    parts = tuple(raw.split("."))
    if not raw or any(not p or p.isdigit() for p in parts):
        raise TraceError(f"error: --set {assignment}: invalid path {raw!r} (dotted keys; sequence indexes are "
                         f"not supported)")
    if parts[0] in _RECOMMEND_ONLY or _schema_at(parts) is None:
        raise TraceError(f"error: --set {assignment}: {raw} is not a key of the run file schema ({path})")
    try:
        _check_depth(value, f"error: --set {raw}")
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise TraceError(f"error: --set {assignment}: invalid YAML value: {getattr(e, 'problem', None) or e}") \
            from None
    cur = data
    for i, part in enumerate(parts[:-1]):
        nxt = cur.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise TraceError(f"error: --set {assignment}: {'.'.join(parts[:i + 1])} in {path} is not a mapping")
        cur = nxt
    cur[parts[-1]] = parsed
    return parts


def _check(value: object, schema, key: tuple, where: _Where) -> None:
    """Keys and leaf values in file order: unknown keys, wrong types, then what trace-pipe cannot do."""
    if isinstance(schema, Leaf):
        msg = schema.check(value)
        if msg is not None:
            raise where(key, f"{msg}, got {_show(value)}")
        why = schema.unsupported(value) if schema.unsupported is not None else None
        if why is not None:
            raise where(key, why)
        return
    if not isinstance(value, dict):
        raise where(key, f"must be a mapping, got {_show(value)}")
    for k, v in value.items():
        if not key and k in _RECOMMEND_ONLY:
            raise where((k,), "a recommendation section (aisimulate recommend): a run file holds concrete values "
                              "only")
        if not isinstance(k, str) or k not in schema:
            raise where(key + (str(k),), "unknown key")
        _check(v, schema[k], key + (k,), where)


def _section(d: dict, key: tuple, where: _Where, required: str | None = None) -> dict:
    v = d.get(key[-1])
    if v is None:
        if required is not None:
            raise where(key, f"required: {required}")
        return {}
    return v


def _args(d: dict, where: _Where) -> dict:
    """The checked file as `run` arguments, with AISimulate's defaults for what it leaves out and
    its cross-key rules."""
    traffic = _section(d, ("traffic",), where, "trace-pipe replays a trace (without `traffic` AISimulate runs "
                                               "synthetic requests)")
    source = _section(traffic, ("traffic", "source"), where, "{type: trace, paths: [...], format: ...}")
    if source.get("type", "synthetic") != "trace":
        raise where(("traffic", "source", "type"), _SYNTH)
    if "paths" not in source:
        raise where(("traffic", "source", "paths"), "required for a trace source")
    fmt = source.get("format", "mooncake")
    if "nested_timestamp_basis" in source and fmt != "weka":
        raise where(("traffic", "source", "nested_timestamp_basis"), "only valid for trace format weka")
    load = _section(traffic, ("traffic", "load"), where, "{type: trace_timestamps, speedup: 1.0} for a trace")
    ltype = load.get("type", "concurrency")
    if ltype != "trace_timestamps":
        raise where(("traffic", "load", "type"), SCHEMA["traffic"]["load"]["type"].unsupported(ltype))
    extra = sorted(k for k in load if k not in ("type", "speedup", "agentic_lanes"))
    if extra:
        raise where(("traffic", "load", extra[0]), "load type trace_timestamps does not accept it (speedup only)")
    stop = _section(traffic, ("traffic", "stop"), where)
    args: dict = {"paths": list(source["paths"]), "trace_format": fmt, "trace_block_size": source.get("block_size"),
                  "arrival_speedup_ratio": float(load.get("speedup", 1.0)),
                  "max_sim_time_seconds": stop.get("max_virtual_time_seconds")}

    engine = _section(d, ("engine",), where, "the engine section (model, hardware, workers)")
    for k in ("model", "hardware"):
        if k not in engine:
            raise where(("engine", k), "required")
    if engine["hardware"] == "auto":
        raise where(("engine", "hardware"), "auto is recommendation-only: name the hardware")
    workers = _section(engine, ("engine", "workers"), where, "{aggregated: {...}}")
    worker = _section(workers, ("engine", "workers", "aggregated"), where, "aggregated mode's worker settings")
    w = ("engine", "workers", "aggregated")
    if "hardware" in worker:
        raise where(w + ("hardware",), "aggregated workers reject a hardware override")
    par, sched, kv = (_section(worker, w + (k,), where) for k in ("parallelism", "scheduler", "kv_cache"))
    args["num_workers"] = par.get("replicas", 1)
    args["execution_model"] = engine["model"]
    block_size = kv.get("block_size", 64)  # the vllm backend's default
    if block_size < 2:
        raise where(w + ("kv_cache", "block_size"), "vllm needs block_size >= 2")
    eng = {"backend": "vllm", "block_size": block_size, "num_gpu_blocks": _blocks(kv, where, w),
           "max_num_seqs": sched.get("max_sequences", 256),
           "max_num_batched_tokens": sched.get("max_batched_tokens", 8192),
           "enable_prefix_caching": kv.get("prefix_caching", True),
           "timing_model": _timing(_section(worker, w + ("timing",), where), where, w)}
    args["extra_engine_args"] = {"engine": eng}

    router = _section(d, ("router",), where)
    policy = router.get("policy", "round_robin")
    knobs = [k for k in ("overlap_score_credit", "prefill_load_scale", "temperature") if k in router]
    load_model = _section(router, ("router", "prefill_load_model"), where).get("type", "none")
    if policy == "round_robin" and (knobs or load_model != "none"):
        raise where(("router", knobs[0] if knobs else "prefill_load_model"),
                    "round_robin takes no KV-router settings (prefill_load_model none, no overlap_score_credit, "
                    "prefill_load_scale or temperature)")
    if load_model != "none":  # the schema check refused it already; kept for the kv_router path
        raise where(("router", "prefill_load_model", "type"), "not supported by trace-pipe replay")
    args["router_mode"] = policy
    args["router_config"] = ({"overlap_score_credit": float(router["overlap_score_credit"])}
                             if "overlap_score_credit" in router else None)

    sla = _section(_section(d, ("evaluation",), where), ("evaluation", "sla"), where)
    if "e2e_ms" in sla and ("ttft_ms" in sla or "itl_ms" in sla):
        raise where(("evaluation", "sla", "e2e_ms"), "e2e_ms excludes ttft_ms and itl_ms (give one form)")
    for k in ("ttft_ms", "itl_ms", "e2e_ms"):
        args[f"sla_{k}"] = float(sla[k]) if k in sla else None
    return args


def _blocks(kv: dict, where: _Where, w: tuple) -> int:
    cap = _section(kv, w + ("kv_cache", "capacity"), where)
    key = w + ("kv_cache", "capacity")
    if cap.get("type", "default") == "default":
        if "blocks" in cap:
            raise where(key + ("blocks",), "default capacity rejects blocks (use type: fixed)")
        raise where(key + ("type",) if "type" in cap else key,
                    "capacity type default (blocks estimated from the model, hardware and memory_fraction) is not "
                    "supported by trace-pipe replay: give {type: fixed, blocks: N}")
    for k in ("memory_fraction", "cuda_graph_reserved_bytes"):
        if cap.get(k):
            raise where(key + (k,), f"fixed capacity rejects {k}")
    if "blocks" not in cap:
        raise where(key + ("blocks",), "required for fixed capacity")
    return cap["blocks"]


def _timing(t: dict, where: _Where, w: tuple) -> dict:
    key = w + ("timing",)
    kind = t.get("type", "default")
    if kind == "default":
        raise where(key + ("type",) if "type" in t else key,
                    "timing type default (AIConfigurator's forward-pass model) is not supported by trace-pipe "
                    "replay: give {type: polynomial} (Dynamo's mocker) or {type: fixed, prefill_ms, decode_ms}")
    if "forward_model" in t:
        raise where(key + ("forward_model",), "only valid with timing type default")
    if kind == "polynomial":
        if "prefill_ms" in t or "decode_ms" in t:
            raise where(key + ("prefill_ms" if "prefill_ms" in t else "decode_ms",),
                        "polynomial timing rejects fixed timing values")
        return {"type": "polynomial"}
    for k in ("prefill_ms", "decode_ms"):
        if k not in t:
            raise where(key + (k,), "required for fixed timing")
    return {"type": "fixed", "prefill_ms": float(t["prefill_ms"]), "decode_ms": float(t["decode_ms"])}


# -- the file and the command line together -------------------------------------------------------

def merge(file_args: dict, flags: dict) -> dict:
    """The file's arguments with the flags given on the command line winning: whole values, except
    `--extra-engine-args` and `--router-config`, whose keys win one by one over the file's (a
    flag can change `block_size` and keep the file's other engine settings). Returns `run`
    arguments: engine and router settings as the JSON text the flags take."""
    out = dict(file_args)
    for k, v in flags.items():
        if k not in ("extra_engine_args", "router_config"):
            out[k] = v
    out["extra_engine_args"] = json.dumps(_merge_engine(file_args.get("extra_engine_args"),
                                                        json_object_arg(flags.get("extra_engine_args"),
                                                                        "--extra-engine-args")))
    router = {**(file_args.get("router_config") or {}),
              **(json_object_arg(flags.get("router_config"), "--router-config") or {})}
    out["router_config"] = json.dumps(router) if router else None
    return out


def _merge_engine(base: dict | None, flag: dict | None) -> dict:
    """Flag keys over the file's launch config ({"engine": {...}}): a flag in the same shape merges
    engine key by engine key; a flat (1.4-shaped) flag merges into `engine` (`engine_type` being
    1.6's `backend`)."""
    base = dict(base or {"engine": {}})
    if not flag:
        return base
    if "engine" in flag:
        top = {k: v for k, v in flag.items() if k != "engine"}
        inner = flag["engine"] if isinstance(flag["engine"], dict) else {}
        if not isinstance(flag["engine"], dict):
            return {**base, **flag}  # EngineArgs refuses it with its own words
    else:
        top, inner = {}, dict(flag)
        if "engine_type" in inner:
            inner["backend"] = inner.pop("engine_type")
    return {**base, **top, "engine": {**base["engine"], **inner}}


def _check_depth(text: str, where: str) -> None:
    """YAML nested deeper than `limits.JSON_DEPTH`, refused before composing: PyYAML's composer
    and constructor recurse per level. Its parser does not: count levels on its events."""
    depth = 0
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > JSON_DEPTH.maximum:
                raise TraceError(f"{where}: nested more than {JSON_DEPTH.maximum} levels deep ({JSON_DEPTH.what})")
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
