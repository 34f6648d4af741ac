"""Deterministic synthetic Dynamo request traces (all four record generations) for tests and the
benchmark: chains with tool gaps (harness tool rows), sub-agents spawned and joined, concurrent
requests in one chain, tool calls with no harness row (inferred tools), prefill / decode workers
with dp ranks (worker 2 and worker 10, to show numeric order)."""

from __future__ import annotations

import math
import random

import orjson

T0_MS = 1_777_312_800_000
BLOCK = 16
_CTX = {  # generation -> (schema, chain field, parent field, run fields)
    "G1": ("dynamo.agent.trace.v1", "program_id", "parent_program_id", ("workflow_type_id", "workflow_id")),
    "G2": ("dynamo.agent.trace.v1", "trajectory_id", "parent_trajectory_id", ("session_type_id", "session_id")),
    "G3a": ("dynamo.request.trace.v1", "trajectory_id", "parent_trajectory_id", ()),
    "G3b": ("dynamo.request.trace.v1", "session_id", "parent_session_id", ()),
}
WORKERS = ((1, 0), (2, 0), (2, 1), (10, 0))


def _ctx(gen: str, run: str, chain: str, parent: str | None) -> dict:
    _, cf, pf, runf = _CTX[gen]
    d: dict = {}
    if runf:
        d[runf[0]] = "agent"
        d[runf[1]] = run
    d[cf] = chain
    if parent:
        d[pf] = parent
    return d


class _Gen:
    def __init__(self, gen: str, run: str, rnd: random.Random) -> None:
        self.gen = gen
        self.run = run
        self.rnd = rnd
        self.rows: list[dict] = []
        self.n = 0

    def request(self, chain: str, parent: str | None, start: int, total: float, tool_calls: list[dict]) -> dict:
        rnd = self.rnd
        self.n += 1
        rid = f"{self.run}-r{self.n}"
        wait = round(rnd.uniform(0.5, 20.0), 3)
        prefill = round(rnd.uniform(5.0, 80.0), 3)
        ttft = round(wait + prefill + rnd.uniform(-0.002, 0.002), 6)  # independently rounded, as recorded
        n_in = rnd.randint(40, 400)
        pw, pr = WORKERS[rnd.randrange(len(WORKERS))]
        dw, dr = WORKERS[rnd.randrange(len(WORKERS))]
        req: dict = {
            "request_id": rid, "x_request_id": f"call-{self.n}", "model": "test-model",
            "input_tokens": n_in, "output_tokens": rnd.randint(1, 300), "cached_tokens": n_in // 2,
            "request_received_ms": start, "prefill_wait_time_ms": wait, "prefill_time_ms": prefill,
            "ttft_ms": ttft, "total_time_ms": total, "avg_itl_ms": round(rnd.uniform(1, 9), 3),
            "kv_hit_rate": round(rnd.random(), 3), "queue_depth": rnd.randint(0, 5),
            "worker": {"prefill_worker_id": pw, "prefill_dp_rank": pr, "decode_worker_id": dw, "decode_dp_rank": dr},
            "replay": {"trace_block_size": BLOCK, "input_length": n_in,
                       "input_sequence_hashes": [rnd.getrandbits(64) for _ in range(math.ceil(n_in / BLOCK))]},
        }
        if self.gen != "G1":
            req["finish_reason_metadata"] = {
                "finish_reason": "tool_calls" if tool_calls else "stop", "backend_finish_reason": "stop",
                "tool_calls": tool_calls,
                "choices": [{"choice_index": 0, "finish_reason": "tool_calls" if tool_calls else "stop"}]}
        schema = _CTX[self.gen][0]
        end = start + round(total)
        self.rows.append({"schema": schema, "event_type": "request_end", "event_time_unix_ms": end,
                          "event_source": "dynamo", "agent_context": _ctx(self.gen, self.run, chain, parent),
                          "request": req})
        return {"id": rid, "start": start, "end": end}

    def tool(self, chain: str, parent: str | None, call_id: str, cls: str, start: int, end: int,
             with_start_row: bool) -> None:
        schema = _CTX[self.gen][0]
        ctx = _ctx(self.gen, self.run, chain, parent)
        if with_start_row:
            self.rows.append({"schema": schema, "event_type": "tool_start", "event_time_unix_ms": start,
                              "event_source": "harness", "agent_context": ctx,
                              "tool": {"tool_call_id": call_id, "tool_class": cls, "status": "running",
                                       "started_at_unix_ms": start}})
        tool: dict = {"tool_call_id": call_id, "tool_class": cls, "status": "succeeded",
                      "duration_ms": float(end - start), "output_bytes": self.rnd.randint(10, 5000)}
        if self.gen != "G1":
            tool["started_at_unix_ms"] = start
            tool["ended_at_unix_ms"] = end
        self.rows.append({"schema": schema, "event_type": "tool_end", "event_time_unix_ms": end,
                          "event_source": "harness", "agent_context": ctx, "tool": tool})

    def chain(self, chain: str, parent: str | None, start: int, n: int, overlap_at: int | None) -> int:
        """n requests separated by tool calls; request `overlap_at` gets a concurrent sibling.
        Returns the chain's end time."""
        rnd = self.rnd
        t = start
        for k in range(n):
            last = k == n - 1
            total = round(rnd.uniform(200.0, 1500.0), 6)
            call_id = f"{chain}-call-{k}"
            # the last request's tool call and every third one have no harness row (inferred)
            inferred = last or k % 3 == 2
            calls = [{"choice_index": 0, "tool_call_index": 0, "id": call_id, "name": "web_search" if k % 2 else "bash"}]
            r = self.request(chain, parent, t, total, calls)
            if overlap_at == k:  # a concurrent request of the same chain (lanes)
                self.request(chain, parent, t + round(total / 3), total, [])
            t = r["end"] + rnd.randint(0, 30)
            if not last:
                gap = rnd.randint(50, 900)
                if not inferred:
                    self.tool(chain, parent, call_id, "web_search" if k % 2 else "bash", t, t + gap,
                              with_start_row=k % 2 == 0)
                t += gap + rnd.randint(0, 20)
        return t


def dynamo_records(generations: tuple[str, ...] = ("G1", "G2", "G3a", "G3b"), runs: int = 1,
                   chain_len: int = 6, subagents: int = 2, seed: int = 7) -> dict[str, list[dict]]:
    """generation -> rows (request_end and tool rows), deterministic for a seed."""
    out: dict[str, list[dict]] = {}
    for gi, gen in enumerate(generations):
        rnd = random.Random(f"{seed}-{gen}")
        g = None
        rows: list[dict] = []
        for ri in range(runs):
            run = f"{gen.lower()}-run{ri}"
            g = _Gen(gen, run, rnd)
            root = f"{run}:main"
            start = T0_MS + gi * 10_000 + ri * 1000
            g.chain(root, None, start, chain_len, overlap_at=1)
            # sub-agents start mid-run (spawned after a parent request) and overlap each other
            for si in range(subagents):
                g.chain(f"{run}:sub{si}", root, start + 1500 + si * 400, max(2, chain_len // 2), overlap_at=None)
            rows.extend(g.rows)
        rows.sort(key=lambda d: d["event_time_unix_ms"])  # as a sink writes them: by completion
        out[gen] = rows
    return out


def write_jsonl(rows: list[dict], path: str) -> None:
    with open(path, "wb") as f:
        for r in rows:
            f.write(orjson.dumps(r) + b"\n")
