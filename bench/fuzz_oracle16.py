"""Random small traces through ai-dynamo 1.6.1 (the oracle) and trace-pipe's `--dynamo-version 1.6`
replay, compared on every summary key and every per-request row.

    .venv/bin/python bench/fuzz_oracle16.py -n 500            # 500 traces from seed 0
    .venv/bin/python bench/fuzz_oracle16.py -n 50 --seed 7 -v # print each mismatch
    .venv/bin/python bench/fuzz_oracle16.py --case 123        # one trace: its rows, options, diff

The oracle runs as one long-lived child of $TRACE_PIPE_ORACLE16_PYTHON (default
/work/oracle16/bin/python) calling `dynamo.replay.run_trace_replay` per trace (engine arguments
nested under "engine", as 1.6.1 takes them); trace-pipe runs in-process through
`sim.replay.run_replay`. Traces: plain Mooncake rows or agentic Mooncake v2 plays (sequence,
join and spawn edges, `not_before_ms` floors), both preemption modes, chunked prefill on and off,
tight KV pools (small num_gpu_blocks, some prompts rejected), 0-output requests, prefix sharing,
speedups, 1-3 round_robin workers and small block sizes (so the oracle runs in milliseconds).

A trace is equal when every oracle summary key (wall-clock keys aside) is within 1e-9 relative of
ours and every per-request row's timing fields are equal (matched by request_id for agentic
rows; plain Mooncake rows carry no id in 1.6.1's output, so those compare as sorted tuples). Keys
ours lacks are counted apart (`missing`): they are report keys, not engine numbers. A trace the
oracle refuses (dead end, invalid trace) must be refused by trace-pipe too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# wall-clock keys, and keys whose value depends on the process (not the simulation)
SKIP = {"wall_time_ms", "processed_tokens_per_s", "processed_output_tokens_per_s", "trace_pipe"}
ROW_FIELDS = ("arrival_time_ms", "first_admit_ms", "first_token_ms", "last_token_ms", "terminal_time_ms",
              "reused_input_tokens", "output_length")
REL = 1e-9

_SERVER = r"""
import json, os, sys, tempfile
from dynamo.replay import run_trace_replay
V15 = sys.argv[1] == "1.5"
if V15:  # 1.5.1: flat MockEngineArgs, no execution model
    from dynamo.mocker import MockEngineArgs
out_fd = sys.stdout
for line in sys.stdin:
    job = json.loads(line)
    with tempfile.TemporaryDirectory() as d:
        tr = os.path.join(d, "t.jsonl")
        with open(tr, "w") as f:
            f.write(job["text"])
        try:
            kw = {}
            if V15:
                kw["extra_engine_args"] = MockEngineArgs.from_json(json.dumps(job["engine"]))
            else:
                kw["extra_engine_args"] = {"engine": job["engine"]}
                kw["execution_model"] = "mock" if job["fmt"] != "mooncake" else None
            rep = run_trace_replay([tr], trace_format=job["fmt"], replay_mode="offline", router_mode="round_robin",
                                   num_workers=job["workers"], trace_block_size=job["tbs"],
                                   arrival_speedup_ratio=job["arrival_speedup"],
                                   report_jsonl_path=os.path.join(d, "r.jsonl"), **kw)
            r = rep.to_dict() if hasattr(rep, "to_dict") else rep
            res = {"summary": r["summary"], "per_request": r.get("per_request") or []}
        except BaseException as e:  # a Rust panic is a BaseException
            res = {"error": f"{type(e).__name__}: {e}"}
    out_fd.write(json.dumps(res) + "\n")
    out_fd.flush()
