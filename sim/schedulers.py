"""The pass schedulers a mock worker can run, by name: one per rule set, each a subclass of the
engine machinery (sim/engine.py) that decides what a pass schedules and says when the exact
decode fast path applies (`decode_run_applies`).

    dynamo-1.4, dynamo-1.5, dynamo-1.6   Dynamo's mocker under that release's `DynamoRules` row
                                         (sim/pass_dynamo.py: one class, the differences are data)
    vllm-v0                              vLLM 0.2/0.3's prefill-or-decode steps (sim/pass_vllm_v0.py)

The engine arguments' `scheduler` picks the family ("dynamo", the default, or "vllm_v0") and
`--dynamo-version` the Dynamo row (`scheduler_for`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import EngineArgs
from .engine import EngineWorker, Stats
from .pass_dynamo import DynamoWorker
from .pass_vllm_v0 import VllmV0Worker
from .timing import TimingModel
from .versions import VERSIONS, DynamoRules
from .workload import PromptKeys


@dataclass(frozen=True, slots=True)
class PassScheduler:
    name: str
    worker: type[EngineWorker]
    #: the Dynamo release whose mocker rules the passes follow (None: not a Dynamo scheduler)
    rules: DynamoRules | None = None

    def make(self, wid: int, args: EngineArgs, timing: TimingModel, trace_block_size: int, stats: Stats,
             record: bool = True, prompts: PromptKeys | None = None) -> EngineWorker:
        if self.rules is None:
            return self.worker(wid, args, timing, trace_block_size, stats, record, prompts)
        return self.worker(wid, args, timing, trace_block_size, stats, record, prompts, self.rules)


SCHEDULERS: dict[str, PassScheduler] = {
    **{f"dynamo-{v}": PassScheduler(f"dynamo-{v}", DynamoWorker, rules) for v, rules in VERSIONS.items()},
    "vllm-v0": PassScheduler("vllm-v0", VllmV0Worker),
}


def scheduler_for(args: EngineArgs, rules: DynamoRules) -> PassScheduler:
    """The scheduler the engine arguments and the Dynamo release select."""
    if args.scheduler == "vllm_v0":
        return SCHEDULERS["vllm-v0"]
    return SCHEDULERS[f"dynamo-{rules.version}"]
