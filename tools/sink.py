"""File sinks that write what Dynamo's recorder sinks write (dynamo-formats.md §1.2, §1.3).

Every line is a recorder envelope `{"timestamp": <int ms since the sink started>, "event": <row>}`.

* `.jsonl` output: one literal file, appended (as Dynamo's `jsonl` sink); each flush writes
  whole lines only.
* `.gz` output (`.jsonl.gz`): the given name minus `.jsonl.gz` (or `.gz`) is the segment
  *prefix*, exactly as Dynamo treats `DYN_*_TRACE_OUTPUT_PATH`: `--output tools.jsonl.gz` writes
  `tools.000000.jsonl.gz`, `tools.000001.jsonl.gz`, ... starting at the first index whose file does
  not exist yet. Each flush appends one complete gzip member; a segment is rolled *before* a line
  that would take it past `roll_bytes` uncompressed bytes (or `roll_lines` lines), never splitting
  a line, and a segment always gets at least one line.
* `stderr` (Dynamo's sink of that name): each row's bare JSON record on one line, beside or
  instead of a file.

These are append logs, not `atomic_output` files: a collector runs for hours and what it has
flushed must be on disk while it runs (a crash loses at most one flush interval), just as with
Dynamo's own sinks. A file is only ever appended whole lines / whole gzip members.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import zlib
from pathlib import Path

from trace_pipe.pipeline.errors import TraceError

DEFAULT_BUFFER_BYTES = 1 << 20  # Dynamo: _JSONL_BUFFER_BYTES
DEFAULT_ROLL_BYTES = 256 << 20  # Dynamo: _JSONL_GZ_ROLL_BYTES
DEFAULT_GZIP_LEVEL = 6  # zlib/flate2 default; the level never changes the format readers see
_MAX_PENDING_FLUSHES = 8  # buffers (each up to buffer_bytes) waiting for the gzip writer


def envelope_prefix(elapsed_ms: int) -> bytes:
    """`{"timestamp":N,"event":` — the row JSON and `}\n` complete the line."""
    return b'{"timestamp":%d,"event":' % elapsed_ms


def segment_prefix(output: str | os.PathLike) -> str:
    """The segment prefix Dynamo derives from an output path (trailing `.jsonl.gz`/`.jsonl`/`.gz`
    stripped)."""
    s = os.fspath(output)
    for suffix in (".jsonl.gz", ".jsonl", ".gz"):
        if s.endswith(suffix):
            return s[: -len(suffix)]
    return s


def segment_path(prefix: str, index: int) -> str:
    return f"{prefix}.{index:06d}.jsonl.gz"


class _Sink:
    """Buffered line writer; subclasses decide where a flushed batch goes."""

    __slots__ = ("_buf", "_buf_bytes", "_buffer_limit", "_start_ns", "rows", "paths", "lost")

    def __init__(self, buffer_bytes: int) -> None:
        self._buf: list[bytes] = []
        self._buf_bytes = 0
        self._buffer_limit = max(1, buffer_bytes)
        self._start_ns = time.monotonic_ns()
        self.rows = 0  # lines handed to the sink
        self.paths: list[str] = []
        self.lost = 0  # lines handed to the sink that a failed write kept off the disk

    def elapsed_ms(self) -> int:
        """The envelope `timestamp`: ms since this sink started (not wall clock, as in Dynamo)."""
        return (time.monotonic_ns() - self._start_ns) // 1_000_000

    def add(self, line: bytes) -> None:
        """One complete `\\n`-terminated envelope line."""
        self._buf.append(line)
        self._buf_bytes += len(line)
        self.rows += 1
        if self._buf_bytes >= self._buffer_limit:
            self.flush()

    def add_many(self, lines: list[bytes], nbytes: int) -> None:
        """`add` for a batch (`nbytes` = their total length): one call per received batch."""
        self._buf.extend(lines)
        self._buf_bytes += nbytes
        self.rows += len(lines)
        if self._buf_bytes >= self._buffer_limit:
            self.flush()

    def flush(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _take(self) -> bytes:
        data = b"".join(self._buf)
        self._buf.clear()
        self._buf_bytes = 0
        return data

    def _drop_buffer(self) -> None:
        """After a failed write: what is still buffered is never written."""
        self.lost += len(self._buf)
        self._buf.clear()
        self._buf_bytes = 0


class SinkWriteError(TraceError):
    """A write to the output failed (a full disk). The file was cut back to its last whole line /
    whole gzip member; the message names the file."""


def _write_whole(f, data: bytes) -> None:
    """Write all of `data` at the end of `f`, or nothing: a write cut short (the disk filled up
    mid-way) is truncated away, so the file still ends at a line or member boundary."""
    start = os.fstat(f.fileno()).st_size
    view = memoryview(data)
    try:
        while view:
            n = f.write(view)
            view = view[n:]
    except OSError as e:
        try:
            os.ftruncate(f.fileno(), start)
        except OSError:
            pass
        raise SinkWriteError(f"error: {f.name}: {e.strerror or e}") from None


class JsonlSink(_Sink):
    """One literal `.jsonl` file, appended."""

    __slots__ = ("_f", "_failed")

    def __init__(self, path: str | os.PathLike, *, buffer_bytes: int = DEFAULT_BUFFER_BYTES) -> None:
        super().__init__(buffer_bytes)
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(p, "ab", buffering=0)
        self.paths.append(str(p))
        self._failed = False

    def flush(self) -> None:
        if self._failed:
            self._drop_buffer()
        elif self._buf:
            n = len(self._buf)
            data = self._take()
            # one write of whole lines; unbuffered file, so the OS has it when we return
            try:
                _write_whole(self._f, data)
            except SinkWriteError:
                self._failed = True
                self.lost += n
                raise

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._f.close()


class GzipSegmentSink(_Sink):
    """`<prefix>.NNNNNN.jsonl.gz` segments of gzip members, rolled by uncompressed size.

    Compression and the write run on a writer thread (zlib releases the GIL, so it overlaps with
    receiving); jobs are handled in order and the queue is bounded, so a slow disk slows the
    collector instead of growing memory. `close()` waits for every member to be written."""

    __slots__ = ("prefix", "_roll_bytes", "_roll_lines", "_level", "_index", "_f",
                 "_seg_bytes", "_seg_lines", "members", "_jobs", "_writer", "_error")

    def __init__(self, output: str | os.PathLike, *, buffer_bytes: int = DEFAULT_BUFFER_BYTES,
                 roll_bytes: int = DEFAULT_ROLL_BYTES, roll_lines: int | None = None,
                 level: int = DEFAULT_GZIP_LEVEL) -> None:
        super().__init__(buffer_bytes)
        self.prefix = segment_prefix(output)
        Path(self.prefix).parent.mkdir(parents=True, exist_ok=True)
        self._roll_bytes = max(1, roll_bytes)
        self._roll_lines = roll_lines if roll_lines and roll_lines > 0 else None
        self._level = level
        self._index = -1
        self._f = None
        self.members = 0  # gzip members written (one per non-empty flush per segment)
        self._error: BaseException | None = None
        self._jobs: queue.Queue = queue.Queue(maxsize=_MAX_PENDING_FLUSHES)
        self._open_next()
        self._writer = threading.Thread(target=self._write_loop, name="gzip-sink-writer", daemon=True)
        self._writer.start()

    def _open_next(self) -> None:
        i = self._index + 1
        while os.path.exists(segment_path(self.prefix, i)):
            i += 1
        self._index = i
        path = segment_path(self.prefix, i)
        # "xb": never append to a segment someone else created between the check and the open
        self._f = open(path, "xb", buffering=0)
        self.paths.append(path)
        self._seg_bytes = 0
        self._seg_lines = 0

    def _roll(self) -> None:
        self.flush()
        self._jobs.put((self._f, None, 0))  # close the finished segment after its last member
        self._open_next()

    def add(self, line: bytes) -> None:
        n = len(line)
        if self._seg_lines and (self._seg_bytes + n > self._roll_bytes
                                or (self._roll_lines is not None and self._seg_lines >= self._roll_lines)):
            self._roll()
        self._seg_bytes += n
        self._seg_lines += 1
        super().add(line)

    def add_many(self, lines: list[bytes], nbytes: int) -> None:
        if self._roll_lines is None and self._seg_bytes + nbytes <= self._roll_bytes:
            self._seg_bytes += nbytes  # the whole batch fits the segment
            self._seg_lines += len(lines)
            super().add_many(lines, nbytes)
        else:
            for line in lines:
                self.add(line)

    def flush(self) -> None:
        self._check()
        if self._buf:
            n = len(self._buf)
            self._jobs.put((self._f, self._take(), n))
            self.members += 1

    def close(self) -> None:
        try:
            if self._error is None:
                self.flush()
        finally:
            self._jobs.put((self._f, None, 0))
            self._jobs.put(None)
            self._writer.join()
            if self._error is not None:
                self._drop_buffer()
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            if isinstance(self._error, SinkWriteError):
                raise self._error
            raise OSError(f"writing {self.paths[-1]}: {self._error}") from self._error

    def _write_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            f, data, lines = job
            try:
                if data is None:
                    f.close()
                elif self._error is None:
                    # one complete gzip member (mtime 0, no name) per flush, written whole or not at all
                    _write_whole(f, zlib.compress(data, self._level, wbits=31))
                else:
                    self.lost += lines  # after a failed write nothing more is written
            except BaseException as e:  # reported to the collector thread on its next flush/close
                if data is not None:
                    self.lost += lines
                if self._error is None:
                    self._error = e


class StderrSink(_Sink):
    """Dynamo's `stderr` sink: each row as its bare JSON record, one line, no envelope."""

    __slots__ = ("_out",)

    def __init__(self, out=None, *, buffer_bytes: int = DEFAULT_BUFFER_BYTES) -> None:
        super().__init__(buffer_bytes)
        self._out = out

    def flush(self) -> None:
        if self._buf:
            skip = len(b'"event":')
            # each line is `{"timestamp":N,"event":<row>}\n`: keep <row>
            data = b"".join(line[line.index(b'"event":') + skip:-2] + b"\n" for line in self._buf)
            self._buf.clear()
            self._buf_bytes = 0
            out = self._out or sys.stderr.buffer
            out.write(data)
            out.flush()

    def close(self) -> None:
        self.flush()


