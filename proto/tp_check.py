"""A Perfetto trace loaded through trace processor (the `perfetto` package's TraceProcessor and a
`trace_processor_shell` binary), its counts and `stats` compared with what the checker read: the
last word on whether trace processor keeps everything (perfetto.md §4.3)."""

from __future__ import annotations

import os

from .perfetto_check import CheckReport, TraceChecker

# info / notice stats that still mean our data was dropped or mangled (perfetto.md §4.3)
TP_FAIL_STATS = frozenset((
    "track_event_parser_errors", "track_event_tokenizer_errors", "track_hierarchy_missing_uuid",
    "interned_data_tokenizer_errors", "interned_data_skipped_incremental_state_invalid",
    "packet_skipped_seq_needs_incremental_state_invalid", "tokenizer_skipped_packets"))


def tp_bin_problem(tp_bin: str) -> str | None:
    """Why `tp_bin` cannot be a trace_processor_shell binary, or None (it may still fail to run)."""
    if not os.path.exists(tp_bin):
        return f"trace processor binary not found: {tp_bin}"
    if os.path.isdir(tp_bin) or not os.access(tp_bin, os.X_OK):
        return f"trace processor binary is not an executable file: {tp_bin}"
    return None


def cross_check(path: str, tp_bin: str, rep: CheckReport, c: TraceChecker) -> None:
    """Load the trace through trace processor and compare its counts and `stats` with what the
    checker `c` read (its report `rep`)."""
    try:
        from perfetto.trace_processor import TraceProcessor, TraceProcessorConfig
    except ImportError as e:  # pragma: no cover - the perfetto package is a dependency
        rep.problem(f"trace processor: cannot import perfetto.trace_processor ({e})")
        return
    bad = tp_bin_problem(tp_bin)
    if bad:
        rep.problem(bad)
        return
    try:
        tp = TraceProcessor(trace=path, config=TraceProcessorConfig(bin_path=tp_bin))
    except Exception as e:  # the wrapper raises its own exception types, with multi-line text
        rep.problem(f"trace processor failed to start or to load the trace: {' '.join(str(e).split())}")
        return
    try:
        def one(sql: str) -> int:
            return int(next(iter(tp.query(sql))).n)

        res: dict = {}
        for row in tp.query("SELECT name, idx, severity, source, value FROM stats WHERE value > 0"):
            if row.severity in ("error", "data_loss") or row.name in TP_FAIL_STATS:
                rep.problem(f"trace processor stat {row.name}[{row.idx}] = {row.value} ({row.severity})")
        res["slices"] = one("SELECT count(*) AS n FROM slice")
        res["flows"] = one("SELECT count(*) AS n FROM flow")
        res["counter samples"] = one("SELECT count(*) AS n FROM counter")
        unfinished = one("SELECT count(*) AS n FROM slice WHERE dur < 0")
        unnamed = one("SELECT count(*) AS n FROM slice WHERE name IS NULL")
        names = {r.name for r in tp.query("SELECT DISTINCT name FROM track WHERE name IS NOT NULL")}
        res["tracks"] = one("SELECT count(*) AS n FROM track")
        rep.tp = res
        used = sum(1 for t in c.events if t in c.tracks)
        if res["tracks"] > rep.tracks:
            rep.problem(f"trace processor has {res['tracks']} tracks, the file describes {rep.tracks}")
        elif res["tracks"] < used:
            rep.problem(f"trace processor has {res['tracks']} tracks, but {used} described tracks carry events")
        if res["slices"] != rep.slices + rep.instants:
            rep.problem(f"trace processor has {res['slices']} slices, the file has {rep.slices} slices + "
                        f"{rep.instants} instants")
        if res["flows"] != rep.flows:
            rep.problem(f"trace processor has {res['flows']} flows, the file has {rep.flows}")
        if res["counter samples"] != rep.counter_samples:
            rep.problem(f"trace processor has {res['counter samples']} counter samples, the file has "
                        f"{rep.counter_samples}")
        if unfinished:
            rep.problem(f"trace processor: {unfinished} slice(s) with dur < 0 (never ended)")
        if unnamed:
            rep.problem(f"trace processor: {unnamed} slice(s) without a name")
        written = {t.name for t in c.tracks.values()}
        strange = sorted(names - written)
        if strange:
            rep.problem(f"trace processor has tracks we never described: {strange[:5]}")
    finally:
        tp.close()

