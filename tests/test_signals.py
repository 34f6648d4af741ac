"""SIGTERM as SIGINT (issue 22): a command terminated while it writes removes its temp files,
leaves the outputs of an earlier run byte for byte as they were, stops its worker processes, and
exits 143. Real processes, real signals: each test waits until the command's temp file exists
(it is writing) and only then signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

CLI = [sys.executable, "-c", "from trace_pipe.cli.main import main; main()"]


def _big_trace(path: Path, n: int = 20000) -> str:
    rows = [{"timestamp": i * 5.0, "input_length": 512, "output_length": 64, "hash_ids": [i % 50, 50 + i, 10**6 + i]}
            for i in range(n)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return str(path)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _term_once_writing(args: list[str], out: Path, timeout: float = 60) -> tuple[int, str]:
    """Run the command; SIGTERM it once a temp file appears in `out`; (exit code, stderr)."""
    p = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not any(n.endswith(".tmp") for n in os.listdir(out)):
            assert p.poll() is None, f"finished before writing: {p.stderr.read()}"
            assert time.monotonic() < deadline, "no temp file appeared"
            time.sleep(0.001)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    return p.returncode, err


@pytest.mark.parametrize("command", ["replay", "convert"])
def test_sigterm_while_writing_leaves_earlier_outputs_and_no_temp_files(tmp_path, command):
    trace = _big_trace(tmp_path / "big.jsonl")
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"p.pftrace": b"an earlier run's trace\n", "r.json": b'{"earlier": true}\n'}
    for name, data in earlier.items():
        (out / name).write_bytes(data)
    if command == "replay":
        args = ["replay", trace, "--trace-block-size", "512", "--report-json", str(out / "r.json"),
                "--perfetto", str(out / "p.pftrace")]
    else:
        args = ["convert", trace, "--perfetto", str(out / "p.pftrace"), "--mooncake", str(out / "r.json")]
    code, err = _term_once_writing(args, out)
    assert code == 143, err
    assert "Traceback" not in err
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == earlier


def test_sigterm_stops_a_sweep_and_its_worker_processes(tmp_path):
    """The signal reaches the parent only (Ctrl-C reaches the whole process group): the pool's
    workers are stopped at once instead of finishing their configurations, and no CSV is written."""
    trace = _big_trace(tmp_path / "big.jsonl")
    csv = tmp_path / "s.csv"
    p = subprocess.Popen([*CLI, "sweep", trace, "--trace-block-size", "512", "--num-workers", "1,2,3,4,5,6",
                          "--jobs", "2", "--csv", str(csv)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.monotonic() + 60
        while len(_children(p.pid)) < 2:  # the pool is running configurations
            assert p.poll() is None, p.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        workers = _children(p.pid)
        time.sleep(0.2)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 143, err
    assert took < 2.0, took  # one configuration of this trace takes several seconds
    assert not csv.exists()
    for w in workers:
        assert not os.path.exists(f"/proc/{w}") or open(f"/proc/{w}/stat").read().split()[2] == "Z"
