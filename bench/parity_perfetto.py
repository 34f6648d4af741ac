"""Byte parity of the Perfetto / Chrome JSON writers against another revision's `proto/` package:
the same parsed inputs written by both, every output compared byte for byte. For speed work on
the writer, whose output must not change.

    python bench/parity_perfetto.py [--rev HEAD] [--runs 30] [--tiny-caches]

The reference package is `git show <rev>:proto/*.py` extracted into a temporary directory and
imported under another name (nothing in the repository changes). Inputs: a synthetic Dynamo
trace (`--runs` x 244 requests, all generations), each file of fixtures/, their union, four WEKA
fixtures and all 29 (under ../shared, when present). Variants: nested stages, separate stages,
no stages or markers, names not interned, gzip, and Chrome JSON for the interned ones.
`--tiny-caches` shrinks both encoders' value caches (3, 50, 1000 entries) so that the FIFO and
clear paths run all the time (protobuf only). Exit status 1 when any output differs.
"""

from __future__ import annotations

import argparse
import filecmp
import glob
import importlib
import inspect
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from trace_pipe.pipeline import agentic_v1, readers
from trace_pipe.proto import recorded_timeline, synthetic, write_timelines, write_timelines_json

ROOT = Path(__file__).resolve().parents[1]
WEKA = ROOT.parent / "shared" / "fixtures" / "kv_cache_tester_traces"
REF = "_proto_ref"  # import name of the reference package


def reference_package(rev: str, into: str):
    """`proto/` at `rev`, importable as `_proto_ref` (its relative imports stay inside it)."""
    pkg = Path(into) / REF
    pkg.mkdir()
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", rev, "proto/"], check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        if name.endswith(".py"):
            src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{name}"], check=True, capture_output=True).stdout
            (pkg / Path(name).name).write_bytes(src)
    sys.path.insert(0, into)
    return (importlib.import_module(f"{REF}.recorded"), importlib.import_module(f"{REF}.writer"),
            importlib.import_module(f"{REF}.chrome_json"))


def inputs(runs: int, tmp: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    paths = []
    for gen, rows in synthetic.dynamo_records(runs=runs, chain_len=20, subagents=4).items():
        p = os.path.join(tmp, f"in_{gen}.jsonl")
        synthetic.write_jsonl(rows, p)
        paths.append(p)
    out["synthetic"] = paths
    fixtures = sorted(glob.glob(str(ROOT / "fixtures" / "*.json*")))
    for f in fixtures:
        out[os.path.basename(f)] = [f]
    out["fixtures (all)"] = fixtures
    weka = sorted(glob.glob(str(WEKA / "*.json")))
    for f in weka[:4]:
        out[os.path.basename(f)] = [f]
    if weka:
        out["WEKA (all)"] = weka
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default="HEAD", help="the revision whose proto/ is the reference (default HEAD)")
    ap.add_argument("--runs", type=int, default=30, help="synthetic runs of 244 requests (default 30)")
    ap.add_argument("--tiny-caches", action="store_true", help="tiny encoder caches (protobuf, default variant)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    ref_recorded, ref_writer, ref_json = reference_package(args.rev, tmp)
    if args.tiny_caches and "value_cache" not in inspect.signature(ref_writer.write_timelines).parameters:
        print(f"error: --tiny-caches: write_timelines at {args.rev} takes no value_cache (older than this bench)")
        return 2
    n = bad = 0

    def same(new: str, old: str, label: str) -> None:
        nonlocal n, bad
        n += 1
        if not filecmp.cmp(new, old, shallow=False):
            bad += 1
            print(f"DIFFERENT: {label}")

    a, b = os.path.join(tmp, "new.out"), os.path.join(tmp, "ref.out")
    cache_sizes = (3, 50, 1000) if args.tiny_caches else (None,)
    for name, paths in inputs(args.runs, tmp).items():
        trace = readers.read_trace(paths)
        try:
            edges = agentic_v1.derive(trace).edges
        except Exception:  # noqa: BLE001 (a mix the agentic lowering refuses: drawn without flows)
            edges = []
        for size in cache_sizes:
            if size is not None:
                variants = [(f" (caches of {size})", {}, {"value_cache": size})]
            else:
                variants = [("", {}, {}), (", separate stages", {"stages": "separate"}, {}),
                            (", no stages or markers", {"stages": False, "markers": False}, {}),
                            (", names inline", {}, {"intern": False}), (", gzip", {}, {"gz": True})]
            for label, tk, wk in variants:
                write_timelines([recorded_timeline(trace, edges, **tk)], a, **wk)
                ref_writer.write_timelines([ref_recorded.recorded_timeline(trace, edges, **tk)], b, **wk)
                same(a, b, name + label)
                if size is None and not wk:
                    write_timelines_json([recorded_timeline(trace, edges, **tk)], a)
                    ref_json.write_timelines_json([ref_recorded.recorded_timeline(trace, edges, **tk)], b)
                    same(a, b, name + label + ", Chrome JSON")
    print(f"parity with {args.rev}: {n} outputs compared, {bad} different")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