"""


def oracle16_python(version: str = "1.6") -> str | None:
    """The oracle's Python for `version` (parity_replay.oracle_python: one rule for every bench
    and test)."""
    from parity_replay import oracle_python

    return oracle_python(version)


class Oracle:
    """One long-lived 1.6.1 process answering a trace per line (0.1 s of start-up saved per trace)."""

    def __init__(self, py: str, version: str = "1.6") -> None:
        self.p = subprocess.Popen([py, "-c", _SERVER, version], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)

    def run(self, case: dict) -> dict:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(json.dumps(case) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("the oracle process died")
        return json.loads(line)

    def close(self) -> None:
        if self.p.stdin:
            self.p.stdin.close()
        self.p.wait(timeout=30)


# -- random traces -------------------------------------------------------------------------

def _prompt(rng: random.Random, tbs: int, families: int, fresh: list[int]) -> tuple[int, list[int]]:
    """(input_length, hash_ids): a shared family prefix (prefix reuse) plus fresh ids."""
    nfam = rng.choice([0, 1, 1, 2, 3])
    fam = rng.randrange(families)
    ids = [1000 * (fam + 1) + j for j in range(nfam)]
    for _ in range(rng.choice([0, 1, 1, 2, 3, 4])):
        fresh[0] += 1
        ids.append(fresh[0])
    if not ids:
        fresh[0] += 1
        ids.append(fresh[0])
    cap = len(ids) * tbs
    L = rng.randint(max(1, cap - tbs + 1), cap)  # v2 needs len(hash_ids) == ceil(L / tbs)
    return L, ids


def gen_case(seed: int) -> dict:
    rng = random.Random(seed)
    bs = rng.choice([2, 2, 4, 4, 8])
    tbs = rng.choice([bs, bs, 2 * bs, max(1, bs // 2), 4])
    agentic = rng.random() < 0.4
    big = rng.random() < 0.15  # longer traces: preemptions pile up
    n = rng.randint(12, 30) if big else rng.randint(1, 12)
    eng: dict = {"block_size": bs}
    tight = rng.random() < 0.6
    G = rng.randint(4, 40) if tight else rng.choice([64, 256])
    eng["num_gpu_blocks"] = G
    if rng.random() < 0.5:
        eng["preemption_mode"] = "fifo"
    chunked = rng.random() < 0.7
    if not chunked:
        eng["enable_chunked_prefill"] = False
    if rng.random() < 0.6:
        eng["max_num_batched_tokens"] = rng.choice([4, 8, 12, 16, 24, 32, 64])
    if rng.random() < 0.3:
        eng["max_num_seqs"] = rng.randint(1, 6)
    if rng.random() < 0.15:
        eng["speedup_ratio"] = rng.choice([0, 2, 10, 0.5])
    if rng.random() < 0.1:
        eng["decode_speedup_ratio"] = rng.choice([2, 3.5])
    if rng.random() < 0.1:
        eng["enable_prefix_caching"] = False
    workers = rng.choice([1, 1, 1, 2, 3])
    arrival_speedup = rng.choice([1.0] * 6 + [2.0, 0.5])
    mnbt = eng.get("max_num_batched_tokens", 8192)
    fresh = [0]
    families = rng.randint(1, 3)
    reqs = []
    for i in range(n):
        L, ids = _prompt(rng, tbs, families, fresh)
        if not chunked and L > mnbt:  # a certain dead end: keep it rare
            if rng.random() < 0.9:
                L = max(1, min(L, mnbt))
                ids = ids[:-(-L // tbs)]
        out = rng.choice([0, 1, 2, 3, 5, 8, 12, 20]) if rng.random() < 0.9 else rng.randint(20, 60 if big else 40)
        # a request that could never fit its decode is a dead end for both: mostly avoid it
        if -(-L // bs) <= G and L + out - 1 > G * bs and rng.random() < 0.9:
            out = max(0, G * bs - L)
        reqs.append((L, ids, out))
    if agentic:
        text = _agentic_text(rng, reqs, tbs)
        fmt = "agentic_mooncake"
    else:
        t = 0.0
        lines = []
        for L, ids, out in reqs:
            t += rng.choice([0, 0, 0.5, 1, 5, 20, 60, 200])
            lines.append(json.dumps({"timestamp": t if rng.random() < 0.8 else round(t), "input_length": L,
                                     "output_length": out, "hash_ids": ids}))
        rng.shuffle(lines) if rng.random() < 0.2 else None
        text = "\n".join(lines) + "\n"
        fmt = "mooncake"
    return {"seed": seed, "text": text, "fmt": fmt, "workers": workers, "tbs": tbs, "engine": eng,
            "arrival_speedup": arrival_speedup}


def _agentic_text(rng: random.Random, reqs: list, tbs: int) -> str:
    """Agentic Mooncake v2: plays of 1-5 nodes, edges to earlier nodes of the same play."""
    header = {"schema": "dynamo.agentic_mooncake", "version": 2, "block_size": tbs, "hash_id_scope": "local",
              "source": {"format": "fuzz", "digest": "0"}}
    rows = []
    i = 0
    play = 0
    while i < len(reqs):
        size = min(len(reqs) - i, rng.randint(1, 5))
        names = []
        for j in range(size):
            L, ids, out = reqs[i + j]
            rid = f"r{rng.randrange(1000):03d}-{i + j}"
            row = {"request_id": rid, "play_id": f"p{play}", "session_id": f"p{play}", "model": "m",
                   "input_length": L, "output_length": out, "hash_ids": ids,
                   "not_before_ms": float(rng.choice([0, 0, 1, 5, 20, 50, 100.5])) if (j == 0 or rng.random() < 0.3)
                   else 0.0}
            if j:
                k = 1 if rng.random() < 0.7 else rng.randint(1, min(2, j))
                parents = rng.sample(names, k)
                deps = []
                for p in parents:
                    rel = "join" if k > 1 else rng.choice(["sequence", "sequence", "spawn"])
                    trig = rng.choice(["dispatch", "completion"]) if rel == "spawn" else "completion"
                    deps.append({"request_id": p, "trigger": trig,
                                 "delay_ms": float(rng.choice([0, 0, 1, 2.5, 10, 40])), "relation": rel})
                deps.sort(key=lambda x: (x["request_id"], x["trigger"] != "dispatch"))
                row["dependencies"] = deps
            names.append(rid)
            rows.append(row)
        i += size
        play += 1
    if rng.random() < 0.3:
        rng.shuffle(rows)  # file order differs from request_id order (ties) and from dependency order
        # ...but each node must come after its parents for some readers: keep topological order
        rows = _topo(rows)
    return "\n".join(json.dumps(x) for x in [header] + rows) + "\n"


def _topo(rows: list[dict]) -> list[dict]:
    done: set[str] = set()
    out = []
    left = list(rows)
    while left:
        nxt = []
        for r in left:
            if all(d["request_id"] in done for d in r.get("dependencies", ())):
                out.append(r)
                done.add(r["request_id"])
            else:
                nxt.append(r)
        left = nxt
    return out


# -- trace-pipe ------------------------------------------------------------------------------

def run_ours(case: dict, record: bool = False, version: str = "1.6") -> dict:
    """trace-pipe's summary and rows for `case`, or {"error": text}."""
    from trace_pipe.pipeline.errors import TraceError
    from trace_pipe.pipeline.mooncake import read_rows
    from trace_pipe.sim import report
    from trace_pipe.sim.replay import run_replay

    with tempfile.TemporaryDirectory() as d:
        tr = os.path.join(d, "t.jsonl")
        Path(tr).write_text(case["text"])
        try:
            mf = read_rows([tr])
            src = mf.header.source if mf.header is not None else None
            opts = options(case, record, version, (src["format"], src["digest"]) if src else None)
            res = run_replay(mf.rows, mf.sources, case["fmt"], opts)
        except TraceError as e:
            return {"error": str(e)}
        return {"summary": report.summary(res, rules=opts.rules),
                "per_request": list(report.jsonl_rows(res, rules=opts.rules))}


