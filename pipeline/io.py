"""File-level I/O at the edges: input expansion, line streaming (plain and multi-member gzip),
and atomic output (temp file in the target directory, renamed on success)."""

from __future__ import annotations

import contextlib
import errno
import glob
import gzip
import os
import tempfile
import zlib
from pathlib import Path
from typing import IO, Iterator

from .errors import TraceError

_CHUNK = 1 << 20


def expand_inputs(inputs: list[str], patterns: tuple[str, ...] = ("*.jsonl", "*.jsonl.gz")) -> list[str]:
    """Files, directories (`*.jsonl` then `*.jsonl.gz`, each sorted) and glob patterns, in order,
    duplicates removed. A missing path is an error naming it."""
    out: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        if p not in seen:
            seen.add(p)
            out.append(p)

    def add_dir(path: str, arg: str) -> None:
        found = False
        for pat in patterns:
            for p in sorted(glob.glob(os.path.join(glob.escape(path), pat))):
                add(p)
                found = True
        if not found:
            raise TraceError(f"error: no trace files ({', '.join(patterns)}) in directory: {arg}")

    for arg in inputs:
        path = os.path.expanduser(arg)
        if os.path.isdir(path):
            add_dir(path, arg)
        elif os.path.exists(path):
            add(path)
        elif glob.has_magic(path):
            matches = sorted(glob.glob(path))
            if not matches:
                raise TraceError(f"error: no input files matched: {arg}")
            for p in matches:  # a directory a pattern matched reads like one given by name
                if os.path.isdir(p):
                    add_dir(p, p)
                else:
                    add(p)
        else:
            raise TraceError(f"error: input path does not exist: {arg}")
    if not out:
        raise TraceError("error: no input files matched")
    return out


