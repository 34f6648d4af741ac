"""Perfetto's `trace_processor_shell` in the tests: where it is, and the load check every trace the
suite writes goes through (no package registry ships the binary).

Where: `TRACE_PIPE_TP_BIN` (the variable `trace-pipe check --tp-bin` reads) when set; set but empty
turns the checks off. Unset: the binary shipped beside the repository,
`../shared/tools/trace_processor_shell`. Tests that need it skip when neither is an executable,
unless `TRACE_PIPE_TP_REQUIRED=1` (CI sets it when ../shared is there): then a missing binary
fails the session instead of skipping anything.

The load check (`verify_loaded`): one `trace_processor_shell query` run per file (about 60 ms;
the `perfetto` package's TraceProcessor starts an HTTP server and takes ~1 s), one SQL statement
that returns everything as one JSON value, compared with what the file holds (our own decoder)
and what the writer declared (the `trace_pipe.<root>.*` trace attributes, and when the test has
them, the writer's `WriteStats` and the DAG's edges):
- no error / data-loss stat, nor an info stat that means dropped events (proto.tp_check.TP_FAIL_STATS);
- the counts of slices (instants included), flows, counter samples and tracks;
- every flow joins the request slices of one dependency edge (`flow.slice_out` / `slice_in`),
  per root, as many as the writer declared;
- every request slice's args in the `args` table (`debug.*`, or `args.*` in Chrome JSON), values
  equal;
- the roots of a replay with the same track tree (workers aside) and the same request ids.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import stat
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "trace_processor_shell"
REQUIRED = os.environ.get("TRACE_PIPE_TP_REQUIRED") == "1"


def tp_bin() -> str | None:
    given = os.environ.get("TRACE_PIPE_TP_BIN")
    path = Path(given) if given else (None if given == "" else SHIPPED)
    if path is None or not path.is_file() or not os.access(path, os.X_OK):
        return None
    return str(path)


TP_BIN = tp_bin()
if REQUIRED and TP_BIN is None:
    raise RuntimeError(f"TRACE_PIPE_TP_REQUIRED=1 but no trace_processor_shell: set TRACE_PIPE_TP_BIN or put one at "
                       f"{SHIPPED}")
needs_tp = pytest.mark.skipif(TP_BIN is None, reason="no trace_processor_shell: set TRACE_PIPE_TP_BIN or put one at "
                                                      f"{SHIPPED}")

CHROME_PREFIX = b'{"displayTimeUnit":"ms","traceEvents":['  # what proto/chrome_json.py writes first
REQUEST_CAT = "dynamo.llm"


# -- running the binary ------------------------------------------------------------------------

def tp_start(path: str | os.PathLike, sql: str) -> subprocess.Popen:
    """Start one `trace_processor_shell query` run (the caller reads the file meanwhile)."""
    return subprocess.Popen([TP_BIN, "query", str(path), sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def tp_finish(proc: subprocess.Popen, path) -> object:
    """The single JSON cell of the run's one statement, parsed. The shell prints CSV with each
    cell wrapped in quotes and nothing inside escaped, so the cell is the text between the first
    and the last quote of the second line."""
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"trace processor failed on {path}: {' '.join(err.split())[-600:]}")
    lines = out.splitlines()
    assert len(lines) == 2 and lines[1].startswith('"') and lines[1].endswith('"'), out[:500]
    return json.loads(lines[1][1:-1])


def tp_json(path: str | os.PathLike, sql: str):
    """Run one SQL statement whose single cell is JSON text; return it parsed."""
    return tp_finish(tp_start(path, sql), path)


_FAIL_STATS = None


def _fail_stats_sql() -> str:
    global _FAIL_STATS
    if _FAIL_STATS is None:
        from trace_pipe.proto.tp_check import TP_FAIL_STATS

        _FAIL_STATS = ", ".join(f"'{s}'" for s in sorted(TP_FAIL_STATS))
    return _FAIL_STATS


def _load_sql(prefix: str) -> str:
    """Everything the check needs in one statement. `prefix`: where a request's args live
    ('debug.' for TrackEvent debug annotations, 'args.' for Chrome JSON)."""
    rid = f"EXTRACT_ARG({{t}}.arg_set_id, '{prefix}request_id')"
    return f"""
