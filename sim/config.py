"""Engine and router settings, parsed from the same JSON keys and defaults as Dynamo's
`--extra-engine-args` (`MockEngineArgs`, dynamo-replay.md §5.1) and `--router-config`
(`KvRouterConfig`, §6.2; 1.4.2 behaviour per the observed notes §9)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from trace_pipe.pipeline.errors import TraceError

# MockEngineArgs keys that exist in Dynamo but change nothing in this vLLM aggregated model; they
# are accepted (so Dynamo command lines work) only at their defaults.
_INERT_DEFAULTS = {
    "dp_size": 1, "startup_time": None, "worker_type": "aggregated", "is_prefill": False,
    "is_decode": False, "planner_profile_data": None, "reasoning": None, "enable_local_indexer": None,
    "bootstrap_port": None, "zmq_kv_events_port": None, "zmq_replay_port": None, "g1_backend": "native",
    "router_queue_policy": None, "max_model_len": None, "watermark": None, "num_g2_blocks": None,
    "num_g3_blocks": None, "enable_g4_storage": False, "kv_bytes_per_token": None,
    "kv_transfer_bandwidth": None, "sglang": None, "trtllm": None, "aic_backend": None,
}


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
    # Not a Dynamo key: "dynamo" is ai-dynamo 1.4.2's mocker (mixed prefill + decode passes);
    # "vllm_v0" is vLLM 0.2/0.3's scheduler (prefill-only steps while prompts can be admitted,
    # else decode-only steps; FCFS recompute preemption; see sim/engine.py).
    scheduler: str = "dynamo"
    # vllm_v0 only: vLLM 0.2.2-0.3.x batch prompts padded to the longest one, and stop adding
    # prompts to a step once the padded size would pass max_num_batched_tokens or the padding
    # would pass max_paddings (its default 256); the step is still timed on the real tokens.
    max_paddings: int = 256

    @classmethod
    def from_json(cls, d: dict | None) -> "EngineArgs":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        kw = {}
        for k, v in d.items():
            if k in known:
                kw[k] = v
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
        need(self.engine_type == "vllm", f"engine_type {self.engine_type!r} is not supported (vllm only)")
        for k in ("num_gpu_blocks", "block_size", "max_num_seqs", "max_num_batched_tokens"):
            v = getattr(self, k)
            need(isinstance(v, int) and not isinstance(v, bool) and v > 0, f"`{k}` must be a positive integer")
        need(self.block_size >= 2, "`block_size` must be >= 2 (as Dynamo's vLLM mocker)")
        for k in ("speedup_ratio", "decode_speedup_ratio"):
            v = getattr(self, k)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, f"`{k}` must be a finite number >= 0")
        need(isinstance(self.max_paddings, int) and not isinstance(self.max_paddings, bool)
             and self.max_paddings >= 0, "`max_paddings` must be an integer >= 0")
        need(self.preemption_mode in ("lifo", "fifo"), "`preemption_mode` must be lifo or fifo")
        need(self.scheduler in SCHEDULERS, f"`scheduler` must be one of {', '.join(SCHEDULERS)}")
        if self.scheduler == "vllm_v0":
            # vLLM 0.2/0.3 had neither: say so rather than silently ignoring the flags
            need(not self.enable_chunked_prefill and not self.enable_prefix_caching,
                 "`scheduler` vllm_v0 (vLLM 0.2/0.3) needs enable_chunked_prefill false and "
                 "enable_prefix_caching false")


@dataclass(frozen=True, slots=True)
class RouterConfig:
    overlap_score_weight: float = 1.0
    router_temperature: float = 0.0
    router_queue_threshold: float | None = None  # disabled by default in 1.4.2 (observed §9)
    router_track_output_blocks: bool = False

    @classmethod
    def from_json(cls, d: dict | None) -> "RouterConfig":
        d = dict(d or {})
        if "overlap_score_credit" in d and "overlap_score_weight" not in d:
            d["overlap_score_weight"] = d.pop("overlap_score_credit")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        bad = [k for k in d if k not in known and not k.startswith("router_") and k not in (
            "use_kv_events", "durable_kv_events", "prefill_load_scale", "host_cache_hit_weight",
            "disk_cache_hit_weight", "shared_cache_multiplier")]
        if bad:
            raise TraceError(f"error: --router-config: unknown field `{bad[0]}`")
        if kw.get("router_track_output_blocks"):
            raise TraceError("error: --router-config: router_track_output_blocks is not supported")
        return cls(**kw)
