"""Perfetto output: the recorded run (and later a simulated one) as native TrackEvent protobuf
tracks, the same layout as Chrome JSON, and a checker for what we write.

Public surface:
    write_perfetto(trace, edges, out_path, *, gz=None, stages=True, markers=False) -> WriteStats
    write_chrome_json(trace, edges, out_path, *, gz=None, stages=True, markers=False) -> WriteStats
        `edges`: objects with `src`, `dst`, `relation` (pipeline.request_graph.Edge), one flow each;
        `stages` / `markers`: the switches of Dynamo's `convert_to_perfetto.py` with its defaults
        (`--no-stages` -> stages=False, `--include-markers` -> markers=True), see recorded.py;
        `stages="separate"` (a `<chain> stages` track) is the old script's `--separate-stage-tracks`,
        kept for the library only (Dynamo's CLI dropped it).
    recorded_timeline(trace, edges, *, stages=True, markers=True, name="Recorded") -> Timeline
    write_timelines(timelines, out_path, *, gz=None, attributes=(), intern=True) -> WriteStats
    write_timelines_json(timelines, out_path, *, gz=None) -> WriteStats
        several roots in one trace ("Recorded", "Simulated", ...): each a `Timeline` of generic
        spans (spans.py), own uuid / flow-id ranges, same correlation ids per request key, the
        first timeline's group / chain order reused by the others
    check.check_file(path, tp_bin=None, *, expect=None) -> CheckReport
    decode.decode_file(path) -> Decoded          (tests, timeline comparison)
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from trace_pipe.pipeline.model import Trace

from .chrome_json import write_timelines_json
from .recorded import recorded_timeline
from .spans import ChainItem, Mark, Placement, RequestSpan, Slice, Timeline
from .writer import WriteStats, write_timelines

__all__ = [
    "ChainItem", "Mark", "Placement", "RequestSpan", "Slice", "Timeline", "WriteStats",
    "recorded_timeline", "write_chrome_json", "write_perfetto", "write_timelines", "write_timelines_json",
]


def write_perfetto(trace: Trace, edges: Iterable, out_path: str | os.PathLike, *, gz: bool | None = None,
                   stages: bool | str = True, markers: bool = False) -> WriteStats:
    """The recorded run as a `.pftrace` (gzipped when `gz` or the name ends in `.gz`).
    `edges`: the agentic dependency edges (`src`, `dst`, `relation`), one flow each."""
    tl = recorded_timeline(trace, edges, stages=stages, markers=markers)
    return write_timelines([tl], out_path, gz=gz)


def write_chrome_json(trace: Trace, edges: Iterable, out_path: str | os.PathLike, *, gz: bool | None = None,
                      stages: bool | str = True, markers: bool = False) -> WriteStats:
    """The same layout as Chrome trace JSON."""
    tl = recorded_timeline(trace, edges, stages=stages, markers=markers)
    return write_timelines_json([tl], out_path, gz=gz)