SELECT json_object(
  'stats', (SELECT json_group_array(json_array(name, idx, severity, value)) FROM stats
            WHERE value > 0 AND (severity IN ('error', 'data_loss') OR name IN ({_fail_stats_sql()}))),
  'slices', (SELECT count(*) FROM slice),
  'unfinished', (SELECT count(*) FROM slice WHERE dur < 0),
  'unnamed', (SELECT count(*) FROM slice WHERE name IS NULL),
  'counters', (SELECT count(*) FROM counter),
  'tracks', (SELECT json_group_array(json_array(id, name, parent_id, type)) FROM track),
  'procs', (SELECT json_group_array(json_array(tt.id, p.name)) FROM thread_track tt
            JOIN thread USING (utid) JOIN process p USING (upid)),
  'flows', (SELECT json_group_array(json_array(so.track_id, {rid.format(t='so')}, si.track_id, {rid.format(t='si')}))
            FROM flow f JOIN slice so ON so.id = f.slice_out JOIN slice si ON si.id = f.slice_in),
  'requests', (SELECT json_group_array(json_array(s.track_id, {rid.format(t='s')},
                 (SELECT json_group_array(json_array(a.key, a.value_type, a.int_value, a.string_value, a.real_value))
                  FROM args a WHERE a.arg_set_id = s.arg_set_id AND a.key GLOB '{prefix}*')))
               FROM slice s WHERE s.category = '{REQUEST_CAT}')
) AS j"""


# -- what the file holds -------------------------------------------------------------------------

def sniff(path: str | os.PathLike) -> str | None:
    """'perfetto' for a trace-pipe protobuf trace, 'chrome-json' for trace-pipe Chrome JSON (plain
    or gzipped, whatever the name), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                head = f.read(4096)
    except (OSError, EOFError):
        return None
    if head.startswith(CHROME_PREFIX):
        return "chrome-json"
    if head[:1] == b"\x0a" and b"trace_pipe.writer" in head:
        return "perfetto"
    return None


def _flatten(prefix: str, v, out: dict, json_nulls: bool = False) -> None:
    """A debug-annotation value as trace processor's `args` rows: nested keys dotted, list items
    indexed; None is no row. `json_nulls`: Chrome JSON, whose importer skips a null list item and
    numbers the next one in its place ([null, {"a": 1}] is `x[0].a`)."""
    if isinstance(v, dict):
        for k, x in v.items():
            _flatten(f"{prefix}.{k}", x, out, json_nulls)
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(x for x in v if x is not None) if json_nulls else enumerate(v):
            _flatten(f"{prefix}[{i}]", x, out, json_nulls)
    elif v is not None:
        out[prefix] = v


def _same_value(want, row) -> bool:
    _, typ, i, s, r = row
    if isinstance(want, bool):
        return i == int(want)
    if isinstance(want, int):
        return i == want or (typ == "uint" and i is not None and i % (1 << 64) == want % (1 << 64))
    if isinstance(want, float):
        got = r if r is not None else i
        return got is not None and (got == want or math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-300))
    return s == want


def _check_args(where: str, want: dict, rows: list, prefix: str, problems: list) -> None:
    flat: dict = {}
    for k, v in want.items():
        _flatten(prefix + k, v, flat, prefix == "args.")
    got = {row[0]: row for row in rows}
    for k, v in flat.items():
        row = got.get(k)
        if row is None:
            problems.append(f"{where}: arg {k} = {v!r} is not in the args table")
            return
        if not _same_value(v, row):
            problems.append(f"{where}: arg {k} = {v!r}, trace processor has {row[1:]}")
            return


class _Tree:
    """trace processor's track table: root and path of each track."""

    def __init__(self, rows: list) -> None:
        self.name = {r[0]: r[1] for r in rows}
        self.parent = {r[0]: r[2] for r in rows}
        self.type = {r[0]: r[3] for r in rows}

    def path(self, tid: int) -> tuple:
        out = []
        while tid is not None:
            out.append(self.name[tid])
            tid = self.parent[tid]
        return tuple(reversed(out))

    def root(self, tid: int) -> str:
        return self.path(tid)[0]

    def shape(self, root: str) -> frozenset:
        """Track paths under a root, its `workers` group aside (the two roots name their workers
        differently) and same-named lanes as one."""
        return frozenset(p[1:] for t in self.name if len(p := self.path(t)) > 1 and p[0] == root and p[1] != "workers")


