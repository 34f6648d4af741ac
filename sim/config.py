"""Engine and router settings, parsed from the same JSON keys and defaults as Dynamo's
`--extra-engine-args` and `--router-config` (`KvRouterConfig`, dynamo-replay.md §6.2; 1.4.2
behaviour per the observed notes §9).

Engine arguments come in either of Dynamo's two shapes: 1.4's flat `MockEngineArgs` object
(`{"block_size": 64}`, dynamo-replay.md §5.1) or 1.6's canonical launch config
(`{"engine": {"block_size": 64, "backend": "vllm", "timing_model": {...}}, "dp_size": 1, ...}`,
dynamo-1.6.md §4), whatever `--dynamo-version` is: the shape says which one the user wrote."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from trace_pipe.pipeline import limits
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.limits import _kind as kind_of

# MockEngineArgs keys that exist in Dynamo but change nothing in this vLLM aggregated model; they
# are accepted (so Dynamo command lines work) only at their defaults.
_INERT_DEFAULTS = {
    "dp_size": 1, "startup_time": None, "is_prefill": False,
    "is_decode": False, "planner_profile_data": None, "reasoning": None, "enable_local_indexer": None,
    "bootstrap_port": None, "zmq_kv_events_port": None, "zmq_replay_port": None, "g1_backend": "native",
    "router_queue_policy": None, "max_model_len": None, "watermark": None, "num_g2_blocks": None,
    "num_g3_blocks": None, "enable_g4_storage": False,
    "sglang": None, "trtllm": None, "aic_backend": None,
    # 1.6's engine keys, inert at their defaults in this model
    "prefill_schedule_interval": 1, "prefill_decode_interval": 0, "aic_mtp_seed": 42, "emit_kv_events": False,
    "emit_kv_token_ids": False, "kv_cache_bytes_per_token": None,
    "kv_cache_groups": None, "kv_cache_capacity_bytes": None, "native_host_offload": None, "state_cache": None,
    "prefix_match_unit": None, "g3_offload": None,
}
WORKER_TYPES = ("aggregated", "prefill", "decode")
KV_TRANSFER_MODES = ("full_prompt", "destination_missing")
# the launch config's keys outside `engine`, inert at their defaults (`dynamo` holds runtime options)
_LAUNCH_DEFAULTS = {
    "dp_size": 1, "tensor_parallel_size": 1, "startup_time": None, "num_gpu_blocks_is_explicit": None,
    "gpu_memory_utilization": None, "mem_fraction_static": None, "free_gpu_memory_fraction": None,
    "cuda_graph_reserved_bytes": None, "dynamo": None,
}
BACKENDS = ("vllm", "sglang", "trtllm")


SCHEDULERS = ("dynamo", "vllm_v0")


@dataclass(frozen=True, slots=True)
class EngineArgs:
    engine_type: str = "vllm"
    num_gpu_blocks: int = 16384
    block_size: int = 64
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    speedup_ratio: float = 1.0
    decode_speedup_ratio: float = 1.0
    preemption_mode: str = "lifo"
    # Not a Dynamo key: "dynamo" is Dynamo's mocker (mixed prefill + decode passes, under the
    # `--dynamo-version` rules); "vllm_v0" is vLLM 0.2/0.3's scheduler (prefill-only steps while
    # prompts can be admitted, else decode-only steps; FCFS recompute preemption). The pass
    # schedulers they name are in sim/schedulers.py.
    scheduler: str = "dynamo"
    # vllm_v0 only: vLLM 0.2.2-0.3.x batch prompts padded to the longest one, and stop adding
    # prompts to a step once the padded size would pass max_num_batched_tokens or the padding
    # would pass max_paddings (its default 256); the step is still timed on the real tokens.
    max_paddings: int = 256
    # 1.6's `timing_model`: "polynomial" (the default) or "fixed" (every pass with prompt work costs
    # `fixed_prefill_ms`, every decode step `fixed_decode_ms`, before speedup)
    timing_model: str = "polynomial"
    fixed_prefill_ms: float = 0.0
    fixed_decode_ms: float = 0.0
    # disaggregated replay (sim/disagg.py): the pool a worker serves, and the prefill side's KV
    # handoff delay = transferred tokens x bytes per token / (bandwidth GB/s), tokens being the
    # whole prompt ("full_prompt") or the whole blocks the decode worker lacks
    # ("destination_missing"); no delay while either number is unset (1.4's name for the bytes
    # is `kv_bytes_per_token`)
    worker_type: str = "aggregated"
    kv_transfer_bandwidth: float | None = None
    kv_transfer_bytes_per_token: float | None = None
    kv_transfer_timing_mode: str = "full_prompt"

    @classmethod
    def from_json(cls, d: dict | None) -> "EngineArgs":
        d = dict(d or {})
        if "engine" in d:
            d = _flatten_launch_config(d)
        if "kv_bytes_per_token" in d:
            v = d.pop("kv_bytes_per_token")
            if d.get("kv_transfer_bytes_per_token") is None:
                d["kv_transfer_bytes_per_token"] = v
        known = {f.name for f in fields(cls)} - {"timing_model", "fixed_prefill_ms", "fixed_decode_ms"}
        kw = {}
        for k, v in d.items():
            if k == "timing_model":
                kw.update(_timing_model(v))
            elif k in known:
                kw[k] = typed(cls, k, v, "--extra-engine-args")
            elif k in _INERT_DEFAULTS or k.startswith("aic_"):
                if v not in (None, _INERT_DEFAULTS.get(k), False):
                    raise TraceError(f"error: --extra-engine-args: `{k}` is not supported by trace-pipe replay "
                                     "(aggregated vLLM engine only)")
            else:
                raise TraceError(f"error: --extra-engine-args: unknown field `{k}`")
        a = cls(**kw)
        a.validate()
        return a

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise TraceError(f"error: --extra-engine-args: {msg}")
        need(self.engine_type == "vllm", f"backend {self.engine_type!r} is not supported yet (vllm only)"
             if self.engine_type in BACKENDS else f"engine_type {self.engine_type!r} is not supported (vllm only)")
        for k in ("num_gpu_blocks", "block_size", "max_num_seqs", "max_num_batched_tokens"):
            v = getattr(self, k)
            need(isinstance(v, int) and not isinstance(v, bool) and v > 0, f"`{k}` must be a positive integer")
        need(self.block_size >= 2, "`block_size` must be >= 2 (as Dynamo's vLLM mocker)")
        for k in ("speedup_ratio", "decode_speedup_ratio"):
            v = getattr(self, k)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, f"`{k}` must be a finite number >= 0")
            if v != 0:  # 0 is Dynamo's "no scaling", as 1
                limits.check_ratio(v, f"error: --extra-engine-args: {k}")
        need(isinstance(self.max_paddings, int) and not isinstance(self.max_paddings, bool)
             and self.max_paddings >= 0, "`max_paddings` must be an integer >= 0")
        need(self.preemption_mode in ("lifo", "fifo"), "`preemption_mode` must be lifo or fifo")
        need(self.scheduler in SCHEDULERS, f"`scheduler` must be one of {', '.join(SCHEDULERS)}")
        need(self.worker_type in WORKER_TYPES, f"`worker_type` must be one of {', '.join(WORKER_TYPES)}")
        need(self.kv_transfer_timing_mode in KV_TRANSFER_MODES,
             f"`kv_transfer_timing_mode` must be one of {', '.join(KV_TRANSFER_MODES)}")
        for k in ("kv_transfer_bandwidth", "kv_transfer_bytes_per_token"):
            v = getattr(self, k)
            need(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0),
                 f"`{k}` must be a finite number > 0")
        if self.scheduler == "vllm_v0":
            # vLLM 0.2/0.3 had neither: say so rather than silently ignoring the flags
            need(not self.enable_chunked_prefill and not self.enable_prefix_caching,
                 "`scheduler` vllm_v0 (vLLM 0.2/0.3) needs enable_chunked_prefill false and "
                 "enable_prefix_caching false")
        for k, lim in _ENGINE_LIMITS.items():
            lim.check(getattr(self, k), f"error: --extra-engine-args: {k}")


def _flatten_launch_config(d: dict) -> dict:
    """1.6's launch config as the flat keys above: `engine` holds them (`backend` is 1.4's
    `engine_type`); the keys around it are accepted at their defaults."""
    eng = d.pop("engine")
    if not isinstance(eng, dict):
        raise TraceError("error: --extra-engine-args: `engine` must be an object")
    for k, v in d.items():
        if k not in _LAUNCH_DEFAULTS:
            raise TraceError(f"error: --extra-engine-args: unknown field `{k}`")
        if k != "dynamo" and k != "num_gpu_blocks_is_explicit" and v not in (None, _LAUNCH_DEFAULTS[k]):
            raise TraceError(f"error: --extra-engine-args: `{k}` is not supported by trace-pipe replay "
                             "(one aggregated vLLM engine per worker)")
    flat = dict(eng)
    if "engine_type" in flat:
        raise TraceError("error: --extra-engine-args: unknown field `engine.engine_type` (1.6 calls it `backend`)")
    if "backend" in flat:
        flat["engine_type"] = flat.pop("backend")
    if flat.get("engine_type", "vllm") == "vllm":
        # settings of the other backends, which a vLLM engine ignores (as Dynamo's does)
        flat.pop("sglang", None)
        flat.pop("trtllm", None)
    return flat


def _timing_model(v: object) -> dict:
    """1.6's `timing_model` object as EngineArgs fields."""
    if not isinstance(v, dict) or not isinstance(v.get("type"), str):
        raise TraceError("error: --extra-engine-args: `timing_model` must be an object with a string `type`")
    kind = v["type"]
    extra = sorted(set(v) - {"type", "prefill_ms", "decode_ms"})
    if kind == "polynomial" and len(v) == 1:
        return {"timing_model": "polynomial"}
    if kind == "fixed" and not extra:
        out = {"timing_model": "fixed"}
        for k in ("prefill_ms", "decode_ms"):
            x = v.get(k)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
                raise TraceError(f"error: --extra-engine-args: `timing_model.{k}` must be a finite number >= 0")
            out[f"fixed_{k}"] = float(limits.MILLISECONDS.check(x, f"error: --extra-engine-args: timing_model.{k}"))
        return out
    if kind in ("polynomial", "fixed"):
        raise TraceError(f"error: --extra-engine-args: unknown field `timing_model.{(extra or ['type'])[0]}`")
    raise TraceError(f"error: --extra-engine-args: timing_model type {kind!r} is not supported by trace-pipe replay "
                     "(polynomial, fixed; or trace-pipe's --timing)")


