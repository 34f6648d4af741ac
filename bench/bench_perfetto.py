"""Perfetto writer: bytes per request and write throughput, protobuf against Chrome JSON of the
same layout, and against a pb2-object-per-packet encoder (perfetto.md §3 method C) writing the
same packets, all measured in this process.

Inputs: a synthetic Dynamo trace (all four generations, tools, sub-agents, concurrent requests,
inferred tools, workers; `trace_pipe.proto.synthetic`) of about --requests requests, and the 29
WEKA fixtures when present.

    python bench/bench_perfetto.py [--requests 20000] [--memory]

Targets (issue 3): protobuf <= 1/3 of the JSON bytes; >= 300k packets/s written.
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

from trace_pipe.pipeline import agentic, readers
from trace_pipe.proto import recorded_timeline, synthetic, write_timelines, write_timelines_json
from trace_pipe.proto.layout import Block, Layout, Sample
from trace_pipe.proto.packets import frame

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEKA = SHARED / "fixtures" / "kv_cache_tester_traces"


def _best(fn, reps: int = 3):
    best = None
    out = None
    for _ in range(reps):
        gc.collect()
        t = time.process_time()
        out = fn()
        dt = time.process_time() - t
        best = dt if best is None or dt < best else best
    return best, out


def _pb2_baseline(timeline, path: str) -> int:
    """Method C: one pb2 TracePacket per event, SerializeToString, hand framing (no interning)."""
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
            ev(b.end, b.track, 2, term=b.end_flows_in)

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


def _method_d(n: int = 200_000) -> float:
    """perfetto.md §3 method D (pure-Python hand-encoded BEGIN-with-name + END), packets/s: a
    machine-speed yardstick measured here, since the reference measured 0.96M/s on an idle box."""
    def vi(x: int) -> bytes:
        out = bytearray()
        while True:
            b = x & 0x7F
            x >>= 7
            out.append(b | 0x80 if x else b)
            if not x:
                return bytes(out)

    sink = bytearray()
    t = time.process_time()
    for i in range(n // 2):
        ts = 10 ** 15 + i * 10
        te = b"\x48\x01\x58\x05\xba\x01\x05slice"
        body = b"\x40" + vi(ts) + b"\x50\x01\x5a" + vi(len(te)) + te
        sink += b"\x0a" + vi(len(body)) + body
        te = b"\x48\x02\x58\x05"
        body = b"\x40" + vi(ts + 5) + b"\x50\x01\x5a" + vi(len(te)) + te
        sink += b"\x0a" + vi(len(body)) + body
    return n / (time.process_time() - t)


REFERENCE_D = 0.96e6  # method D on the machine perfetto.md §3 was measured on


def measure(label: str, trace, edges, tmp: str, memory: bool) -> dict:
    n_req = len(trace.requests)
    t_tl, tl = _best(lambda: recorded_timeline(trace, edges))
    pf = os.path.join(tmp, "out.pftrace")
    js = os.path.join(tmp, "out.json")
    gz = os.path.join(tmp, "out.pftrace.gz")
    t_pf, spf = _best(lambda: write_timelines([tl], pf))
    t_js, sjs = _best(lambda: write_timelines_json([tl], js))
    t_gz, sgz = _best(lambda: write_timelines([tl], gz), reps=1)
    t_c, n_c = _best(lambda: _pb2_baseline(tl, os.path.join(tmp, "c.pftrace")), reps=1)
    d_pps = max(_method_d() for _ in range(3))
    row = {
        "label": label, "requests": n_req, "packets": spf.packets,
        "pf_bytes_per_req": spf.bytes / n_req, "json_bytes_per_req": sjs.bytes / n_req,
        "gz_bytes_per_req": sgz.bytes / n_req, "ratio": spf.bytes / sjs.bytes,
        "pf_s": t_pf, "json_s": t_js, "gz_s": t_gz, "timeline_s": t_tl,
        "pf_pps": spf.packets / t_pf, "pb2_pps": n_c / t_c, "json_eps": sjs.packets / t_js, "d_pps": d_pps,
    }
    if memory:
        tracemalloc.start()
        write_timelines([tl], pf)
        row["pf_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000, help="approximate synthetic requests (default 20000)")
    ap.add_argument("--memory", action="store_true", help="also report the writer's peak traced memory")
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
        trace = readers.read_trace(paths)
        edges = agentic.derive(trace).edges
        rows.append(measure("synthetic Dynamo (G1-G3b)", trace, edges, tmp, args.memory))
        weka = sorted(WEKA.glob("*.json"))
        if weka:
            trace = readers.read_trace([str(p) for p in weka])
            edges = agentic.derive(trace).edges
            rows.append(measure(f"WEKA fixtures ({len(weka)} files)", trace, edges, tmp, args.memory))
        else:
            print(f"(WEKA fixtures not found under {WEKA}: skipped)", file=sys.stderr)
    for r in rows:
        print(f"\n== {r['label']}: {r['requests']:,} requests, {r['packets']:,} packets")
        print(f"bytes/request   protobuf {r['pf_bytes_per_req']:.0f}   JSON {r['json_bytes_per_req']:.0f}   "
              f"protobuf.gz {r['gz_bytes_per_req']:.0f}")
        print(f"size ratio      protobuf / JSON = {r['ratio']:.3f}   (target <= 0.333: "
              f"{'met' if r['ratio'] <= 1 / 3 else 'NOT met'})")
        print(f"write time      protobuf {r['pf_s']:.3f} s   JSON {r['json_s']:.3f} s   protobuf.gz {r['gz_s']:.3f} s   "
              f"(+ timeline build {r['timeline_s']:.3f} s)")
        print(f"throughput      protobuf {r['pf_pps'] / 1e3:.0f}k packets/s   (target >= 300k: "
              f"{'met' if r['pf_pps'] >= 3e5 else 'NOT met'})   pb2-per-packet baseline {r['pb2_pps'] / 1e3:.0f}k "
              f"packets/s (x{r['pf_pps'] / r['pb2_pps']:.2f})   JSON {r['json_eps'] / 1e3:.0f}k events/s")
        scaled = r["pf_pps"] / r["d_pps"] * REFERENCE_D
        print(f"machine speed   method-D yardstick {r['d_pps'] / 1e3:.0f}k packets/s here (reference box 960k): "
              f"writer = {r['pf_pps'] / r['d_pps']:.2f} x method D -> ~{scaled / 1e3:.0f}k packets/s on the reference box")
        if "pf_peak_mb" in r:
            print(f"memory          protobuf writer peak traced {r['pf_peak_mb']:.1f} MB")


if __name__ == "__main__":
    main()