def verify_loaded(path: str | os.PathLike, *, edges=None, stats=None) -> dict:
    """Load a trace-pipe trace in trace processor and assert everything in the module doc.
    `edges`: the DAG's dependency edges (objects with `src` / `dst`, or pairs), the same for
    every root; `stats`: the writer's `WriteStats`. Returns what trace processor counted."""
    kind = sniff(path)
    assert kind is not None, f"{path}: not a trace written by trace-pipe"
    problems: list[str] = []
    # trace processor loads the file while we read it ourselves
    proc = tp_start(path, _load_sql("debug." if kind == "perfetto" else "args."))
    try:
        mine = _scan_pftrace(path) if kind == "perfetto" else _read_chrome_json(path)
    finally:
        got = tp_finish(proc, path)
    want = (_from_pftrace if kind == "perfetto" else _from_chrome_json)(mine, got)
    for name, idx, severity, value in got["stats"]:
        problems.append(f"stat {name}[{idx}] = {value} ({severity})")
    for what in ("unfinished", "unnamed"):
        if got[what]:
            problems.append(f"{got[what]} {what} slice(s)")
    for what in ("slices", "counters", "tracks"):
        n = len(got[what]) if isinstance(got[what], list) else got[what]
        if n != want[what]:
            problems.append(f"{n} {what} in trace processor, the file has {want[what]}")
    if stats is not None:
        meant = {"slices": stats.slices + stats.instants, "counters": stats.counter_samples,
                 "flows": stats.flows}
        if kind == "perfetto":
            meant["tracks"] = stats.tracks
        for what, n in meant.items():
            have = len(got[what]) if isinstance(got[what], list) else got[what]
            if have != n:
                problems.append(f"{have} {what} in trace processor, the writer meant {n}")
    # flows: the pairs of request ids per root, as in the file and as the writer declared
    tree = want["tree"]
    flows = Counter((tree(a), ra, rb) for a, ra, b, rb in got["flows"])
    across = [(ra, rb) for a, ra, b, rb in got["flows"] if tree(a) != tree(b)]
    if across:
        problems.append(f"{len(across)} flow(s) join two roots, e.g. {across[0]}")
    if flows != want["flows"]:
        problems.append(f"flows differ from the file's: trace processor only {sorted(flows - want['flows'])[:3]}, "
                        f"file only {sorted(want['flows'] - flows)[:3]}")
    for root, n in want["declared_flows"].items():
        have = sum(k for (r, _, _), k in flows.items() if r == root)
        if have != n:
            problems.append(f"root {root!r}: {have} flows in trace processor, the writer declared {n}")
    if edges is not None:
        pairs = {(e.src, e.dst) if hasattr(e, "src") else tuple(e)[:2] for e in edges}
        for (root, a, b), k in flows.items():
            if (a, b) not in pairs or k != 1:
                problems.append(f"root {root!r}: flow {a!r} -> {b!r} (x{k}) is no edge of the DAG (or drawn twice)")
                break
        for root, n in want["declared_edges"].items():
            if n != len(edges):
                problems.append(f"root {root!r}: the writer declared {n} edges, the DAG has {len(edges)}")
    # requests: per root, ids and args
    ids: dict[str, list] = {}
    for track, rid, rows in got["requests"]:
        root = tree(track)
        ids.setdefault(root, []).append(rid)
        if rid is None:
            problems.append(f"a request slice under {root!r} has no request_id arg")
            continue
        args = want["args"].get((root, rid))
        if args is None:
            problems.append(f"request {rid!r} under {root!r}: not in the file")
            continue
        _check_args(f"request {rid!r} under {root!r}", args, rows, want["prefix"], problems)
    for root, n in want["declared_requests"].items():
        if len(ids.get(root, ())) != n:
            problems.append(f"root {root!r}: {len(ids.get(root, ()))} request slices in trace processor, "
                            f"the writer declared {n}")
    if kind == "perfetto" and len(want["declared_requests"]) > 1:
        first, *rest = want["declared_requests"]
        for other in rest:
            missing = want["not_drawn"].get(other, 0)
            a, b = want["shape"](first), want["shape"](other)
            if not (b <= a if missing else a == b):
                problems.append(f"roots {first!r} and {other!r} have different track trees: "
                                f"{sorted(a ^ b)[:3]}")
            ra, rb = set(ids.get(first, ())), set(ids.get(other, ()))
            if not rb <= ra or len(ra - rb) != missing:
                problems.append(f"roots {first!r} and {other!r} have different request ids: "
                                f"{sorted(map(str, ra ^ rb))[:3]}")
    assert not problems, f"{path}: " + "; ".join(problems[:8])
    return {"slices": got["slices"], "flows": len(got["flows"]), "counters": got["counters"],
            "tracks": len(got["tracks"]), "requests": len(got["requests"])}


