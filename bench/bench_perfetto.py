"""Perfetto writer: bytes per request and write throughput, protobuf against Chrome JSON of the
same layout, with a reference hand-encoding loop measured in the same process.

Inputs: a synthetic Dynamo trace (all four generations, tools, sub-agents, concurrent requests,
inferred tools, workers; `trace_pipe.proto.synthetic`) of about --requests requests, and the 29
WEKA fixtures when present.

    python bench/bench_perfetto.py [--requests 20000] [--baselines] [--memory] [--split]

Targets (issue 3): protobuf <= 1/3 of the JSON bytes; >= 300k packets/s written.

How throughput is measured: CPU time (`time.process_time`, so other work on a shared machine
counts less), best of 5, with the cyclic GC paused as `trace-pipe convert` runs. "writer" is
`write_timelines` from a built Timeline: layout, encoding, writing the file. "reference" is
perfetto.md §3 method D, the fastest pure-Python encoding of the simplest packets (BEGIN with a
name, END), run between the writer's runs: it measured 0.96M packets/s on the machine perfetto.md
used, so 300k packets/s there means writer / reference >= 300 / 960 = 0.3125 anywhere (this
ratio is the number to compare across machines; the absolute packets/s are printed too). Method
C (a pb2 object per packet, 0.52M packets/s there) is a second calibration: writer / C >= 300 /
520. This machine ran method D at 0.43M and at 0.93M packets/s minutes apart: compare the ratios.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from trace_pipe.pipeline import agentic_v1, readers
from trace_pipe.pipeline.gcpause import gc_paused
from trace_pipe.proto import recorded_timeline, synthetic, write_timelines, write_timelines_json
from trace_pipe.proto.layout import Block, Layout, Sample
from trace_pipe.proto.packets import _vi, frame

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEKA = SHARED / "fixtures" / "kv_cache_tester_traces"
REFERENCE_PPS = 0.96e6  # method D on the machine perfetto.md §3 was measured on
REFERENCE_C_PPS = 0.52e6  # method C there
TARGET_PPS = 300e3
TARGET_RATIO = TARGET_PPS / REFERENCE_PPS


def _cpu(fn):
    gc.collect()
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def _best(fn, reps: int = 3):
    best = out = None
    for _ in range(reps):
        dt, out = _cpu(fn)
        best = dt if best is None or dt < best else best
    return best, out


def reference_loop(n: int = 200_000) -> float:
    """perfetto.md §3 method D (pure-Python hand-encoded BEGIN-with-name + END, prebuilt field
    prefixes, table varints as the writer uses), packets/s."""
    begin = b"\x50\x01\x5a" + _vi(len(b"\x48\x01\x58\x05\xba\x01\x05slice")) + b"\x48\x01\x58\x05\xba\x01\x05slice"
    end = b"\x50\x01\x5a\x04\x48\x02\x58\x05"
    sink = bytearray()
    t = time.process_time()
    for i in range(n // 2):
        ts = 10 ** 15 + i * 10
        sink += frame(b"\x40" + _vi(ts) + begin)
        sink += frame(b"\x40" + _vi(ts + 5) + end)
    return n / (time.process_time() - t)


def reference_loop_c(n: int = 100_000) -> float:
    """perfetto.md §3 method C (a pb2 TracePacket per event, SerializeToString, hand framing) on
    the same packets as `reference_loop`, packets/s: a second calibration, by the protobuf runtime
    rather than by pure Python."""
    sink = bytearray()
    t = time.process_time()
    for i in range(n // 2):
        ts = 10 ** 15 + i * 10
        p = pb.TracePacket()
        p.timestamp = ts
        p.trusted_packet_sequence_id = 1
        p.track_event.type = 1
        p.track_event.track_uuid = 5
        p.track_event.name = "slice"
        sink += frame(p.SerializeToString())
        p = pb.TracePacket()
        p.timestamp = ts + 5
        p.trusted_packet_sequence_id = 1
        p.track_event.type = 2
        p.track_event.track_uuid = 5
        sink += frame(p.SerializeToString())
    return n / (time.process_time() - t)


def _pb2_baseline(timeline, path: str) -> int:
    """perfetto.md §3 method C: one pb2 TracePacket per event, SerializeToString, hand framing
    (no interning), the same packets."""
    layout = Layout([timeline])
    n = 0
    with open(path, "wb", buffering=1 << 20) as f:
        def put(pkt) -> None:
            nonlocal n
            f.write(frame(pkt.SerializeToString()))
            n += 1

        def ev(ts, track, typ, name=None, cat=None, args=(), flows=(), term=(), corr=0):
            pkt = pb.TracePacket()
            pkt.timestamp = ts
            pkt.trusted_packet_sequence_id = 1
            te = pkt.track_event
            te.type = typ
            te.track_uuid = track
            if name:
                te.name = name
                te.categories.append(cat)
            for k, v in args:
                if v is None or isinstance(v, (dict, list, tuple)):
                    continue
                a = te.debug_annotations.add()
                a.name = k
                if isinstance(v, bool):
                    a.bool_value = v
                elif isinstance(v, int):
                    a.int_value = v
                elif isinstance(v, float):
                    a.double_value = v
                else:
                    a.string_value = str(v)
            te.flow_ids.extend(flows)
            te.terminating_flow_ids.extend(term)
            if corr:
                te.correlation_id = corr
            put(pkt)

        def block(b):
            ev(b.start, b.track, 1, b.name, b.cat, b.args, b.flows_out, b.flows_in, b.corr)
            for c in b.children:
                if type(c) is Block:
                    block(c)
                else:
                    ev(c.ts, c.track, 3, c.name, c.cat, c.args)
            ev(b.end, b.track, 2)

        for e in layout.events():
            if type(e) is Block:
                block(e)
            elif type(e) is Sample:
                pkt = pb.TracePacket()
                pkt.timestamp = e.ts
                pkt.trusted_packet_sequence_id = 1
                pkt.track_event.type = 4
                pkt.track_event.track_uuid = e.track
                pkt.track_event.counter_value = e.value
                put(pkt)
            else:
                ev(e.ts, e.track, 3, e.name, e.cat, e.args)
    return n


def split_phases(tl, reps: int = 3) -> dict:
    """CPU seconds of the writer's phases, best of `reps`: planning the layout (tracks, lanes,
    write order, flows), streaming its events (layout objects), and the rest of `write_timelines`
    (encoding and the file) as the difference."""
    plan, _ = _best(lambda: Layout([tl]), reps)
    layout = Layout([tl])
    stream, _ = _best(lambda: sum(1 for _ in layout.stream()), reps)
    return {"plan_s": plan, "stream_s": stream}


def measure(label: str, trace, edges, tmp: str, *, baselines: bool = False, memory: bool = False,
            split: bool = False, reps: int = 5) -> dict:
    n_req = len(trace.requests)
    pf = os.path.join(tmp, "out.pftrace")
    js = os.path.join(tmp, "out.json")
    gz = os.path.join(tmp, "out.pftrace.gz")
    row: dict = {"label": label, "requests": n_req}
    with gc_paused():  # as `trace-pipe convert` runs
        t_tl, tl = _best(lambda: recorded_timeline(trace, edges), 3)
        t_pf = ref = ref_c = None
        for _ in range(reps):  # writer and reference loops alternate, so all see the same machine load
            r = reference_loop()
            ref = r if ref is None or r > ref else ref
            r = reference_loop_c()
            ref_c = r if ref_c is None or r > ref_c else ref_c
            dt, spf = _cpu(lambda: write_timelines([tl], pf))
            t_pf = dt if t_pf is None or dt < t_pf else t_pf
        t_js, sjs = _best(lambda: write_timelines_json([tl], js), 2)
        t_gz, sgz = _cpu(lambda: write_timelines([tl], gz))
        row.update(packets=spf.packets, pf_bytes_per_req=spf.bytes / n_req, json_bytes_per_req=sjs.bytes / n_req,
                   gz_bytes_per_req=sgz.bytes / n_req, ratio=spf.bytes / sjs.bytes, pf_s=t_pf, json_s=t_js,
                   gz_s=t_gz, timeline_s=t_tl, pf_pps=spf.packets / t_pf, ref_pps=ref, ref_c_pps=ref_c,
                   e2e_pps=spf.packets / (t_pf + t_tl), json_eps=sjs.packets / t_js)
        if split:
            row.update(split_phases(tl))
        if baselines:
            t_c, n_c = _cpu(lambda: _pb2_baseline(tl, os.path.join(tmp, "c.pftrace")))
            row["pb2_pps"] = n_c / t_c
        if memory:
            tracemalloc.start()
            write_timelines([tl], pf)
            row["pf_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
    return row


def report(r: dict) -> None:
    k = 1e3
    print(f"\n== {r['label']}: {r['requests']:,} requests, {r['packets']:,} packets")
    print(f"bytes/request    protobuf {r['pf_bytes_per_req']:.0f}   Chrome JSON {r['json_bytes_per_req']:.0f}   "
          f"protobuf / JSON = {r['ratio']:.3f}   (target <= 0.333: {'met' if r['ratio'] <= 1 / 3 else 'NOT met'})"
          f"   protobuf.gz {r['gz_bytes_per_req']:.0f}")
    print(f"writer           {r['pf_pps'] / k:.0f}k packets/s   ({r['pf_s']:.3f} s CPU: layout, encoding, file)")
    print(f"reference loop   {r['ref_pps'] / k:.0f}k packets/s   (perfetto.md §3 method D, this process)")
    ratio = r["pf_pps"] / r["ref_pps"]
    print(f"writer/reference {ratio:.2f}   (target >= {TARGET_RATIO:.4f} = 300k / 960k: "
          f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}; ~{ratio * REFERENCE_PPS / k:.0f}k packets/s on "
          f"perfetto.md's machine; absolute here: {'met' if r['pf_pps'] >= TARGET_PPS else 'not met'})")
    ratio_c = r["pf_pps"] / r["ref_c_pps"]
    print(f"reference C      {r['ref_c_pps'] / k:.0f}k packets/s   (perfetto.md §3 method C, this process): writer/C "
          f"{ratio_c:.2f}, target >= {TARGET_PPS / REFERENCE_C_PPS:.3f} = 300k / 520k: "
          f"{'met' if ratio_c >= TARGET_PPS / REFERENCE_C_PPS else 'NOT met'}; ~{ratio_c * REFERENCE_C_PPS / k:.0f}k "
          f"packets/s on perfetto.md's machine")
    print(f"with timeline    {r['e2e_pps'] / k:.0f}k packets/s   (+ building the timeline from the trace: "
          f"{r['timeline_s']:.3f} s; ratio {r['e2e_pps'] / r['ref_pps']:.2f})")
    line = (f"other writers    Chrome JSON {r['json_eps'] / k:.0f}k events/s ({r['json_s']:.3f} s)   "
            f"protobuf.gz {r['gz_s']:.3f} s")
    if "pb2_pps" in r:
        line += f"   pb2 object per packet {r['pb2_pps'] / k:.0f}k packets/s (writer x{r['pf_pps'] / r['pb2_pps']:.1f})"
    print(line)
    if "plan_s" in r:
        enc = r["pf_s"] - r["plan_s"] - r["stream_s"]
        print(f"writer phases    layout plan {r['plan_s']:.3f} s, layout stream {r['stream_s']:.3f} s, "
              f"encoding + file {enc:.3f} s (the rest of the writer's {r['pf_s']:.3f} s)")
    if "pf_peak_mb" in r:
        print(f"memory           protobuf writer peak traced {r['pf_peak_mb']:.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000, help="approximate synthetic requests (default 20000)")
    ap.add_argument("--baselines", action="store_true", help="also time a pb2-object-per-packet writer (slow)")
    ap.add_argument("--memory", action="store_true", help="also report the writer's peak traced memory")
    ap.add_argument("--split", action="store_true", help="also time the writer's phases (layout plan, stream, encoding)")
    args = ap.parse_args()
    per_run = 4 * (20 + 1 + 4 * 10)  # 4 generations x (main chain + overlap + 4 sub-agents of 10)
    runs = max(1, round(args.requests / per_run))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for gen, recs in synthetic.dynamo_records(runs=runs, chain_len=20, subagents=4).items():
            p = os.path.join(tmp, f"{gen}.jsonl")
            synthetic.write_jsonl(recs, p)
            paths.append(p)
        with gc_paused():
            trace = readers.read_trace(paths)
            edges = agentic_v1.derive(trace).edges
        gc.collect()
        gc.freeze()  # the input stays alive: keep it out of the collections between runs
        rows.append(measure("synthetic Dynamo (G1-G3b)", trace, edges, tmp, baselines=args.baselines,
                            memory=args.memory, split=args.split))
        weka = sorted(WEKA.glob("*.json"))
        if weka:
            with gc_paused():
                trace = readers.read_trace([str(p) for p in weka])
                edges = agentic_v1.derive(trace).edges
            rows.append(measure(f"WEKA fixtures ({len(weka)} files)", trace, edges, tmp, baselines=args.baselines,
                                memory=args.memory, split=args.split))
        else:
            print(f"(WEKA fixtures not found under {WEKA}: skipped)", file=sys.stderr)
    for r in rows:
        report(r)


if __name__ == "__main__":
    main()
