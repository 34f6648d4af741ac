"""Generated Dynamo traces for the replay tests (record builders from dynamo_records)."""

from __future__ import annotations

import random

from dynamo_records import req, tool


def agentic_records(seed: int) -> list[dict]:
    """Three root sessions with tool calls between turns, sub-agents spawned mid-session (the
    parent carries on while they run, and later waits for them), TTFT on every request."""
    rng = random.Random(seed)
    out: list[dict] = []
    n = 0

    def call(chain, parent, t):
        nonlocal n
        n += 1
        dur = rng.randint(300, 4000)
        out.append(req(f"r{n}", chain, parent, t, t + dur, [n % 7, 100 + n], ttft_ms=float(rng.randint(20, 290))))
        return t + dur

    for k in range(3):
        chain = f"main{k}"
        t = rng.randint(0, 3000)
        for turn in range(rng.randint(4, 7)):
            t = call(chain, None, t)
            if rng.random() < 0.6:  # a tool call, then the model reads its result
                s = t + rng.randint(0, 50)
                e = s + rng.randint(10, 2000)
                out.append(tool(chain, f"{chain}-tc{turn}", rng.choice(["bash", "read", "edit"]), s, e))
                t = e + rng.randint(0, 80)
            else:
                t += rng.randint(0, 700)
            if turn in (1, 3):  # a sub-agent: starts after this turn, runs three calls
                sub = f"{chain}.agent{turn}"
                st = t + rng.randint(1, 30)
                for _ in range(3):
                    st = call(sub, chain, st)
                    s = st + rng.randint(0, 20)
                    e = s + rng.randint(5, 300)
                    out.append(tool(sub, f"{sub}-tc{st}", "grep", s, e))
                    st = e + rng.randint(0, 40)
                t = max(t, st) + 10 if turn == 3 else t + 5  # turn 3: the parent waits for it
    return out


def two_group_trace(directory) -> str:
    """Eight plain Mooncake requests in two groups sharing a 2-block prefix (trace block size 16),
    arriving 1 ms apart: with 2 workers round robin splits each group, the KV router keeps them
    together. The sweep tests' shared input."""
    import orjson
    from pathlib import Path

    rows = [{"timestamp": float(i), "input_length": 64, "output_length": 4,
             "hash_ids": [100 * (i % 2) + 1, 100 * (i % 2) + 2, 1000 + i, 2000 + i]} for i in range(8)]
    p = Path(directory) / "t.jsonl"
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return str(p)