def _scan_pftrace(path) -> dict:
    """What the file holds, in one pass over its packets (proto.decode's full decode builds every
    event and takes 3x as long): counts, tracks, attributes, request args, flow endpoints."""
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

    from trace_pipe.proto.decode import _value

    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    parent: dict[int, int] = {}
    name: dict[int, str] = {}
    attrs: dict = {}
    cats: dict[int, str] = {}
    ann: dict[int, str] = {}
    vals: dict[int, str] = {}
    n = {"slices": 0, "counters": 0}
    requests: list[tuple[int, dict]] = []  # (track, args)
    src: dict[int, tuple[int, object]] = {}
    dst: dict[int, object] = {}
    begin, instant, counter = pb.TrackEvent.TYPE_SLICE_BEGIN, pb.TrackEvent.TYPE_INSTANT, pb.TrackEvent.TYPE_COUNTER
    for p in pb.Trace.FromString(data).packet:  # one parse in C: 3x faster than packet by packet
        if p.sequence_flags & 1:
            cats.clear(), ann.clear(), vals.clear()
        if p.HasField("interned_data"):
            d = p.interned_data
            cats.update((e.iid, e.name) for e in d.event_categories)
            ann.update((e.iid, e.name) for e in d.debug_annotation_names)
            vals.update((e.iid, e.str.decode()) for e in d.debug_annotation_string_values)
        if p.HasField("trace_attributes"):
            for a in p.trace_attributes.attribute:
                attrs[a.key] = a.long_value if a.HasField("long_value") else a.string_value
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            parent.setdefault(d.uuid, d.parent_uuid)
            name.setdefault(d.uuid, d.name)
        if not p.HasField("track_event"):
            continue
        e = p.track_event
        if e.type == counter:
            n["counters"] += 1
            continue
        if e.type not in (begin, instant):
            continue
        n["slices"] += 1
        cat = ",".join(list(e.categories) + [cats[i] for i in e.category_iids])
        if cat != REQUEST_CAT and not e.flow_ids and not e.terminating_flow_ids:
            continue
        args = {(ann[a.name_iid] if a.HasField("name_iid") else a.name): _value(a, ann, vals)
                for a in e.debug_annotations}
        if cat == REQUEST_CAT:
            requests.append((e.track_uuid, args))
        for f in e.flow_ids:
            src[f] = (e.track_uuid, args.get("request_id"))
        for f in e.terminating_flow_ids:
            dst[f] = args.get("request_id")

    def root(uuid: int) -> str:
        while parent.get(uuid):
            uuid = parent[uuid]
        return name[uuid]

    return {"slices": n["slices"], "counters": n["counters"], "tracks": len(parent), "attrs": attrs,
            "args": {(root(t), a.get("request_id")): a for t, a in requests},
            "flows": Counter((root(t), rid, dst[f]) for f, (t, rid) in src.items() if f in dst)}


