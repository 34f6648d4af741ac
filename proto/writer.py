"""Stream a layout to a `.pftrace` (optionally gzipped), one framed TracePacket at a time.

File order: trace attributes, the clock snapshot (trace time 0 = the earliest start), every track descriptor (so each is described before first use),
the packet that starts the interning sequence, then the layout's event stream. Nothing is
buffered beyond ~1 MB of encoded bytes, so memory does not grow with the output.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from trace_pipe.pipeline.io import atomic_output, size_written

from .layout import Block, Layout, Series
from .packets import Encoder, attributes_packet, clock_packet, descriptor_packet
from .spans import INTERNED_ARGS, REPEATED_ARGS, Timeline

WRITER = "trace-pipe"
_FLUSH = 1 << 20
_CHUNK = 4096  # counter samples encoded per call


@dataclass(frozen=True, slots=True)
class WriteStats:
    path: str
    format: str  # "perfetto" | "chrome-json"
    bytes: int  # on disk (compressed when gzipped)
    raw_bytes: int  # before compression
    packets: int  # TracePackets (protobuf) / trace events (JSON)
    tracks: int
    slices: int
    instants: int
    counter_samples: int
    flows: int
    edges: int
    requests: int
    tool_items: int
    edges_not_drawn: dict = field(default_factory=dict)  # reason -> edges without a flow

    def summary(self) -> str:
        s = (f"{self.requests} requests, {self.tool_items} tool items, {self.flows} flows "
             f"({self.edges} edges), {self.tracks} tracks, {self.packets} "
             f"{'packets' if self.format == 'perfetto' else 'events'}, {self.bytes:,} bytes")
        if self.edges_not_drawn:
            s += "; edges not drawn: " + ", ".join(f"{n} {why}" for why, n in sorted(self.edges_not_drawn.items()))
        return s


def trace_attributes(layout: Layout, extra: Sequence[tuple[str, object]] = ()) -> list[tuple[str, object]]:
    """Self-description `check` reads back, per timeline: the flows it must find (and why edges
    have none), the request slices, and the requests declared missing (a replay that stopped)."""
    st = layout.stats
    attrs: list[tuple[str, object]] = [("trace_pipe.writer", WRITER), ("trace_pipe.origin_unix_ns", layout.origin_ns)]
    for name, n in st.links_per_timeline.items():
        attrs.append((f"trace_pipe.{name}.edges", n))
        attrs.append((f"trace_pipe.{name}.flows", st.flows_per_timeline[name]))
        skipped = st.skipped_per_timeline.get(name)
        if skipped:
            attrs.append((f"trace_pipe.{name}.edges_not_drawn",
                          "; ".join(f"{k} {why}" for why, k in sorted(skipped.items()))))
        attrs.append((f"trace_pipe.{name}.requests", st.requests_per_timeline[name]))
        if st.not_drawn_per_timeline.get(name):
            attrs.append((f"trace_pipe.{name}.requests_not_drawn", st.not_drawn_per_timeline[name]))
    attrs.extend(extra)
    return attrs


class _Sink:
    """Buffered writes into the (possibly gzipped) output, counting raw bytes. `buf` may be
    appended to directly (the protobuf encoder does); `flush` clears it in place."""

    __slots__ = ("f", "buf", "raw")

    def __init__(self, f) -> None:
        self.f = f
        self.buf = bytearray()
        self.raw = 0

    def write(self, b: bytes) -> None:
        buf = self.buf
        buf += b
        if len(buf) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.raw += len(self.buf)
            self.f.write(self.buf)
            self.buf.clear()


def open_output(raw, path: str, gz: bool | None):
    """The stream to write into: gzip level 6 (level 9 is 3x slower for ~2% less) with a fixed
    header (no name, mtime 0) so the same input gives the same bytes."""
    use_gz = str(path).endswith(".gz") if gz is None else gz
    if use_gz:
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
    return None


def write_timelines(timelines: Sequence[Timeline], out_path: str | os.PathLike, *, gz: bool | None = None,
                    attributes: Sequence[tuple[str, object]] = (), intern: bool = True,
                    value_cache: int | None = None) -> WriteStats:
    """Write the timelines (one root each) as one Perfetto protobuf trace. `value_cache`: the
    encoder's (tiny caches run its eviction paths all the time: bench/parity_perfetto.py)."""
    layout = Layout(timelines)
    enc = Encoder(intern=intern, origin_ns=layout.origin_ns, interned_keys=INTERNED_ARGS, repeated_keys=REPEATED_ARGS,
                  value_cache=value_cache)
    with atomic_output(out_path, gz=False) as raw:
        z = open_output(raw, str(out_path), gz)
        sink = _Sink(z if z is not None else raw)
        enc.buf = buf = sink.buf  # the encoder appends packets straight into the output buffer
        buf += attributes_packet(trace_attributes(layout, attributes))
        buf += clock_packet(layout.origin_ns)
        for t in layout.tracks:
            buf += descriptor_packet(t)
        buf += enc.start()
        block, instant, series, flush = enc.block, enc.instant_event, enc.series, sink.flush
        for ev in layout.stream():
            if type(ev) is Block:
                block(ev)
            elif type(ev) is Series:  # in chunks, so the buffer stays near _FLUSH
                smp = ev.samples
                for i in range(0, len(smp), _CHUNK):
                    series(ev.track, smp[i:i + _CHUNK])
                    if len(buf) >= _FLUSH:
                        flush()
            else:
                instant(ev)
            if len(buf) >= _FLUSH:
                flush()
        flush()
        if z is not None:
            z.close()
        size = size_written(raw)
    packets = 3 + len(layout.tracks) + 2 * enc.slices + enc.instants + enc.samples
    slices, instants, samples = enc.slices, enc.instants, enc.samples
    st = layout.stats
    return WriteStats(path=str(out_path), format="perfetto", bytes=size, raw_bytes=sink.raw,
                      packets=packets, tracks=len(layout.tracks), slices=slices, instants=instants,
                      counter_samples=samples, flows=st.flows, edges=st.links, requests=st.requests,
                      tool_items=st.tool_items, edges_not_drawn=dict(st.links_skipped))
