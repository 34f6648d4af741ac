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

from trace_pipe.pipeline.io import atomic_output

from .layout import Block, Instant, Layout, Sample
from .packets import Encoder, attributes_packet, clock_packet, descriptor_packet
from .spans import Timeline

WRITER = "trace-pipe"
_FLUSH = 1 << 20


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
    """Self-description `check` reads back: flows it must find per timeline."""
    st = layout.stats
    attrs: list[tuple[str, object]] = [("trace_pipe.writer", WRITER), ("trace_pipe.origin_unix_ns", layout.origin_ns)]
    for name, n in st.links_per_timeline.items():
        attrs.append((f"trace_pipe.{name}.edges", n))
        attrs.append((f"trace_pipe.{name}.flows", st.flows_per_timeline[name]))
    attrs.extend(extra)
    return attrs


class _Sink:
    """Buffered writes into the (possibly gzipped) output, counting raw bytes."""

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
            self.buf = bytearray()


def open_output(raw, path: str, gz: bool | None):
    """The stream to write into: gzip level 6 (level 9 is 3x slower for ~2% less) with a fixed
    header (no name, mtime 0) so the same input gives the same bytes."""
    use_gz = str(path).endswith(".gz") if gz is None else gz
    if use_gz:
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
    return None


def write_timelines(timelines: Sequence[Timeline], out_path: str | os.PathLike, *, gz: bool | None = None,
                    attributes: Sequence[tuple[str, object]] = (), intern: bool = True) -> WriteStats:
    """Write the timelines (one root each) as one Perfetto protobuf trace."""
    layout = Layout(timelines)
    enc = Encoder(intern=intern, origin_ns=layout.origin_ns)
    slices = instants = samples = packets = 0
    with atomic_output(out_path, gz=False) as raw:
        z = open_output(raw, str(out_path), gz)
        sink = _Sink(z if z is not None else raw)
        w = sink.write
        w(attributes_packet(trace_attributes(layout, attributes)))
        w(clock_packet(layout.origin_ns))
        for t in layout.tracks:
            w(descriptor_packet(t))
        w(enc.start())
        packets = 3 + len(layout.tracks)
        begin, end, instant, counter = enc.begin, enc.end, enc.instant, enc.counter

        def nested(b: Block) -> tuple[int, int]:
            """BEGIN, children, END of a deeper block; returns (slices, instants) written."""
            n_s, n_i = 1, 0
            w(begin(b.start, b.track, b.name, b.cat, b.args, b.corr, b.flows_out, b.flows_in))
            for c in b.children:
                if type(c) is Block:
                    a, i = nested(c)
                    n_s += a
                    n_i += i
                else:
                    w(instant(c.ts, c.track, c.name, c.cat, c.args))
                    n_i += 1
            w(end(b.end, b.track, b.end_flows_in))
            return n_s, n_i

        for ev in layout.events():
            if type(ev) is Block:
                # iterative nesting walk: BEGIN, children, END
                w(begin(ev.start, ev.track, ev.name, ev.cat, ev.args, ev.corr, ev.flows_out, ev.flows_in))
                slices += 1
                packets += 2
                for c in ev.children:
                    if type(c) is Block:
                        if c.children:
                            a, i = nested(c)
                            slices += a
                            instants += i
                            packets += 2 * a + i
                            continue
                        w(begin(c.start, c.track, c.name, c.cat, c.args, c.corr, c.flows_out, c.flows_in))
                        w(end(c.end, c.track, c.end_flows_in))
                        slices += 1
                        packets += 2
                    else:
                        w(instant(c.ts, c.track, c.name, c.cat, c.args))
                        instants += 1
                        packets += 1
                w(end(ev.end, ev.track, ev.end_flows_in))
            elif type(ev) is Sample:
                w(counter(ev.ts, ev.track, ev.value))
                samples += 1
                packets += 1
            else:
                w(instant(ev.ts, ev.track, ev.name, ev.cat, ev.args))
                instants += 1
                packets += 1
        sink.flush()
        if z is not None:
            z.close()
    st = layout.stats
    return WriteStats(path=str(out_path), format="perfetto", bytes=os.path.getsize(out_path), raw_bytes=sink.raw,
                      packets=packets, tracks=len(layout.tracks), slices=slices, instants=instants,
                      counter_samples=samples, flows=st.flows, edges=st.links, requests=st.requests,
                      tool_items=st.tool_items, edges_not_drawn=dict(st.links_skipped))