class TeeSink:
    """Several sinks fed the same lines (the file sink and `stderr`, as Dynamo runs both)."""

    __slots__ = ("sinks", "paths")

    def __init__(self, sinks: list[_Sink]) -> None:
        self.sinks = sinks
        self.paths = sinks[0].paths  # the file sink comes first

    @property
    def rows(self) -> int:
        return self.sinks[0].rows

    @property
    def lost(self) -> int:
        return self.sinks[0].lost

    def elapsed_ms(self) -> int:
        return self.sinks[0].elapsed_ms()

    def add(self, line: bytes) -> None:
        for s in self.sinks:
            s.add(line)

    def add_many(self, lines: list[bytes], nbytes: int) -> None:
        for s in self.sinks:
            s.add_many(lines, nbytes)

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def close(self) -> None:
        try:
            self.sinks[0].close()
        finally:
            for s in self.sinks[1:]:
                s.close()


def open_sink(output: str | os.PathLike | None, *, fmt: str | None = None, stderr: bool = False,
              buffer_bytes: int = DEFAULT_BUFFER_BYTES, roll_bytes: int = DEFAULT_ROLL_BYTES,
              roll_lines: int | None = None):
    """`fmt` "jsonl_gz" -> gzip segments under the derived prefix, "jsonl" -> one appended file;
    None -> by suffix (`.gz` or not). `stderr`: also (or, without `output`, only) Dynamo's
    stderr sink."""
    sinks: list = []
    if output is not None:
        gz = fmt == "jsonl_gz" if fmt is not None else os.fspath(output).endswith(".gz")
        sinks.append(GzipSegmentSink(output, buffer_bytes=buffer_bytes, roll_bytes=roll_bytes, roll_lines=roll_lines)
                     if gz else JsonlSink(output, buffer_bytes=buffer_bytes))
    if stderr:
        sinks.append(StderrSink(buffer_bytes=buffer_bytes))
    if not sinks:
        raise ValueError("no sink: give an output file and/or stderr")
    return sinks[0] if len(sinks) == 1 else TeeSink(sinks)