@dataclass(frozen=True, slots=True)
class Disaggregation:
    """Separate prefill and decode pools (Dynamo's offline disaggregated replay): how many workers
    each, and each pool's engine arguments (`--prefill-engine-args`, `--decode-engine-args`)."""

    num_prefill_workers: int = 1
    num_decode_workers: int = 1
    prefill: EngineArgs = EngineArgs(worker_type="prefill")
    decode: EngineArgs = EngineArgs(worker_type="decode")

    @classmethod
    def from_json(cls, num_prefill_workers: int, num_decode_workers: int, prefill: dict | None,
                  decode: dict | None, extra: dict | None = None) -> "Disaggregation":
        """Pools from Dynamo's arguments: each pool's engine args (its `worker_type`, when given,
        must name it), or `extra` for both when neither is given (a trace-pipe shorthand)."""
        if extra is not None and (prefill is not None or decode is not None):
            raise TraceError("error: --extra-engine-args cannot be combined with --prefill-engine-args/"
                             "--decode-engine-args")
        for name, n in (("--num-prefill-workers", num_prefill_workers), ("--num-decode-workers", num_decode_workers)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise TraceError(f"error: {name} must be >= 1")
        pools = []
        for role, d in (("prefill", prefill), ("decode", decode)):
            d = dict((extra if prefill is None and decode is None else d) or {})
            flat = d.get("engine") if isinstance(d.get("engine"), dict) else d
            wt = flat.get("worker_type", role) if extra is None or prefill is not None or decode is not None else role
            if wt != role:
                shown = {"aggregated": "Aggregated", "prefill": "Prefill", "decode": "Decode"}.get(wt, wt)
                raise TraceError(f"error: offline disaggregated replay requires {role}_engine_args.worker_type={role}, "
                                 f"got {shown}")
            flat = dict(flat)
            flat["worker_type"] = role
            pools.append(EngineArgs.from_json({**d, "engine": flat} if "engine" in d else flat))
        p, dc = pools
        if p.block_size != dc.block_size:
            raise TraceError(f"error: offline disaggregated replay requires matching prefill/decode block_size, got "
                             f"{p.block_size} and {dc.block_size}")
        return cls(num_prefill_workers, num_decode_workers, p, dc)


@dataclass(frozen=True, slots=True)
class RouterConfig:
    # the prefill term's scale: Dynamo's `prefill_load_scale`, of which `overlap_score_weight` is
    # the deprecated alias that wins when both are given (1.4.2 and 1.6.1 alike, see sim/router.py)
    overlap_score_weight: float = 1.0
    router_temperature: float = 0.0
    router_queue_threshold: float | None = None  # disabled by default in 1.4.2 (observed §9)
    router_track_output_blocks: bool = False
    overlap_score_credit: float = 1.0  # blocks of prefill credited per overlapping block
    decode_active_request_weight: float = 0.0  # cost per request active on the worker

    @classmethod
    def from_json(cls, d: dict | None) -> "RouterConfig":
        d = dict(d or {})
        if "prefill_load_scale" in d:
            scale = d.pop("prefill_load_scale")
            d.setdefault("overlap_score_weight", scale)
        known = {f.name for f in fields(cls)}
        kw = {k: typed(cls, k, v, "--router-config") for k, v in d.items() if k in known}
        bad = [k for k in d if k not in known and not k.startswith("router_") and k not in (
            "use_kv_events", "durable_kv_events", "host_cache_hit_weight",
            "disk_cache_hit_weight", "shared_cache_multiplier")]
        if bad:
            raise TraceError(f"error: --router-config: unknown field `{bad[0]}`")
        if kw.get("router_track_output_blocks"):
            raise TraceError("error: --router-config: router_track_output_blocks is not supported")
        return cls(**kw)

    def __post_init__(self) -> None:
        # every weight, however the config was made (JSON, a sweep grid, the Python API)
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or f.name == "router_track_output_blocks":
                continue
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise TraceError(f"error: --router-config: {f.name} must be a finite number >= 0, got {v!r}")


# Value bounds past the types (sizes that allocate, times that become int64 nanoseconds)
_ENGINE_LIMITS = {"num_gpu_blocks": limits.GPU_BLOCKS, "block_size": limits.BLOCK_SIZE,
                  "max_num_batched_tokens": limits.TOKENS, "max_paddings": limits.TOKENS,
                  "fixed_prefill_ms": limits.MILLISECONDS, "fixed_decode_ms": limits.MILLISECONDS}
_TYPE_NAMES = {"bool": "a boolean", "int": "an integer", "float": "a number", "str": "a string"}


def typed(cls: type, key: str, value: object, flag: str) -> object:
    """`value` as field `key` of `cls` declares it, or the one-line error naming the option and
    the key. Types are exact, as serde reads Dynamo's JSON: "false" is not a boolean (a string is
    truthy: it would turn the option on), 64.0 is not an integer, true is not a number; an
    integer is a float's value. Every field is checked by its declared type, so a field added to
    the dataclass is checked with no code here."""
    kind = _ANNOTATIONS.setdefault(cls, {f.name: str(f.type) for f in fields(cls)})[key]
    base, _, optional = kind.partition("|")
    base = base.strip()
    if value is None and optional.strip() == "None":
        return None
    if base == "bool":
        ok = isinstance(value, bool)
    elif base == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    else:
        ok = isinstance(value, str)
    if not ok:
        got = repr(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else kind_of(value)
        raise TraceError(f"error: {flag}: {key}: expected {_TYPE_NAMES[base]}, got {got}")
    return value


_ANNOTATIONS: dict[type, dict[str, str]] = {}


def check_run_options(*, num_workers: list[int] | int = 1, trace_block_size: int | None = None,
                      arrival_speedup_ratio: float = 1.0, max_sim_time_seconds: float | None = None) -> None:
    """The replay options every command shares (`replay`, `sweep`, a run file), checked once,
    before anything is read: the same value is refused by every command in the same words (a
    sweep does not turn a bad option into a table of error rows), and each size that allocates
    per unit is held to its row of `pipeline.limits`."""
    for n in [num_workers] if isinstance(num_workers, int) else num_workers:
        if n < 1:
            raise TraceError(f"error: --num-workers must be >= 1, got {n}")
        limits.WORKERS.check(n, "error: --num-workers")
    if trace_block_size is not None:
        if trace_block_size < 1:
            raise TraceError(f"error: --trace-block-size must be >= 1, got {trace_block_size}")
        limits.BLOCK_SIZE.check(trace_block_size, "error: --trace-block-size")
    if not (math.isfinite(arrival_speedup_ratio) and arrival_speedup_ratio > 0):
        raise TraceError(f"error: --arrival-speedup-ratio must be a finite number > 0, got {arrival_speedup_ratio:g}")
    limits.check_ratio(arrival_speedup_ratio, "error: --arrival-speedup-ratio")
    if max_sim_time_seconds is not None:
        if not (math.isfinite(max_sim_time_seconds) and max_sim_time_seconds >= 0):
            raise TraceError(f"error: --max-sim-time-seconds must be a finite number >= 0, got {max_sim_time_seconds:g}")
        limits.SECONDS.check(max_sim_time_seconds, "error: --max-sim-time-seconds")