def _from_pftrace(f: dict, got: dict) -> dict:
    tree = _Tree(got["tracks"])
    attrs = f["attrs"]

    def declared(what: str) -> dict:
        return {k[len("trace_pipe."):-len(what) - 1]: v for k, v in attrs.items()
                if k.startswith("trace_pipe.") and k.endswith("." + what) and isinstance(v, int)}

    # roots in the writer's order (the first is the reference): attributes come in that order
    return {"slices": f["slices"], "counters": f["counters"], "tracks": f["tracks"],
            "tree": tree.root, "shape": tree.shape, "flows": f["flows"], "args": f["args"], "prefix": "debug.",
            "declared_flows": declared("flows"), "declared_edges": declared("edges"),
            "declared_requests": declared("requests"), "not_drawn": declared("requests_not_drawn")}


def _read_chrome_json(path) -> list:
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open if gz else open)(path, "rb") as f:
        return json.load(f)["traceEvents"]


def _from_chrome_json(events: list, got: dict) -> dict:
    procs = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    threads = sum(1 for e in events if e["ph"] == "M" and e["name"] == "thread_name")
    counter_tracks = {(e["pid"], e["name"], k) for e in events if e["ph"] == "C" for k in e["args"]}
    # several roots: each root's processes are named "<root>: <group>" (chrome_json.py); one root:
    # no prefix, and everything counts under root None
    names = set(procs.values())
    roots = sorted(n for n in names if any(m.startswith(n + ": ") for m in names))

    def root_of_name(name: str | None):
        return next((r for r in roots if name == r or name.startswith(r + ": ")), None) if name else None

    # a flow's end sits right after its slice's X event (chrome_json.py writes them so)
    last = None
    src, dst = {}, {}
    args = {}
    n_requests = Counter()
    for e in events:
        if e["ph"] == "X":
            last = e
            if e.get("cat") == REQUEST_CAT:
                root = root_of_name(procs.get(e["pid"]))
                args[(root, e["args"].get("request_id"))] = e["args"]
                n_requests[root] += 1
        elif e["ph"] == "s":
            src[e["id"]] = (root_of_name(procs.get(last["pid"])), last["args"].get("request_id"))
        elif e["ph"] == "f":
            dst[e["id"]] = last["args"].get("request_id")
    flows = Counter((*src[f], dst[f]) for f in src if f in dst)
    proc_of_track = {t: name for t, name in got["procs"]}
    return {"slices": sum(e["ph"] in ("X", "i") for e in events),
            "counters": sum(len(e["args"]) for e in events if e["ph"] == "C"),
            "tracks": threads + len(counter_tracks), "tree": lambda track: root_of_name(proc_of_track.get(track)),
            "shape": None, "flows": flows, "args": args, "prefix": "args.", "declared_flows": {},
            "declared_edges": {}, "declared_requests": dict(n_requests), "not_drawn": {}}


# -- the sweep: every trace the tests write ------------------------------------------------------

class Sweep:
    """Loads each trace a test wrote (found by content under the test's temporary directories)
    once: a file already verified, explicitly or by an earlier sweep, is not loaded again."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, int, int]] = set()
        self.loaded = 0
        self.seconds = 0.0  # spent loading and checking

    @staticmethod
    def _key(path: str) -> tuple[str, int, int] | None:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return None  # FIFOs (opening one blocks), devices, links
        return path, st.st_mtime_ns, st.st_size

    def verify(self, path, **kw) -> dict:
        t = time.perf_counter()
        try:
            out = verify_loaded(path, **kw)
        finally:
            self.seconds += time.perf_counter() - t
        self.seen.add(self._key(str(path)))
        self.loaded += 1
        return out

    def scan(self, root: str | os.PathLike) -> None:
        for d, _, files in os.walk(root):
            for name in files:
                p = os.path.join(d, name)
                try:
                    key = self._key(p)
                except OSError:
                    continue
                if key is None or key in self.seen:
                    continue
                self.seen.add(key)
                t = time.perf_counter()
                try:
                    if sniff(p) is not None:
                        verify_loaded(p)
                        self.loaded += 1
                finally:
                    self.seconds += time.perf_counter() - t


SWEEP = Sweep()


def verify(path, **kw) -> dict:
    """`verify_loaded`, remembered so the end-of-test sweep does not load the file again; a
    no-op returning None without the binary."""
    if TP_BIN is None:
        return None
    return SWEEP.verify(path, **kw)