def iter_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, line) for every non-blank line (surrounding whitespace is left
    for the JSON parser, which ignores it); streams, so memory does not grow with the file."""
    if path.endswith(".gz"):
        yield from _lines_from_chunks(_gzip_checked(path))
        return
    with open(path, "rb", buffering=1 << 20) as f:
        n = 0
        for line in f:
            n += 1
            # JSON parsers skip surrounding whitespace; `isspace` stops at the first other byte
            if not line.isspace():
                yield n, line


def _gzip_checked(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        d = zlib.decompressobj(wbits=31)
        pending = False  # inside a member that has not reached its end
        try:
            while True:
                buf = f.read(_CHUNK)
                if not buf:
                    break
                while buf:
                    pending = True
                    out = d.decompress(buf)
                    if out:
                        yield out
                    if d.eof:
                        pending = False
                        buf = d.unused_data
                        d = zlib.decompressobj(wbits=31)
                    else:
                        buf = b""
        except zlib.error as e:
            raise TraceError(f"{path}: corrupt gzip data: {e}") from None
        if pending:
            raise TraceError(f"{path}: truncated gzip stream (the file ends inside a gzip member)")


def _lines_from_chunks(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    n = 0
    rest = b""
    for chunk in chunks:
        if rest:
            chunk = rest + chunk
        lines = chunk.split(b"\n")
        rest = lines.pop()
        for line in lines:
            n += 1
            if line and not line.isspace():
                yield n, line
    if rest.strip():
        yield n + 1, rest.strip()


def check_outputs(outputs: list[tuple[str, str | None]], inputs: list[str] = ()) -> None:
    """Before any work, so a long run cannot fail at its last step: each output (option, path) can
    be written (not a directory, not below a file), is not also an input file, and no two options
    name one file (pipes and devices may be shared: /dev/null twice is fine)."""
    ins = {os.path.realpath(p) for p in _input_files(inputs)}
    seen: dict[str, str] = {}
    for flag, path in outputs:
        if not path:
            continue
        p = Path(path)
        if p.is_dir():
            raise TraceError(f"error: {flag} {path}: is a directory")
        up = p.parent
        while not up.exists() and up != up.parent:
            up = up.parent
        if not up.is_dir():
            raise TraceError(f"error: {flag} {path}: {up} is not a directory")
        real = os.path.realpath(path)
        if real in ins:
            raise TraceError(f"error: {flag} {path} is also an input (it would be overwritten)")
        if real in seen and (p.is_file() or not p.exists()):
            raise TraceError(f"error: {flag} {path}: the same file as {seen[real]}")
        seen[real] = flag


def _input_files(inputs: list[str]) -> Iterator[str]:
    """The files the inputs name, directories and glob matches included (every name a reader
    might take: an earlier run's output inside an input directory is read back on the next run)."""
    for arg in inputs:
        path = os.path.expanduser(arg)
        found = [path] if os.path.exists(path) else sorted(glob.glob(path)) if glob.has_magic(path) else []
        for p in found:
            if os.path.isdir(p):
                yield from (os.path.join(p, n) for n in os.listdir(p) if n.endswith((".jsonl", ".jsonl.gz", ".json")))
            elif os.path.isfile(p):
                yield p


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, gz: bool | None = None) -> Iterator[IO[bytes]]:
    """Write to a temp file beside `path` and rename it over `path` only if the block succeeds.
    `gz` (default: by suffix) compresses the stream. A target that exists and is not a regular
    file (a pipe, /dev/stdout, /dev/null) is written directly: renaming over it would replace the
    device or pipe with a file nobody reads. A directory is an error before anything is written."""
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{path}: is a directory")
    if target.exists() and not target.is_file():
        with open(target, "wb") as raw:
            if str(target).endswith(".gz") if gz is None else gz:
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as z:
                    yield z
            else:
                yield raw
        return
    created = _make_parents(target.parent)
    if _group is not None:
        _group_dirs.extend(created)  # removed by the group if any of its outputs fails
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:  # name the output the user gave, not the temp file's random name
        if _group is None:
            _remove_dirs(created)
        raise OSError(e.errno, e.strerror, str(path)) from None
    use_gz = str(target).endswith(".gz") if gz is None else gz
    try:
        with os.fdopen(fd, "wb") as raw:
            if use_gz:
                # mtime=0 and no file name in the header: same input, byte-identical output
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as z:
                    yield z
            else:
                yield raw
        if target.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, target.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644 & ~_umask())
        if _group is not None:
            _group.append((tmp, target))  # renamed when the group ends (`output_group`)
        else:
            os.replace(tmp, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if _group is None:
            _remove_dirs(created)
        if isinstance(e, OSError) and e.filename is None and e.errno in _WRITE_ERRNOS:
            # the write itself failed (a full disk): say which output, in one line
            raise TraceError(f"error: {path}: {e.strerror}") from None
        raise


# What a failed write of the output stream raises (its OSError carries no file name).
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def _make_parents(d: Path) -> list[Path]:
    """`mkdir -p d`; the directories it created, deepest first (a failed output removes them)."""
    missing = []
    up = d
    while not up.exists() and up != up.parent:
        missing.append(up)
        up = up.parent
    d.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_dirs(dirs: list[Path]) -> None:
    for d in dirs:  # deepest first; a directory something else was written into stays
        with contextlib.suppress(OSError):
            d.rmdir()


_group: list[tuple[str, Path]] | None = None
_group_dirs: list[Path] = []  # directories the group's outputs created


def size_written(f: IO[bytes]) -> int:
    """Bytes written so far to an `atomic_output` stream (0 for a pipe or device). Inside an
    `output_group` the target does not exist yet, so its size cannot be read from the path."""
    f.flush()
    try:
        return f.tell()
    except OSError:
        return 0


@contextlib.contextmanager
def output_group() -> Iterator[None]:
    """The outputs of one command land together: inside the group each `atomic_output` keeps
    its finished temp file, renamed over its target only when the whole group succeeds, so a
    run that fails at its third output leaves none of them (not the first two, written)."""
    global _group, _group_dirs
    outer, _group = _group, []
    outer_dirs, _group_dirs = _group_dirs, []
    done = False
    try:
        yield
        for tmp, target in _group:
            os.replace(tmp, target)
        done = True
    finally:
        if not done:
            for tmp, _target in _group:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            _remove_dirs(sorted(_group_dirs, key=lambda d: len(d.parts), reverse=True))
        _group = outer
        _group_dirs = outer_dirs + _group_dirs if outer is not None else outer_dirs


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m