def options(case: dict, record: bool = False, version: str = "1.6", graph_source: tuple | None = None):
    """ReplayOptions for `case` under the rules of `version`."""
    from trace_pipe.sim.config import EngineArgs
    from trace_pipe.sim.replay import ReplayOptions
    from trace_pipe.sim.versions import rules

    return ReplayOptions(num_workers=case["workers"], router_mode="round_robin", trace_block_size=case["tbs"],
                         engine=EngineArgs.from_json(case["engine"]), arrival_speedup_ratio=case["arrival_speedup"],
                         record=record, rules=rules(version), graph_source=graph_source)


# -- comparison ------------------------------------------------------------------------------

def _close(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    if a == b:
        return True
    return abs(a - b) <= REL * max(abs(a), abs(b)) or (abs(b) < 1e-12 and abs(a) < 1e-12)


def compare(theirs: dict, ours: dict) -> tuple[list[str], list[str]]:
    """(differences, summary keys ours lacks)."""
    if "error" in theirs or "error" in ours:
        if "error" in theirs and "error" in ours:
            return [], []
        return [f"error: oracle {theirs.get('error', '-')!r} ours {ours.get('error', '-')!r}"], []
    diffs, missing = [], []
    ts, os_ = theirs["summary"], ours["summary"]
    for k, v in ts.items():
        if k in SKIP:
            continue
        if k not in os_:
            missing.append(k)
        elif not _close(os_[k], v):
            diffs.append(f"summary {k}: ours {os_[k]!r} oracle {v!r}")
    tr, orow = theirs["per_request"], ours["per_request"]
    if len(tr) != len(orow):
        diffs.append(f"rows: ours {len(orow)} oracle {len(tr)}")
        return diffs, missing
    if tr and "request_id" in tr[0]:
        mine = {r["request_id"]: r for r in orow}
        for t in tr:
            o = mine.get(t["request_id"])
            if o is None:
                diffs.append(f"row {t['request_id']}: missing")
                continue
            for f in ROW_FIELDS:
                if not _close(o.get(f), t.get(f)):
                    diffs.append(f"row {t['request_id']} {f}: ours {o.get(f)!r} oracle {t.get(f)!r}")
    else:
        def key(r):
            return tuple(-1.0 if r.get(f) is None else r.get(f) for f in ROW_FIELDS)
        a, b = sorted(map(key, tr)), sorted(map(key, orow))
        for x, y in zip(a, b):
            if not all(_close(p, q) for p, q in zip(x, y)):
                diffs.append(f"row: ours {y} oracle {x} ({', '.join(ROW_FIELDS)})")
    return diffs, missing


def _fails(oracle: Oracle, case: dict, version: str) -> bool:
    theirs = oracle.run(case)
    if "error" in theirs:
        return False  # shrink towards traces both tools run
    return bool(compare(theirs, run_ours(case, version=version))[0])


def minimise(oracle: Oracle, case: dict, version: str = "1.6") -> dict:
    """A smaller trace that still differs: fewer rows, shorter outputs and prompts, fewer workers,
    fewer engine keys (greedy, one change at a time, until nothing more can go)."""
    import copy
    lines = case["text"].splitlines()
    head = [x for x in lines if '"schema"' in x]
    rows = [json.loads(x) for x in lines if '"schema"' not in x]
    agentic = bool(head)

    def build(rs, **kw):
        c = dict(case, **kw)
        c["text"] = "\n".join(head + [json.dumps(r) for r in rs]) + "\n"
        return c

    def valid(rs):
        if not agentic:
            return bool(rs)
        ids = {r["request_id"] for r in rs}
        return bool(rs) and all(d["request_id"] in ids for r in rs for d in r.get("dependencies", ()))

    cur = case
    changed = True
    while changed:
        changed = False
        for i in range(len(rows)):
            if i >= len(rows):
                break
            rs = rows[:i] + rows[i + 1:]
            if valid(rs) and _fails(oracle, version=version, case=build(rs)):
                rows, cur, changed = rs, build(rs), True
        for i in range(len(rows)):
            for out in (0, 1, 2, rows[i]["output_length"] // 2):
                if out < rows[i]["output_length"]:
                    rs = copy.deepcopy(rows)
                    rs[i]["output_length"] = out
                    if _fails(oracle, version=version, case=build(rs)):
                        rows, cur, changed = rs, build(rs), True
                        break
            for nh in range(1, len(rows[i]["hash_ids"])):
                rs = copy.deepcopy(rows)
                rs[i]["hash_ids"] = rs[i]["hash_ids"][:nh]
                rs[i]["input_length"] = min(rs[i]["input_length"], nh * case["tbs"])
                if _fails(oracle, version=version, case=build(rs)):
                    rows, cur, changed = rs, build(rs), True
                    break
            if agentic and rows[i].get("dependencies"):
                rs = copy.deepcopy(rows)
                del rs[i]["dependencies"]
                if _fails(oracle, version=version, case=build(rs)):
                    rows, cur, changed = rs, build(rs), True
        if cur["workers"] > 1 and _fails(oracle, version=version, case=build(rows, workers=1)):
            cur, changed = build(rows, workers=1), True
            case = cur
        for k in list(cur["engine"]):
            if k in ("block_size",):
                continue
            e = {x: v for x, v in cur["engine"].items() if x != k}
            if _fails(oracle, version=version, case=build(rows, engine=e)):
                cur, changed = build(rows, engine=e), True
                case = cur
        if cur["arrival_speedup"] != 1.0 and _fails(oracle, version=version, case=build(rows, arrival_speedup=1.0)):
            cur, changed = build(rows, arrival_speedup=1.0), True
            case = cur
    return cur


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100, help="traces")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--case", type=int, help="run one seed and print it")
    ap.add_argument("--record", action="store_true", help="also run with pass records (the slower path)")
    ap.add_argument("--minimise", action="store_true", help="shrink each failing trace and print it")
    ap.add_argument("--version", default="1.6", choices=("1.5", "1.6"), help="oracle and rule set")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    py = oracle16_python(args.version)
    if py is None:
        print(f"skip: no {args.version} oracle (TRACE_PIPE_ORACLE16_PYTHON / TRACE_PIPE_ORACLE15_PYTHON)")
        return 0
    oracle = Oracle(py, args.version)
    v = args.version
    seeds = [args.case] if args.case is not None else range(args.seed, args.seed + args.n)
    equal = 0
    kinds: Counter = Counter()
    missing_keys: Counter = Counter()
    differing: Counter = Counter()  # summary keys that differ, over failing traces
    row_fail = 0
    failed = []
    for s in seeds:
        case = gen_case(s)
        theirs = oracle.run(case)
        runs = [run_ours(case, version=v)] + ([run_ours(case, record=True, version=v)] if args.record else [])
        diffs: list[str] = []
        for ours in runs:
            d, miss = compare(theirs, ours)
            diffs += d
            missing_keys.update(miss)
        kinds["refused" if "error" in theirs else case["fmt"]] += 1
        if diffs:
            failed.append(s)
            differing.update({x.split()[1].rstrip(":") for x in diffs if x.startswith("summary ")})
            row_fail += any(not x.startswith("summary ") for x in diffs)
            if args.v or args.case is not None:
                print(f"seed {s} ({case['fmt']}, {case['workers']} workers, engine {case['engine']}, tbs {case['tbs']}, "
                      f"arrival x{case['arrival_speedup']}): {len(diffs)} differences")
                for line in diffs[:12]:
                    print("   ", line)
            if args.minimise:
                m = minimise(oracle, case, v)
                print(f"minimised seed {s}: workers {m['workers']} tbs {m['tbs']} engine {json.dumps(m['engine'])} "
                      f"arrival x{m['arrival_speedup']}")
                print(m["text"], end="")
                for line in compare(oracle.run(m), run_ours(m, version=v))[0][:10]:
                    print("   ", line)
        else:
            equal += 1
        if args.case is not None:
            print(case["text"])
            print(json.dumps(theirs.get("summary", theirs), indent=0)[:3000])
    oracle.close()
    n = len(seeds)
    print(f"{equal}/{n} traces equal on every compared key and row ({dict(kinds)})")
    if missing_keys:
        print(f"summary keys trace-pipe does not write yet: {sorted(missing_keys)}")
    if failed:
        print(f"{row_fail} failing traces differ in per-request rows or refusals; summary keys that differ: "
              f"{dict(differing.most_common())}")
        print(f"failing seeds: {failed[:50]}{' ...' if len(failed) > 50 else ''}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
