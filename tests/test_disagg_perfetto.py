"""`trace-pipe replay --perfetto` of a disaggregated replay: under `Simulated > workers`, the
prefill and decode pools each in their own group; every request has a `prefill` slice on its
prefill worker and a `decode` slice on its decode worker, joined by a `kv transfer` flow from the
first to the second, and a `kv transfer` stage on its own track; `trace-pipe check` passes."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import pytest

from trace_pipe.cli.replay_cmd import run
from trace_pipe.proto.check import check_file
from trace_pipe.proto.decode import decode_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpf")
    out = tmp / "d.pftrace"
    rep, res = run([str(FIXTURES / "trace_0277.json")], trace_format="weka", num_prefill_workers=2,
                   num_decode_workers=2, extra_engine_args='{"block_size": 64}', perfetto=str(out),
                   report_json=str(tmp / "r.json"), out=io.StringIO(), err=io.StringIO(), progress=False)
    return res, decode_file(str(out)), out


def test_pools_in_their_own_groups(drawn):
    _res, d, _out = drawn
    paths = {tuple(d.track_path(u)) for u in d.tracks}
    for pool in ("prefill", "decode"):
        for k in (0, 1):
            assert ("Simulated", "workers", f"{pool} workers", f"{pool} worker {k}") in paths
            assert ("Simulated", "workers", f"{pool} workers", f"{pool} worker {k}", "engine passes") in paths
    assert not any(p[:2] == ("Simulated", "workers") and len(p) > 2 and p[2].startswith("worker ") for p in paths)


def test_each_request_on_both_pools_with_a_transfer_flow(drawn):
    res, d, _out = drawn
    on = defaultdict(dict)
    for s in d.slices:
        path = d.track_path(s.track)
        if path[0] == "Simulated" and len(path) > 3 and path[1] == "workers" and "request_id" in s.args:
            on[s.args["request_id"]][s.name] = (path[3], s)
    assert len(on) == len(res.requests) == 53
    flows = {(a.args.get("request_id"), a.name, b.name) for a, b in d.flows()
             if d.track_path(a.track)[1:2] == ["workers"]}
    for r in res.requests:
        (pw, ps), (dw, ds) = on[r.request_id]["prefill"], on[r.request_id]["decode"]
        assert pw == f"prefill worker {r.handoff.prefill_worker}" and dw == f"decode worker {r.worker}"
        # the prefill slice ends when the prompt's KV is held, the decode slice starts at its admission
        assert ps.dur > 0 and ds.ts > ps.ts + ps.dur - 1
        assert (r.request_id, "prefill", "decode") in flows
        assert ds.args["request_id"] == r.request_id
    stages = defaultdict(set)
    for s in d.slices:
        if d.track_path(s.track)[0] == "Simulated" and d.track_path(s.track)[1] != "workers":
            stages[s.args.get("request_id")].add(s.name)
    waited = [r for r in res.requests if r.handoff.decode_admit_ms > r.handoff.source_held_ms]
    assert waited and all("kv transfer" in stages[r.request_id] for r in waited)


def test_check_passes(drawn):
    _res, _d, out = drawn
    rep = check_file(str(out))
    assert rep.ok, rep.problems[:5]
    # the simulated run draws the recorded run's dependency edges and one handoff per request
    recorded, simulated = (int(_d.attributes[f"trace_pipe.{n}.flows"]) for n in ("Recorded", "Simulated"))
    assert simulated == recorded + 53
    assert rep.flows == recorded + simulated
