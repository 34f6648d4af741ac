"""What differs between the Dynamo replays trace-pipe reproduces: one table row per version.

Every rule that changed between ai-dynamo 1.4.2, 1.5.1 and 1.6.1 (dynamo-1.6.md §3-§5) is a
field here, and the engine, the release loop, the readers and the report read it from the row the
user picked with `--dynamo-version`; nothing else in `sim/` asks which version is running.
"""

from __future__ import annotations

from dataclasses import dataclass

from trace_pipe.pipeline.errors import TraceError


@dataclass(frozen=True, slots=True)
class DynamoRules:
    version: str
    #: the release it was measured against, for messages and the README
    oracle: str
    #: decode step input u: "physical" = active KV blocks / G (1.4.2); "logical" = summed context
    #: tokens / (G * block_size) (1.5.1, 1.6.1)
    decode_input: str
    #: the pass that completes a prompt also charges a decode step, and that request counts in u
    #: (1.4.2, 1.5.1); 1.6.1 emits the first token at the prefill's end with no decode charge and
    #: charges D only for requests that already have a token
    prompt_pass_decodes: bool
    #: requests ready at the same instant are released in "file" order (1.4.2) or in
    #: "request_id" order (1.5.1, 1.6.1)
    tie_order: str
    #: agentic v2 `not_before_ms` is a floor for every node, not only for roots (1.5.1, 1.6.1)
    not_before_floor: bool
    #: headerless agentic v1 rows: read natively (1.4.2) or lifted to v2 as AISimulate lifts them
    agentic_v1: str
    #: the report's shape: "1.4" (1.4.2's flat 71 keys), "1.5" (1.5.1's: sample counts, agentic
    #: trajectories and graph, per-request rows for agentic traces) or "1.6" (1.6.1's summary and
    #: rows, see sim/report_aisim.py)
    report: str
    #: with chunked prefill disabled, a request resumed after a preemption is still admitted in
    #: chunks when the rest of its prompt fits the token budget (1.6.1); False: its whole known
    #: sequence must fit (1.4.2)
    resume_chunks: bool = False
    #: how `--trace-format dynamo` lowers raw agentic request traces: "exporter" (the rules of
    #: `request_trace_to_mooncake`, 1.4.2) or AISimulate's own raw loader as 1.5.1 or 1.6.1 ships
    #: it, "aisimulate-1.5" / "aisimulate-1.6" (pipeline/raw_lowering.py)
    raw_dynamo: str = "exporter"
    #: when the KV router sees the blocks a pass stores or evicts: "schedule" as soon as the pass
    #: is scheduled (1.4.2); "pass_end" when the pass ends, before requests arriving at that
    #: instant are routed (1.5.1, 1.6.1)
    kv_visibility: str = "schedule"
    #: an agentic play ends at its first rejected request: what it has not released yet never is
    #: (1.5.1, 1.6.1); False: a rejection releases its dependents like a completion (1.4.2)
    rejection_ends_play: bool = False
    #: disaggregated replay: the prefill pool's copy of a request asks for its whole output and
    #: decodes it there at no cost (a decode step takes no time but one token of the pass's
    #: budget), the handoff starting when it is done (1.4.2); False: one token, the handoff at
    #: the end of its prompt's pass (1.6.1)
    prefill_copy_decodes: bool = False
    #: disaggregated replay: a decode worker reserves blocks for a handoff as soon as it is idle
    #: (at the handoff, or when its pass ends: 1.6.1); False: only when it starts a pass (1.4.2)
    reserve_when_idle: bool = True
    #: disaggregated replay: within an instant, decode workers start their passes before the
    #: prefill workers (1.4.2); False: after them (1.6.1)
    decode_workers_first: bool = False
    #: disaggregated replay takes `--router-mode kv_router`: the prefill pool routed by KV
    #: overlap and prefill load (no active blocks), the decode pool by active blocks alone (1.6.1;
    #: sim/router.py DecodeKvRouter); False: round_robin only
    disagg_kv_router: bool = False


VERSIONS: dict[str, DynamoRules] = {
    "1.4": DynamoRules("1.4", "ai-dynamo 1.4.2", decode_input="physical", prompt_pass_decodes=True,
                       tie_order="file", not_before_floor=False, agentic_v1="native", report="1.4",
                       prefill_copy_decodes=True, reserve_when_idle=False,
                       decode_workers_first=True),
    "1.5": DynamoRules("1.5", "ai-dynamo 1.5.1", decode_input="logical", prompt_pass_decodes=True,
                       tie_order="request_id", not_before_floor=True, agentic_v1="lift", report="1.5",
                       resume_chunks=True, raw_dynamo="aisimulate-1.5", kv_visibility="pass_end",
                       rejection_ends_play=True),
    "1.6": DynamoRules("1.6", "ai-dynamo 1.6.1", decode_input="logical", prompt_pass_decodes=False,
                       tie_order="request_id", not_before_floor=True, agentic_v1="lift", report="1.6",
                       resume_chunks=True, raw_dynamo="aisimulate-1.6", kv_visibility="pass_end",
                       rejection_ends_play=True, disagg_kv_router=True),
}
DEFAULT = "1.6"


def rules(version: str | None) -> DynamoRules:
    """The rule set for a `--dynamo-version` value ("1.6", "1.6.1", "1.4.2", ... ; None: default)."""
    v = DEFAULT if version is None else str(version).strip()
    key = ".".join(v.split(".")[:2])
    r = VERSIONS.get(key)
    if r is None:
        raise TraceError(f"error: --dynamo-version must be one of {', '.join(VERSIONS)}, got {version!r}")
    return r
